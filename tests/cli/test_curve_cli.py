"""``transferkit curve`` and ``transferkit transfer --cv K`` through the command line (digits, 1 epoch)."""

import importlib
import json

import pytest
import yaml

import transferkit as tk
from transferkit.cli.main import main

grid_mod = importlib.import_module("transferkit.api.grid")  # where every cell calls the engine's train


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve-cli") / "src"
    tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)
    return str(out)


@pytest.fixture
def train_calls(monkeypatch):
    calls = []
    real = grid_mod.train
    monkeypatch.setattr(grid_mod, "train", lambda *a, **k: (calls.append(a[0].name), real(*a, **k))[1])
    return calls


def test_curve_flags_then_resume_from_its_own_config_yaml(src, tmp_path, train_calls, capsys):
    out = tmp_path / "curve"
    assert main(["curve", "--source", src, "--data", "digits", "--classes", "5-7", "--strategy", "linear_probe",
                 "--strategy", "ft=finetune:bn=frozen", "--labels-per-class", "2,all", "--seeds", "1",
                 "--epochs", "1", "--schedule", "cosine", "--out", str(out)]) == 0
    assert sorted(train_calls) == ["finetune", "finetune", "linear_probe", "linear_probe"]
    m = json.loads((out / "metrics.json").read_text())
    assert [(r["strategy"], r["labels_per_class"]) for r in m["summary"]] == \
        [("linear_probe", 2), ("linear_probe", None), ("ft", 2), ("ft", None)]
    assert m["settings"]["train_options"] == {"schedule": "cosine"}
    assert (out / "curve.png").is_file() and "| ft | all |" in (out / "report.md").read_text()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["strategies"] == ["linear_probe", "ft=finetune:bn=frozen"] and saved["labels_per_class"] == [2, None]
    assert saved["seeds"] == [0] and saved["schedule"] == "cosine" and "restart" not in saved

    # the saved config.yaml is a valid --config: rerunning it reuses every cell
    train_calls.clear()
    capsys.readouterr()
    assert main(["curve", "--config", str(out / "config.yaml")]) == 0
    assert train_calls == [] and "reused 4 finished cells of 4" in capsys.readouterr().out

    # other settings: exit code 2 and a message naming them; --restart recomputes
    assert main(["curve", "--config", str(out / "config.yaml"), "--epochs", "2"]) == 2
    err = capsys.readouterr().out
    assert "epochs: 1 then, 2 now" in err and "--restart" in err and train_calls == []
    assert main(["curve", "--config", str(out / "config.yaml"), "--epochs", "2", "--seeds", "0,1",
                 "--labels-per-class", "2", "--restart"]) == 0
    assert len(train_calls) == 4 and len(list((out / "cells").glob("*.json"))) == 4


def test_strategy_list_in_yaml_and_flags_replace_it(src, tmp_path, train_calls):
    cfg = tmp_path / "curve.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": src, "data": "digits", "classes": "5-7", "labels-per-class": [2], "seeds": 1, "epochs": 1,
        "out": str(tmp_path / "c"), "strategy": [{"label": "probe", "strategy": "linear_probe"}, "lp2=linear_probe"],
    }))
    assert main(["curve", "--config", str(cfg)]) == 0
    assert [r["strategy"] for r in json.loads((tmp_path / "c" / "metrics.json").read_text())["summary"]] == \
        ["probe", "lp2"]
    assert main(["curve", "--config", str(cfg), "--out", str(tmp_path / "d"), "--strategy", "linear_probe"]) == 0
    assert [r["strategy"] for r in json.loads((tmp_path / "d" / "metrics.json").read_text())["summary"]] == \
        ["linear_probe"]


def test_bad_variant_spec_or_budget_is_a_clear_error(src, tmp_path, capsys, train_calls):
    base = ["curve", "--source", src, "--data", "digits", "--classes", "5-7", "--out", str(tmp_path / "c")]
    assert main([*base, "--strategy", "finetune:bogus=1"]) == 2
    assert "valid options: freeze" in " ".join(capsys.readouterr().out.split())
    assert main([*base, "--strategy", "a=finetune", "--strategy", "a=linear_probe"]) == 2
    assert "duplicate label 'a'" in " ".join(capsys.readouterr().out.split())
    assert main([*base, "--labels-per-class", "2,lots"]) == 2
    assert "'lots' is neither a number nor 'all'" in capsys.readouterr().out
    assert train_calls == []


def test_transfer_cv_from_the_command_line(src, tmp_path, capsys):
    out = tmp_path / "cv"
    base = ["transfer", "--source", src, "--data", "digits", "--classes", "5-7", "--strategy", "linear_probe",
            "--epochs", "1", "--no-progress", "--out", str(out)]
    assert main([*base, "--labels-per-class", "6", "--cv", "3"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["cv"] == 3 and len(m["folds"]) == 3 and m["n_pool"] == 18 and not (out / "bundle").exists()
    capsys.readouterr()
    assert main([*base, "--labels-per-class", "4", "--cv", "5"]) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert "--cv: expected at most 4 folds, got 5; more folds than images in the smallest class" in said
    assert main([*base, "--cv", "1"]) == 2
    assert "--cv: expected at least 2 folds (an integer), got 1" in " ".join(capsys.readouterr().out.split())
