"""``compare`` as a resumable grid: config before the work, every cell as it finishes, nothing lost to a late error
(issue 27: ``transferkit compare --seeds 2`` ran every cell, then died writing a ``range`` to YAML)."""

import importlib
import json

import pytest
import yaml

import transferkit as tk
from transferkit.cli.main import main

grid_mod = importlib.import_module("transferkit.api.grid")  # where every cell calls the engine's train
compare_report_mod = importlib.import_module("transferkit.report.compare")  # where compare draws its plot


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)


@pytest.fixture
def train_calls(monkeypatch):
    calls = []
    real = grid_mod.train
    monkeypatch.setattr(grid_mod, "train", lambda *a, **k: (calls.append((a[0].name, a[5].seed)), real(*a, **k))[1])
    return calls


def test_cli_compare_with_seeds_writes_its_config_and_a_late_error_loses_no_cell(source, tmp_path, monkeypatch,
                                                                                  train_calls, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--source", str(source.run_dir), "--data", "digits", "--classes", "5-7", "--strategies",
            "scratch,linear_probe", "--labels-per-class", "2", "--seeds", "2", "--epochs", "1", "--out", str(out)]

    def broken_plot(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(compare_report_mod, "plot_comparison", broken_plot)
    assert main(argv) == 2 and "disk full" in capsys.readouterr().out
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seeds"] == [0, 1] and config["labels_per_class"] == [2] and config["command"] == "compare"
    assert len(list((out / "cells").glob("*.json"))) == 4 and len(train_calls) == 4

    monkeypatch.undo()  # the plot works again (and train is the real one): the rerun only redraws
    assert main(argv) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["reused"] == 4 and saved["computed"] == 0 and len(saved["cells"]) == 4
    assert {c["seed"] for c in saved["cells"]} == {0, 1} and all("total_time_s" in c for c in saved["cells"])
    assert (out / "comparison.png").is_file() and "4 reused" in (out / "report.md").read_text()
    assert main(["compare", "--config", str(out / "config.yaml")]) == 0  # the saved config repeats the run


def test_interrupted_compare_resumes_grows_and_checks_its_settings(source, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    kw = dict(data="digits", classes="5-7", strategies=("linear_probe",), labels_per_class=(2,), seeds=range(3),
              out=out, epochs=1)
    real, calls = grid_mod.train, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(grid_mod, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tk.compare(source.run_dir, **kw)
    assert len(list((out / "cells").glob("*.json"))) == 2 and not (out / "metrics.json").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1, 2]

    calls.clear()
    monkeypatch.setattr(grid_mod, "train", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    res = tk.compare(source.run_dir, **{**kw, "labels_per_class": "2,3"})  # resumes the 2 cells, adds a budget
    assert len(calls) == 4 and len(res.metrics["cells"]) == 6
    with pytest.raises(ValueError, match=r"holds a compare run computed with other settings.*epochs: 1 then, 2 now"):
        tk.compare(source.run_dir, **{**kw, "epochs": 2})
    calls.clear()
    res = tk.compare(source.run_dir, **{**kw, "epochs": 2, "seeds": [0]}, restart=True)
    assert len(calls) == 1 and len(list((out / "cells").glob("*.json"))) == 1
