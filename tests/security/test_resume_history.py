"""Issue 25: a resumed run keeps the whole history — ``logs/metrics.csv`` rows and ``epoch_times_s`` of every
epoch, also those before the interruption (and an epoch redone after it only once)."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from tests.engine.test_resume import Crash, images  # the same tiny task and the same simulated kill
from transferkit.config import TrainConfig
from transferkit.engine import fit
from transferkit.engine.checkpoints import latest_good_checkpoint
from transferkit.engine.trainer import merge_log_after_resume

EPOCHS = 4  # 8 steps per epoch


def run(path, callbacks=(), resume_from=None):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    cfg = TrainConfig(epochs=EPOCHS, batch_size=16, lr=0.05, seed=3, progress=False, patience=None,
                      checkpoint_every=3, resume_from=resume_from)
    return fit(model, [{"params": list(model.parameters()), "lr": 0.05}], images(), images(45, 1), cfg, path,
               callbacks=callbacks)


def rows(path):
    with open(path / "logs" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("crash_step", [13, 21])  # mid-epoch 2 (last checkpoint at step 12) / mid-epoch 3
def test_a_resumed_run_logs_every_epoch_once_and_times_every_epoch(tmp_path, crash_step, single_thread):
    ref = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "run", callbacks=[Crash(crash_step)])
    ckpt, _ = latest_good_checkpoint(tmp_path / "run" / "checkpoints")
    resumed = run(tmp_path / "run", resume_from=str(ckpt))
    got, want = rows(tmp_path / "run"), rows(tmp_path / "ref")
    assert len(got) == len(want) == 2 * EPOCHS  # a training and a validation row per epoch (was: since the resume)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    assert [r["val_loss"] for r in got] == [r["val_loss"] for r in want]  # the same run, bit for bit
    assert not list((tmp_path / "run" / "logs").glob("metrics.before-resume-*"))
    assert len(resumed.epoch_times_s) == len(ref.epoch_times_s) == EPOCHS  # was: only the epochs since the resume
    assert all(t > 0 for t in resumed.epoch_times_s)


def test_merge_keeps_older_epochs_only_before_the_newer_files(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.before-resume-1.csv").write_text("epoch,step,a\n0,1,x0\n1,2,x1\n2,3,stale\n")
    (logs / "metrics.before-resume-2.csv").write_text("epoch,step,a\n2,3,y2\n3,4,stale\n")
    (logs / "metrics.csv").write_text("epoch,step,a,b\n3,4,z3,1\n4,5,z4,2\n")
    merge_log_after_resume(logs)
    merged = list(csv.DictReader((logs / "metrics.csv").open()))
    assert [(r["epoch"], r["a"]) for r in merged] == [("0", "x0"), ("1", "x1"), ("2", "y2"), ("3", "z3"), ("4", "z4")]
    assert sorted(p.name for p in logs.iterdir()) == ["metrics.csv"]
