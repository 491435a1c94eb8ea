"""Checkpoints that survive faults: atomic, checksummed, resumable to the exact batch; Ctrl-C saves one.

* :class:`AtomicCheckpointIO` — Lightning's checkpoint I/O, but every file is written to a temporary name,
  flushed to disk and renamed into place, with its SHA-256 beside it (``<file>.sha256``, written after the
  file). A crash or a full disk while writing leaves the previous checkpoint as it was; a file whose
  checksum is missing or wrong is refused when loading (:class:`CorruptCheckpointError`).
* :class:`ResumeCheckpoints` — saves ``checkpoints/resume-*.ckpt`` (model, optimiser, scheduler, callbacks,
  the training history, the global RNG states and the loader position) every ``every_n_steps`` optimiser
  steps and at the end of every epoch, keeps the newest ``keep``, and turns SIGINT/SIGTERM into "save a
  checkpoint at the end of this batch, then stop" (:class:`Interrupted`).
* :func:`latest_good_checkpoint` — the newest resume checkpoint whose checksum holds, and the reasons the
  newer ones were passed over.

Checkpoints are pickles (``torch.save``) and are only ever loaded from the user's own run directory; the
artefact to share is the bundle (safetensors + JSON), never a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from transferkit import atomic
from transferkit.data.sampling import EpochBatchSampler
from transferkit.errors import ConfigError, Interrupted
from transferkit.rundir import (  # noqa: F401  (re-exported: the checkpoint files' names and checks)
    RESUME_PATTERN,
    CorruptCheckpointError,
    checksum_path,
    latest_good_checkpoint,
    resume_checkpoints,
    verify_checkpoint,
)


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, permissions); the previous checkpoint is intact."""


class AtomicCheckpointIO(CheckpointIO):
    """``torch.save`` into memory, then an atomic write of the file and of its checksum; verified loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        data = buf.getvalue()
        previous = _previous_checkpoint(path)
        try:
            atomic.write_bytes(path, data)
            atomic.write_text(checksum_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
        except OSError as exc:
            keep = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            raise CheckpointWriteError(exc.errno, f"could not write checkpoint {path}: {exc.strerror or exc}; "
                                                  f"{keep}") from exc

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        verify_checkpoint(path)
        # our own file from the user's run directory (see the module docstring): full unpickling is needed for the
        # loop and callback states Lightning stores
        return torch.load(path, map_location=map_location, weights_only=False)

    def remove_checkpoint(self, path: str | Path) -> None:
        for p in (Path(path), checksum_path(Path(path))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _previous_checkpoint(path: Path) -> Path | None:
    if path.is_file():
        return path
    found = resume_checkpoints(path.parent)
    return found[0] if found else None


def rng_states() -> dict[str, Any]:
    """The global random states (torch CPU, CUDA if used, NumPy, Python) as plain tensors and tuples."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)),
                                                                     int(pos), int(has_gauss), float(gauss)),
                           "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeCheckpoints(Checkpoint):
    """Save what an exact resume needs every ``every_n_steps`` steps, at each epoch end, and on SIGINT/SIGTERM.

    ``samplers`` are the training loaders' :class:`~transferkit.data.sampling.EpochBatchSampler` objects; on
    resume they skip the batches the checkpoint had already trained on. Nothing is saved once the module
    reports divergence (``pl_module.diverged``): the newest checkpoint stays the last good one.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None, keep: int = 2,
                 samplers: Sequence[EpochBatchSampler] = (), signals: bool = True) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError("checkpoint_every", "at least 1 step (or None: epoch ends only)", every_n_steps)
        self.dirpath, self.every, self.keep = Path(dirpath), every_n_steps, max(int(keep), 1)
        self.samplers = list(samplers)
        self.signals = signals
        self.last_path: Path | None = None
        self.saves = 0
        self.save_seconds = 0.0  # wall time spent writing checkpoints (the overhead they cost)
        self._seq = 0
        self._requested: int | None = None
        self._previous: dict[int, Any] = {}
        self._pending_rng: dict[str, Any] | None = None

    # -- signals ------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._requested is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self._requested = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        existing = resume_checkpoints(self.dirpath)
        self._seq = max((int(RESUME_PATTERN.search(p.name).group(1)) for p in existing), default=0)
        if self._pending_rng is not None:  # after everything that ran between the restore and the first batch
            set_rng_states(self._pending_rng)
            self._pending_rng = None
        if self.signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_signals()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_signals()

    # -- saving -------------------------------------------------------------------------------------
    def _diverged(self, pl_module: L.LightningModule) -> bool:
        return getattr(pl_module, "diverged", None) is not None

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        if self._diverged(pl_module):
            return None
        start = time.perf_counter()
        self._seq += 1
        path = self.dirpath / f"resume-{self._seq:06d}-e{trainer.current_epoch:03d}-s{trainer.global_step:07d}.ckpt"
        trainer.save_checkpoint(path)  # every process calls it (a barrier); only rank 0 writes
        self.last_path, self.saves = path, self.saves + 1
        if trainer.is_global_zero:
            for old in resume_checkpoints(self.dirpath)[self.keep:]:
                AtomicCheckpointIO().remove_checkpoint(old)
        self.save_seconds += time.perf_counter() - start
        return path

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        flag = self._requested is not None
        if trainer.world_size > 1:  # every process must agree, or the collective calls that follow would hang
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
            if flag and self._requested is None:
                self._requested = signal.SIGTERM
        return flag

    def _stop_if_requested(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stop_requested(trainer):
            path = self.save(trainer, pl_module)
            self._restore_signals()
            raise Interrupted(self._requested or signal.SIGINT, path)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._stop_if_requested(trainer, pl_module)  # one agreement per step (a collective call under DDP)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if self.every and trainer.global_step % self.every == 0 and done < trainer.num_training_batches:
            self.save(trainer, pl_module)  # (the epoch's last batch is saved once, at the epoch's end)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)  # after validation: the kept best weights and early-stopping state count it
        self._stop_if_requested(trainer, pl_module)

    # -- what a checkpoint holds beyond Lightning's own state ---------------------------------------------
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        checkpoint["transferkit"] = {
            "rng": rng_states(),
            "epoch": trainer.current_epoch,
            "batches_done": int(progress.processed),
            "epoch_done": int(progress.processed) >= trainer.num_training_batches,
            "world_size": trainer.world_size,
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get("transferkit")
        if state is None:
            return
        if state.get("world_size", 1) != trainer.world_size:
            raise ValueError(f"this checkpoint was written by {state['world_size']} process(es); resume it with the "
                             f"same number (devices × num_nodes), not {trainer.world_size}")
        self._pending_rng = state["rng"]
        epoch, done = state["epoch"], state["batches_done"]
        for sampler in self.samplers:
            if state["epoch_done"]:
                sampler.set_epoch(epoch + 1)
            else:
                sampler.resume(epoch, done)
