"""End-to-end through the command line on real data: pretrain → transfer → evaluate → predict."""

import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from transferkit.cli.main import main


@pytest.fixture(scope="module")
def runs(fashion_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = f"npz:{fashion_npz}"
    assert main(["pretrain", "--data", data, "--classes", "0,1,5,8,9", "--backbone", "seed_cnn", "--epochs", "2",
                 "--seed", "0", "--out", str(root / "src"), "--no-progress"]) == 0
    assert main(["transfer", "--source", str(root / "src"), "--data", data, "--classes", "2,3,4,6,7",
                 "--labels-per-class", "10", "--strategy", "finetune", "--seed", "0", "--epochs", "15",
                 "--out", str(root / "tgt"), "--no-progress"]) == 0
    return root, data


def test_run_directories_have_everything(runs):
    root, _ = runs
    for name in ("src", "tgt"):
        files = {p.name for p in (root / name).iterdir()}
        assert {"config.yaml", "metrics.json", "report.md", "bundle", "learning_curves.png", "confusion_matrix.png",
                "logs", "checkpoints"} <= files
    m = json.loads((root / "tgt" / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 200 and m["n_train"] == 50 and m["n_val"] == 0  # K is the budget
    assert m["accuracy"] > 0.4  # 5 classes: chance is 0.2
    assert set(m["per_class"]) == {"Pullover", "Dress", "Coat", "Shirt", "Sneaker"}
    assert np.array(m["confusion_matrix"]).sum() == 200
    assert m["train_time_s"] > 0 and m["total_time_s"] >= m["train_time_s"]
    meta = json.loads((root / "tgt" / "bundle" / "transferkit.json").read_text())
    assert meta["lineage"]["source"].endswith("src/bundle") and meta["lineage"]["labels_per_class"] == 10
    assert meta["lineage"]["source_lineage"]["classes"] == [0, 1, 5, 8, 9]


def test_evaluate_reproduces_the_run_metrics(runs, tmp_path):
    root, data = runs
    assert main(["evaluate", str(root / "tgt"), "--data", data, "--classes", "2,3,4,6,7", "--split", "test",
                 "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert yaml.safe_load((tmp_path / "ev" / "config.yaml").read_text())["split"] == "test"
    assert ev["accuracy"] == json.loads((root / "tgt" / "metrics.json").read_text())["accuracy"]


def test_evaluate_with_wrong_classes_names_both(runs, capsys):
    root, data = runs
    assert main(["evaluate", str(root / "tgt"), "--data", data, "--classes", "0,1,2", "--split", "test"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "the model has 5 classes" in out and "has 3 classes" in out


def test_predict_writes_csv_and_skips_broken_files(runs, tmp_path, fashion_npz):
    root, _ = runs
    z = np.load(fashion_npz)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(z["x_test"][i * 40 + 80]).save(folder / f"{i}.png")  # classes 2.. in test order
    (folder / "junk.png").write_text("no image")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(root / "tgt"), str(folder), "--output", str(out), "--top-k", "2"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {"path", "predicted_class", "probability", "top2_class", "error"} <= set(rows[0])
    junk = [r for r in rows if r["error"]]  # the broken file is reported in place, not silently dropped
    assert len(junk) == 1 and junk[0]["path"].endswith("junk.png") and junk[0]["predicted_class"] == ""
    rows = [r for r in rows if not r["error"]]
    assert len(rows) == 4
    assert all(r["predicted_class"] in {"Pullover", "Dress", "Coat", "Shirt", "Sneaker"} for r in rows)
    assert all(0 < float(r["probability"]) <= 1 for r in rows)
    assert main(["predict", str(root / "tgt"), str(folder), "--strict"]) == 2


def test_config_file_with_flag_override(runs, tmp_path):
    root, data = runs
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"source": str(root / "src"), "data": data, "classes": "2,3,4,6,7",
                                   "labels-per-class": 5, "strategy": "feature", "epochs": 3, "seed": 7,
                                   "out": str(tmp_path / "from_yaml"), "progress": False}))
    assert main(["transfer", "--config", str(cfg), "--seed", "3"]) == 0
    saved = yaml.safe_load((tmp_path / "from_yaml" / "config.yaml").read_text())
    assert saved["seed"] == 3 and saved["labels_per_class"] == 5 and saved["strategy"] == "feature"
    assert json.loads((tmp_path / "from_yaml" / "metrics.json").read_text())["strategy"] == "linear_probe"


def test_config_file_unknown_key_is_rejected(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("labels_per_klass: 5\n")
    assert main(["transfer", "--config", str(cfg)]) == 2
    assert "unknown option(s) ['labels_per_klass']" in " ".join(capsys.readouterr().out.split())


def test_bad_names_list_valid_choices(runs, capsys):
    root, data = runs
    assert main(["transfer", "--source", str(root / "src"), "--data", data, "--strategy", "magic"]) == 2
    assert "valid strategies: finetune" in " ".join(capsys.readouterr().out.split())
    assert main(["pretrain", "--data", "cifar99", "--out", "x"]) == 2
    assert "valid datasets:" in " ".join(capsys.readouterr().out.split())
    assert main(["pretrain", "--data", data, "--backbone", "vgg", "--out", "x"]) == 2
    assert "valid backbones:" in " ".join(capsys.readouterr().out.split())
    assert main(["transfer", "--source", str(root / "nowhere"), "--data", data]) == 2


def test_interrupted_transfer_keeps_previous_run(runs, monkeypatch):
    root, data = runs
    before = (root / "tgt" / "metrics.json").read_text()
    from transferkit.strategies.finetune import Finetune

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Finetune, "plan", interrupted)
    assert main(["transfer", "--source", str(root / "src"), "--data", data, "--classes", "2,3,4,6,7",
                 "--labels-per-class", "5", "--out", str(root / "tgt"), "--no-progress"]) == 130
    assert (root / "tgt" / "metrics.json").read_text() == before
    assert not [p for p in root.iterdir() if p.name.startswith(".tgt.partial")]  # no partial directory left


def test_listing_commands(capsys):
    for cmd in ("datasets", "backbones", "strategies"):
        assert main([cmd]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist" in out and "seed_cnn" in out and "linear_probe" in out


def test_predict_with_a_pretrained_imagenet_backbone(tmp_path):
    from skimage import data as skdata

    from transferkit.backbones import backbone_info

    if not backbone_info("mobilenet_v2").weights_available():
        pytest.skip("MobileNetV2 weights package not installed")
    Image.fromarray(skdata.chelsea()).save(tmp_path / "chelsea.jpg")
    out = tmp_path / "p.csv"
    assert main(["predict", "mobilenet_v2", str(tmp_path / "chelsea.jpg"), "--top-k", "5", "--output", str(out)]) == 0
    row = next(csv.DictReader(out.open()))
    top5 = [int(row[f"top{i}_index"]) for i in range(1, 6)]
    assert any(281 <= i <= 285 for i in top5) and "cat" in row["predicted_class"].lower()


def test_real_ctrl_c_during_training_saves_a_checkpoint_and_leaves_previous_run_intact(tmp_path, capsys):
    """Send SIGINT to a real `transferkit pretrain` process in the middle of training (the runs before and after it
    are made in this process: only the interrupted one needs its own)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from transferkit.rundir import latest_good_checkpoint

    out = tmp_path / "src"
    cmd = [sys.executable, "-m", "transferkit.cli.main", "pretrain", "--data", "digits", "--epochs", "1", "--out",
           str(out), "--no-progress"]
    env = {**os.environ, "TRANSFERKIT_OFFLINE": "1"}
    assert main(cmd[3:]) == 0
    before = (out / "metrics.json").read_text()
    long_run = cmd[:]
    long_run[long_run.index("1")] = "500"
    # a shell that starts the test run in the background (`make test &`) makes SIGINT ignored, and an ignored
    # signal stays ignored across exec: give the child the default disposition, as a terminal would
    proc = subprocess.Popen(long_run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until training writes into its staging directory
        partial = [p for p in tmp_path.iterdir() if p.name == ".src.partial"]
        if partial and (partial[0] / "logs").exists():
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("training never started")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # say what the process was doing instead of a bare timeout
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"still running 120 s after SIGINT; its output:\n{output[-3000:]}")
    assert proc.returncode == 130, output
    assert "interrupted" in output and "SIGINT" in output and f"transferkit resume {out}" in " ".join(output.split())
    assert (out / "metrics.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".src.lock", ".src.partial", "src"]
    ckpt, _ = latest_good_checkpoint(tmp_path / ".src.partial" / "checkpoints")
    assert ckpt is not None  # saved at the end of the batch in flight
    capsys.readouterr()
    assert main(cmd[3:]) == 2  # a fresh run must not discard it
    said = capsys.readouterr().out
    assert "--resume" in said and "--overwrite" in said


def test_strategy_options_from_flags_and_yaml(runs, tmp_path, capsys):
    root, data = runs
    base = ["transfer", "--source", str(root / "src"), "--data", data, "--classes", "2,3,4,6,7",
            "--labels-per-class", "5", "--epochs", "2", "--no-progress"]
    assert main([*base, "--option", "regularizer=l2sp", "--option", "reg_alpha=0.05", "--out",
                 str(tmp_path / "l2sp")]) == 0
    saved = json.loads((tmp_path / "l2sp" / "metrics.json").read_text())
    opts = saved["options"]
    assert opts["regularizer"] == "l2sp" and opts["reg_alpha"] == 0.05
    ratios = [r["reg_ratio"] for r in saved["history"]]  # the regulariser's size against the cross-entropy
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    assert f"{ratios[-1]:.3g} in the last" in (tmp_path / "l2sp" / "report.md").read_text()
    cfg = tmp_path / "o.yaml"
    cfg.write_text(yaml.safe_dump({"options": {"bn": "train"}}))  # off the default (frozen)
    assert main([*base, "--config", str(cfg), "--out", str(tmp_path / "bn")]) == 0
    assert json.loads((tmp_path / "bn" / "metrics.json").read_text())["options"]["bn"] == "train"
    assert main([*base, "--option", "regulariser=l2sp", "--out", str(tmp_path / "bad")]) == 2
    assert "valid options: freeze" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("argv", [["--help"], ["transfer", "--help"], ["auto", "--help"]])
def test_help_loads_no_job_and_no_torch(argv):
    """``--help`` answers from the parser alone: PyTorch, the jobs and the training engine stay unimported."""
    import subprocess
    import sys

    code = ("import sys\nfrom transferkit.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('torch', 'transferkit.api', 'transferkit.engine', 'lightning') "
            "if m in sys.modules)\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "usage:" in out
    assert out.strip().endswith("HEAVY []"), out[-300:]
