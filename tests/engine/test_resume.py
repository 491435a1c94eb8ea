"""Exact resume, checkpoint integrity and the divergence guard of the training engine (in-process)."""

import errno
import signal

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data import TensorBatches
from transferkit.engine import fit
from transferkit.engine.checkpoints import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    CorruptCheckpointError,
    Interrupted,
    latest_good_checkpoint,
    resume_checkpoints,
    verify_checkpoint,
)
from transferkit.engine.module import DivergenceError


def images(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randint(0, 60, (n, 1, 12, 12), dtype=torch.uint8, generator=g)
    for c in range(3):
        x[y == c, :, 4 * c:4 * c + 3, :] += 150
    return TensorBatches(x, y, (0.5,), (0.25,))


def make_model():
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))


class Crash(Callback):
    """Dies (like a killed process, without any clean-up of ours) after ``step`` optimiser steps."""

    def __init__(self, step, exc=RuntimeError):
        self.step, self.exc = step, exc

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise self.exc("simulated crash")


class EpochCounts(Callback):
    """How many training examples each epoch's running sums hold at its end."""

    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append(float(pl_module.train_sums.total[2]))


def run(tmp_path, epochs=3, callbacks=(), resume_from=None, every=2, lr=0.05, augment="light", mixup=0.3):
    model = make_model()
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, seed=3, progress=False, patience=None,
                      checkpoint_every=every, resume_from=resume_from, augment=augment, mixup=mixup)
    result = fit(model, [{"params": list(model.parameters()), "lr": lr}], images(), images(45, 1), cfg, tmp_path,
                 callbacks=callbacks)
    return model, result


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("crash_step", [11, 16])  # mid-epoch (8 steps per epoch) and right after an epoch end
def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path, crash_step):
    ref_model, ref = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "run", callbacks=[Crash(crash_step)])
    ckpt, skipped = latest_good_checkpoint(tmp_path / "run" / "checkpoints")
    assert ckpt is not None and not skipped
    counts = EpochCounts()
    model, resumed = run(tmp_path / "run", resume_from=str(ckpt), callbacks=[counts])
    assert counts.seen and all(n == 120 for n in counts.seen)  # each epoch's sums cover exactly its 120 images
    assert resumed.history == ref.history  # every epoch's train and validation figures, bit for bit
    assert same_weights(model, ref_model)
    assert resumed.best_epoch == ref.best_epoch


def test_checkpoints_are_checksummed_kept_two_deep_and_a_corrupted_one_is_skipped(tmp_path):
    run(tmp_path, epochs=2)
    kept = resume_checkpoints(tmp_path / "checkpoints")
    assert len(kept) == 2 and all(p.with_name(p.name + ".sha256").is_file() for p in kept)
    newest, older = kept
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="corrupted"):
        verify_checkpoint(newest)
    chosen, skipped = latest_good_checkpoint(tmp_path / "checkpoints")
    assert chosen == older and len(skipped) == 1 and str(newest) in skipped[0]
    with pytest.raises(CorruptCheckpointError, match=newest.name):
        AtomicCheckpointIO().load_checkpoint(newest)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from transferkit import atomic

    real = atomic.write_bytes
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] >= 3:  # the first checkpoint (file) is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(atomic, "write_bytes", flaky)
    with pytest.raises(CheckpointWriteError, match="No space left on device.*previous checkpoint .*resume-000001"):
        run(tmp_path, epochs=2)
    monkeypatch.setattr(atomic, "write_bytes", real)
    kept = resume_checkpoints(tmp_path / "checkpoints")
    assert len(kept) == 1
    verify_checkpoint(kept[0])  # intact, loadable
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_divergence_stops_with_the_step_keeps_the_last_good_checkpoint_and_suggests_a_lower_lr(tmp_path):
    class Poison(Callback):  # a NaN weight from step 5 on: the next loss is NaN
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step == 5:
                with torch.no_grad():
                    pl_module.model[-1].weight[0, 0] = float("nan")

    with pytest.raises(DivergenceError, match=r"step 5 \(epoch 1\): non-finite loss.*resume-.*lower learning rate"):
        run(tmp_path, callbacks=[Poison()], every=2, augment="none", mixup=0.0)
    newest = resume_checkpoints(tmp_path / "checkpoints")[0]
    verify_checkpoint(newest)
    assert "s0000004" in newest.name  # saved at step 4, nothing after the divergence


def test_sigterm_saves_a_checkpoint_at_the_end_of_the_batch_and_resume_finishes_the_run(tmp_path):
    import os

    class Signal(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 9:
                os.kill(os.getpid(), signal.SIGTERM)

    ref_model, ref = run(tmp_path / "ref", augment="none", mixup=0.0)
    with pytest.raises(Interrupted) as info:
        run(tmp_path / "run", callbacks=[Signal()], augment="none", mixup=0.0)
    assert info.value.signum == signal.SIGTERM and info.value.checkpoint is not None
    assert "s0000010" in info.value.checkpoint.name  # the batch in flight finished first
    model, resumed = run(tmp_path / "run", resume_from=str(info.value.checkpoint), augment="none", mixup=0.0)
    assert resumed.history == ref.history and same_weights(model, ref_model)
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or callable(signal.getsignal(signal.SIGTERM))


def test_resume_inside_a_phase_that_unfroze_layers_equals_the_uninterrupted_run(tmp_path):
    """Gradual unfreezing: the stem joins at epoch 2 (rates × 0.5); a crash in that epoch must resume into it."""
    from transferkit.engine.plan import Phase

    def phased(path, callbacks=(), resume_from=None):
        model = make_model()
        stem = list(model[0].parameters())
        for p in stem:
            p.requires_grad_(False)
        cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3, progress=False, patience=None,
                          checkpoint_every=2, resume_from=resume_from)
        result = fit(model, [{"params": list(model.parameters()), "lr": 0.05}], images(), images(45, 1), cfg, path,
                     phases=[Phase(1, "unfreeze stem", unfreeze=stem, lr_factor=0.5)], callbacks=callbacks)
        return model, result

    ref_model, ref = phased(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        phased(tmp_path / "run", callbacks=[Crash(11)])
    ckpt, _ = latest_good_checkpoint(tmp_path / "run" / "checkpoints")
    model, resumed = phased(tmp_path / "run", resume_from=str(ckpt))
    assert [r["lr"] for r in ref.history] == [0.05, 0.025, 0.025]
    assert resumed.history == ref.history and same_weights(model, ref_model)
