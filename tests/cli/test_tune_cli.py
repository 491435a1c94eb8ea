"""``transferkit tune`` through the command line on real Fashion-MNIST images (1 epoch per trial, 1–2 trials)."""

import json

import optuna
import pytest
import yaml

from transferkit.cli.main import main


@pytest.fixture(scope="module")
def src(fashion_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-cli")
    data = f"npz:{fashion_npz}"
    assert main(["pretrain", "--data", data, "--classes", "0,1,5,8,9", "--backbone", "seed_cnn", "--epochs", "1",
                 "--out", str(root / "src"), "--no-progress"]) == 0
    return str(root / "src"), data


def test_tune_flags_then_transfer_with_the_best_config(src, tmp_path, capsys):
    source, data = src
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": "loguniform:1e-4:1e-2", "augment": ["none", "light"]}))
    out = tmp_path / "search"
    assert main(["tune", "--source", source, "--data", data, "--classes", "2,3,4,6,7", "--labels-per-class", "5",
                 "--epochs", "1", "--space", str(space), "--param", "lr=loguniform:1e-3:1e-1",
                 "--param", "option.bn=choice:train,frozen", "--fixed", "batch_size=16", "--trials", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert "best trials by validation accuracy" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["search_space"] == {"lr": "loguniform:0.001:0.1", "augment": "choice:none,light",  # --param wins
                                 "option.bn": "choice:train,frozen"}
    best = m["best_params"]
    cfg = yaml.safe_load((out / "best_config.yaml").read_text())
    assert cfg["batch-size"] == 16 and cfg["lr"] == best["lr"] and cfg["augment"] == best["augment"]
    assert cfg["options"] == {"bn": best["option.bn"]} and cfg["labels-per-class"] == 5

    # best_config.yaml is a transfer --config file: the chosen configuration, trained once and scored on test
    assert main(["transfer", "--config", str(out / "best_config.yaml"), "--no-progress"]) == 0
    final = json.loads((out / "best" / "metrics.json").read_text())
    assert final["split"] == "test" and final["n"] == 200 and final["n_train"] == 25
    saved = yaml.safe_load((out / "best" / "config.yaml").read_text())
    assert saved["lr"] == best["lr"] and saved["batch_size"] == 16 and saved["augment"] == best["augment"]


def test_tune_from_a_config_file_resumes_and_bad_input_exits_2(src, tmp_path, capsys):
    source, data = src
    out = tmp_path / "from_yaml"
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump({"source": source, "data": data, "classes": "2,3,4,6,7", "labels-per-class": 5,
                                   "epochs": 1, "param": {"lr": "loguniform:1e-3:1e-1"}, "trials": 1,
                                   "pruning": False, "out": str(out), "progress": False}))
    assert main(["tune", "--config", str(cfg)]) == 0
    assert main(["tune", "--config", str(cfg), "--trials", "2"]) == 0  # the same study, two more trials
    study = optuna.load_study(study_name="from_yaml", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_trials"] == 3 and m["pruner"]["name"] == "NopPruner"
    capsys.readouterr()
    for flags, message in ((["--param", "lr=loguniform:0:1"], "loguniform needs LOW > 0"),
                           (["--param", "lr"], "--param: expected NAME=VALUE, e.g. lr=loguniform:1e-4:1e-1, got 'lr'"),
                           (["--param", "dropout=uniform:0:1"], "unknown search parameter 'dropout'"),
                           (["--trials", "0"], "--trials: expected a whole number ≥ 1"),
                           (["--storage", "bogus://x"], "--storage: expected an Optuna storage URL where the study "
                                                        "can be opened, got 'bogus://x'")):
        assert main(["tune", "--config", str(cfg), *flags]) == 2
        assert message in " ".join(capsys.readouterr().out.split())
    assert len(optuna.load_study(study_name="from_yaml", storage=f"sqlite:///{out / 'study.db'}").trials) == 3
