"""``evaluate`` and ``predict`` used the way people do (issue 27): a labelled folder without a test split, a table
that fits an 80-column terminal, predictions piped to standard output (digits, seed_cnn, 1 epoch)."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from transferkit.cli.main import main
from transferkit.data import get_dataset


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("use") / "src"
    assert main(["pretrain", "--data", "digits", "--classes", "0-4", "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def labelled_folder(root, classes=("0", "1", "2", "3", "4"), per_class=3):
    """``root/<class>/*.png``: digits test images, class sub-folders only (no train/ or test/)."""
    ds = get_dataset("digits", "test")
    for c in classes:
        (root / c).mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(ds.labels == int(c))[:per_class]):
            Image.fromarray(ds.images[i]).save(root / c / f"{j}.png")
    return root


def test_evaluate_a_labelled_folder_without_test_split_evaluates_all_of_it(model, tmp_path, capsys):
    folder = labelled_folder(tmp_path / "heldout")
    assert main(["evaluate", str(model), "--data", f"image_folder:{folder}", "--out", str(tmp_path / "ev")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "has no test split, so all of it was evaluated (15 examples)" in out and "(all (no test split))" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["split"] == "all (no test split)" and metrics["splits"] == ["train"] and metrics["n"] == 15

    some = labelled_folder(tmp_path / "two", classes=("1", "3"))  # some of the model's classes: mapped by name
    assert main(["evaluate", str(model), "--data", f"image_folder:{some}"]) == 0
    assert "(6 examples)" in " ".join(capsys.readouterr().out.split())
    # a split named explicitly must exist, and the message names what there is
    assert main(["evaluate", str(model), "--data", f"image_folder:{folder}", "--split", "test"]) == 2
    assert "has no 'test' split (found: train)" in " ".join(capsys.readouterr().out.split())
    # data with a test split: still the test split by default
    assert main(["evaluate", str(model), "--data", "digits", "--classes", "0-4"]) == 0
    assert "on digits (test)" in " ".join(capsys.readouterr().out.split())


def test_predict_prints_a_compact_table_that_fits_80_columns(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    folder = labelled_folder(tmp_path / "a" / "rather" / "long" / "path" / "to" / "some" / "holiday" / "pictures")
    (folder / "junk.png").write_text("not an image")
    assert main(["predict", str(model), str(folder)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    header = next(line for line in out.splitlines() if "path" in line).split()
    assert header == ["path", "class", "prob."]  # whole names, no "pre…" / "pro…" / "top…"
    assert "…" in out and "/4/2.png" in out  # a long path is shortened from the left: the file name stays
    assert "error" in out and "15 input(s) predicted, 1 error(s)" in " ".join(out.split())

    assert main(["predict", str(model), str(folder / "4"), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert next(line for line in out.splitlines() if "path" in line).split() == ["path", "class", "prob.", "top", "3"]


@pytest.mark.parametrize("output", ["-", "/dev/stdout"])
def test_predict_output_dash_writes_only_rows_to_stdout(model, tmp_path, capsys, monkeypatch, output):
    folder = labelled_folder(tmp_path / "imgs", classes=("2",), per_class=2)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "=HYPERLINK(1).png")
    monkeypatch.chdir(folder)
    assert main(["predict", str(model), "2", "=HYPERLINK(1).png", "--output", output, "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))  # stdout: the CSV and nothing else
    assert [r["path"] for r in rows] == ["2/0.png", "2/1.png", "'=HYPERLINK(1).png"]  # formula cell escaped
    assert all(r["top2_class"] for r in rows) and "\r" not in captured.out
    assert "3 input(s) predicted, 0 error(s); wrote them to standard output as CSV" in captured.err

    assert main(["predict", str(model), "2", "--output", output, "--format", "jsonl", "--no-progress"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["path"] for r in rows] == ["2/0.png", "2/1.png"] and all(r["error"] is None for r in rows)
    assert "JSONL" in captured.err
