"""The per-method bar chart writes a real PNG for baselines, references and methods."""

import pytest

from transferkit.report.plots import plot_method_bars

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ROWS = [
    {"label": "source only", "mean": 0.612, "std": 0.021, "kind": "baseline"},
    {"label": "target trained", "mean": 0.934, "std": 0.008, "kind": "reference"},
    {"label": "DANN", "mean": 0.731, "std": 0.035, "kind": "method"},
    {"label": "AdaBN", "mean": 0.688, "std": float("nan")},  # kind defaults to method; one seed: no std
]


@pytest.mark.parametrize("reference_line", [None, 0.612])
def test_method_bars_write_a_png(tmp_path, reference_line):
    path = plot_method_bars(ROWS, tmp_path / "bars.png", title="A → W", reference_line=reference_line)
    assert path == tmp_path / "bars.png" and path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left behind


def test_method_bars_reject_unknown_kinds_and_empty_rows(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        plot_method_bars([{"label": "x", "mean": 0.5, "std": 0.0, "kind": "oracle"}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no rows"):
        plot_method_bars([], tmp_path / "x.png")
