"""Scale and faults through real processes: SIGKILL then resume, 2-process DDP, locks, full disk, corruption.

Each test asserts that nothing is lost: a finished earlier run stays as it was, checkpoints stay valid, and a
resumed run ends exactly where the uninterrupted one does.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from transferkit.bundle import load_bundle
from transferkit.cli.main import main
from transferkit.rundir import latest_good_checkpoint, partial_dir, resume_checkpoints

CLASSES = "2,3,4,6,7"


def cli(*args):
    return [sys.executable, "-m", "transferkit.cli.main", *args]


def env():
    return {**os.environ, "TRANSFERKIT_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def source(fashion_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = f"npz:{fashion_npz}"
    assert main(["pretrain", "--data", data, "--classes", "0,1,5,8,9", "--epochs", "1", "--out", str(root / "src"),
                 "--no-progress"]) == 0
    return root, data


def transfer_args(root, data, out, *extra):
    return ["transfer", "--source", str(root / "src"), "--data", data, "--classes", CLASSES, "--labels-per-class",
            "30", "--val-per-class", "30", "--epochs", "3", "--batch-size", "16", "--patience", "10", "--no-progress",
            "--out", str(out), *extra]


def same_bundles(a, b, atol=0.0):
    ma, mb = load_bundle(a / "bundle")[0], load_bundle(b / "bundle")[0]
    diffs = [float((x.float() - y.float()).abs().max()) for x, y in
             zip(ma.state_dict().values(), mb.state_dict().values(), strict=True) if x.numel()]
    return max(diffs) <= atol, max(diffs)


def comparable(metrics):
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "validation")} | {
        "best_epoch": metrics["fit"]["best_epoch"], "epochs_run": metrics["fit"]["epochs_run"]}


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(source, tmp_path):
    root, data = source
    extra = ("--checkpoint-every", "4", "--augment", "light")  # 10 steps per epoch: checkpoints mid-epoch
    assert main(transfer_args(root, data, tmp_path / "ref", *extra)) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen(cli(*transfer_args(root, data, out, *extra)), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a checkpoint from the middle of the second epoch is on disk
        names = [p.name for p in resume_checkpoints(partial_dir(out) / "checkpoints")]
        if any("-e001-s0000016" in n for n in names):
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("no mid-epoch checkpoint appeared")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    ckpt, _ = latest_good_checkpoint(partial_dir(out) / "checkpoints")
    assert ckpt is not None and "-e001-" in ckpt.name  # the newest one is mid-epoch 2
    assert main(["resume", str(out), "--no-progress"]) == 0
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert comparable(got) == comparable(ref)
    assert same_bundles(tmp_path / "ref", out)[0]  # bit-identical weights
    assert not partial_dir(out).exists() and not list((out / "checkpoints").glob("resume-*"))


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(source, tmp_path):
    """Tolerance: validation loss within 1e-4 and every weight within 1e-3 (float reduction order differs:
    gradients are averaged over processes, BatchNorm statistics are synchronised); predictions identical."""
    root, data = source
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(transfer_args(root, data, one, "--batch-size", "32")) == 0
    res = subprocess.run(cli(*transfer_args(root, data, two, "--batch-size", "32", "--devices", "2")), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert a["fit"]["processes"] == 1 and b["fit"]["processes"] == 2
    assert abs(a["validation"]["loss"] - b["validation"]["loss"]) <= 1e-4
    assert a["validation"]["accuracy"] == b["validation"]["accuracy"]
    assert a["confusion_matrix"] == b["confusion_matrix"]  # the same test predictions
    ok, worst = same_bundles(one, two, atol=1e-3)
    assert ok, worst
    assert res.stdout.count("report:") == 1  # only rank 0 reported and wrote
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["one", "two"]


def test_a_second_run_on_a_locked_directory_refuses_unless_overwrite(source, tmp_path, capsys):
    from transferkit.rundir import _try_lock, lock_path

    root, data = source
    out = tmp_path / "busy"
    holder = _try_lock(lock_path(out))  # another run holds runs/busy
    try:
        assert main(transfer_args(root, data, out, "--epochs", "1")) == 2
        msg = " ".join(capsys.readouterr().out.split())
        assert f"{out} is being written by process {os.getpid()}" in msg and "--overwrite" in msg
        assert not out.exists()
        assert main(transfer_args(root, data, out, "--epochs", "1", "--overwrite")) == 0
        assert (out / "metrics.json").is_file()
    finally:
        holder.close()


def test_disk_full_while_writing_the_bundle_keeps_the_previous_run_and_the_checkpoint(source, tmp_path,
                                                                                     monkeypatch, capsys):
    from transferkit import bundle

    root, data = source
    out = tmp_path / "run"
    assert main(transfer_args(root, data, out, "--epochs", "1")) == 0
    before = (out / "metrics.json").read_text()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "bundle/model.safetensors")

    monkeypatch.setattr(bundle.safetensors.torch, "save_file", full)
    assert main(transfer_args(root, data, out, "--epochs", "2", "--overwrite")) == 2
    assert "No space left on device" in capsys.readouterr().out
    assert (out / "metrics.json").read_text() == before  # the finished earlier run is untouched
    ckpt, _ = latest_good_checkpoint(partial_dir(out) / "checkpoints")
    assert ckpt is not None  # the interrupted run can still be resumed once there is space
    monkeypatch.undo()
    assert main(["resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["fit"]["epochs_run"] == 2


def test_a_corrupted_checkpoint_is_refused_and_resume_falls_back_to_the_previous_one(source, tmp_path, capsys):
    root, data = source
    out = tmp_path / "run"
    ref = tmp_path / "ref"
    assert main(transfer_args(root, data, ref, "--checkpoint-every", "5")) == 0
    proc = subprocess.Popen(cli(*transfer_args(root, data, out, "--checkpoint-every", "5")), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(resume_checkpoints(partial_dir(out) / "checkpoints")) < 2:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    newest, older = resume_checkpoints(partial_dir(out) / "checkpoints")[:2]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a failing disk
    assert main(["resume", str(out), "--no-progress"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "skipped" in text and newest.name in text and "corrupted" in text and older.name in text
    assert comparable(json.loads((out / "metrics.json").read_text())) == \
        comparable(json.loads((ref / "metrics.json").read_text()))


def test_two_runs_with_one_seed_are_identical_and_record_their_provenance(source, tmp_path):
    root, data = source
    runs = [tmp_path / "a", tmp_path / "b"]
    for r in runs:
        assert main(transfer_args(root, data, r, "--epochs", "2", "--augment", "light", "--deterministic")) == 0
    a, b = (json.loads((r / "metrics.json").read_text()) for r in runs)
    assert comparable(a) == comparable(b)
    assert same_bundles(*runs)[0]
    prov = a["provenance"]
    assert prov == b["provenance"] and prov["seed"] == 0
    assert set(prov["data_fingerprints"]) == {"train", "validation", "test"} and all(
        prov["data_fingerprints"].values())
    assert prov["environment"]["libraries"]["torch"] == torch.__version__.split("+")[0] or \
        prov["environment"]["libraries"]["torch"].startswith(torch.__version__.split("+")[0])
    assert "transferkit_git" in prov and "project_git" in prov


def test_resume_refusals_name_the_problem(source, tmp_path, capsys):
    root, data = source
    out = tmp_path / "done"
    assert main(transfer_args(root, data, out, "--epochs", "1")) == 0
    assert main(["resume", str(out)]) == 2
    assert "is a finished run: nothing to resume" in " ".join(capsys.readouterr().out.split())
    assert main(["resume", str(tmp_path / "nothing")]) == 2
    assert "has no interrupted run to resume" in " ".join(capsys.readouterr().out.split())
    assert main(["adapt", "--devices", "2", "--epochs", "1", "--out", str(tmp_path / "a")]) == 2
    assert "domain adaptation runs in one process" in " ".join(capsys.readouterr().out.split())
    assert main(transfer_args(root, data, tmp_path / "x", "--devices", "2", "--cv", "3")) == 2
    assert "cross-validation (cv) runs in one process" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(transfer_args(root, data, tmp_path / "x", "--distributed", "horovod"))
    err = " ".join(capsys.readouterr().err.split())
    assert "invalid choice 'horovod' for argument '--distributed'" in err and "ddp" in err


def test_distill_trains_both_students_with_two_processes(source, tmp_path):
    root, data = source
    out = tmp_path / "kd"
    res = subprocess.run(cli("distill", "--teacher", str(root / "src"), "--data", data, "--classes", "0,1,5,8,9",
                             "--labels-per-class", "20", "--unlabelled", "100", "--epochs", "2", "--batch-size", "32",
                             "--no-latency", "--no-progress", "--devices", "2", "--out", str(out)),
                         env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["fit"]["processes"] == 2 and m["baseline_fit"]["processes"] == 2
    assert [e["model"] for e in m["models"]] == ["teacher", "student (KD)", "student (labels only)"]
    assert res.stdout.count("distill →") == 1  # rank 0 alone reports


def test_linear_probe_with_its_feature_cache_under_ddp_matches_one_process(source, tmp_path):
    """Both processes extract (or read) the cached features — written atomically, so concurrent writers are safe.
    (The stepped head, solver=sgd: the default solved head runs in one process whatever --devices says.)"""
    root, data = source
    args = ("--strategy", "linear_probe", "--option", "solver=sgd", "--epochs", "4", "--batch-size", "32")
    assert main(transfer_args(root, data, tmp_path / "one", *args)) == 0
    res = subprocess.run(cli(*transfer_args(root, data, tmp_path / "two", *args, "--devices", "2")), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert b["fit"]["processes"] == 2 and b["feature_cache"] in ("hit", "miss")
    assert abs(a["validation"]["loss"] - b["validation"]["loss"]) <= 1e-4
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_two_processes_on_a_streamed_folder_match_one_process_in_memory(source, fashion_npz, tmp_path):
    """Issue 29: an image folder streamed from the prepared cache (built by both processes at once — each writes a
    temporary file renamed into place) with worker processes under 2-process DDP trains as one process holding the
    same folder in memory: each process reads a disjoint share of every global batch."""
    from PIL import Image

    root, _ = source
    z = np.load(fashion_npz)
    folder = tmp_path / "photos"
    for split, xk, yk in (("train", "x", "y"), ("test", "x_test", "y_test")):
        for i, (img, label) in enumerate(zip(z[xk], z[yk], strict=True)):
            (folder / split / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / split / f"c{label}" / f"{i:04d}.png")
    data = f"image_folder:{folder}"
    memory = {**env(), "TRANSFERKIT_STREAM_ABOVE": "none", "TRANSFERKIT_CACHE": str(tmp_path / "cache")}
    streamed = {**memory, "TRANSFERKIT_STREAM_ABOVE": "0"}
    args = ("--batch-size", "32", "--workers", "2")  # (augmentation seeds are per process: not comparable)
    runs = [(tmp_path / "one", memory, ()), (tmp_path / "two", streamed, ("--devices", "2"))]
    for out, environment, extra in runs:
        res = subprocess.run(cli(*transfer_args(root, data, out, *args, *extra)), env=environment,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "streamed from disk" in res.stderr and "prepared" in res.stderr
    assert len(list((tmp_path / "cache" / "prepared").glob("*.tkdata"))) == 2  # train, test
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "one", tmp_path / "two"))
    assert a["fit"]["processes"] == 1 and b["fit"]["processes"] == 2
    assert a["provenance"]["data_loading"] == {"mode": "in memory"}
    assert b["provenance"]["data_loading"]["mode"] == "streamed" and b["provenance"]["data_loading"]["workers"] == 2
    assert abs(a["validation"]["loss"] - b["validation"]["loss"]) <= 1e-4
    assert a["confusion_matrix"] == b["confusion_matrix"]
    ok, worst = same_bundles(tmp_path / "one", tmp_path / "two", atol=1e-3)
    assert ok, worst
