"""The life of a training run's directory: one writer at a time, resumable after a crash, replaced atomically.

A training job writing ``runs/x`` works in ``runs/.x.partial/`` (config, checkpoints, logs, results) while
holding a lock on ``runs/.x.lock``; only when it has finished does the partial directory replace ``runs/x``
(:func:`transferkit.atomic.replace_dir`), so a finished earlier run stays intact until then.

* A **second run** aimed at the same directory while the first holds the lock refuses, naming the holder
  (process, host, start time) — unless ``overwrite``, in which case it works in a private staging directory
  and leaves the first run's files alone; whichever finishes last is the one in ``runs/x``.
* A run that **stopped early** (killed, Ctrl-C, diverged, disk full) leaves ``runs/.x.partial/`` with its
  resume checkpoints. ``resume`` continues it; a fresh run refuses to discard it unless ``overwrite``. A
  partial directory without a usable checkpoint (the run failed before training) is simply removed.
* Under DDP only the process of global rank 0 takes the lock and writes; the others (:func:`launch_rank`
  > 0) get a scratch directory that is deleted afterwards, and read the same resume checkpoint.

The lock is an advisory ``fcntl.flock``: the operating system releases it when the holder dies, even by
SIGKILL, so a crashed run never leaves a stale lock. (Where ``fcntl`` is missing — Windows — runs are not
locked; the rest works.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferkit import atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# options that may differ between an interrupted run and its resumption (they do not change the result)
RESUME_FREE = {"resume", "overwrite", "progress", "command"}


RESUME_PATTERN = re.compile(r"resume-(\d+)-e(\d+)-s(\d+)\.ckpt$")


class RunLockedError(ValueError):
    """Another run is writing to the same run directory."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file whose checksum is missing or does not match its content."""


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_checkpoint(path: str | Path) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``path``'s SHA-256 equals the one recorded beside it."""
    path = Path(path)
    side = checksum_path(path)
    if not path.is_file():
        raise CorruptCheckpointError(f"checkpoint {path} does not exist")
    if not side.is_file():
        raise CorruptCheckpointError(f"checkpoint {path} has no checksum file {side.name} (its write did not finish)")
    recorded = side.read_text().split()
    expected = recorded[0] if recorded else ""
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise CorruptCheckpointError(f"checkpoint {path} is corrupted: its SHA-256 {actual[:12]}… does not match the "
                                     f"recorded {expected[:12] or '(empty)'}…")


def resume_checkpoints(directory: str | Path) -> list[Path]:
    """The resume checkpoints in ``directory``, newest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := RESUME_PATTERN.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_good_checkpoint(directory: str | Path) -> tuple[Path | None, list[str]]:
    """The newest resume checkpoint in ``directory`` that passes its checksum, and why newer ones did not."""
    skipped = []
    for path in resume_checkpoints(directory):
        try:
            verify_checkpoint(path)
        except CorruptCheckpointError as exc:
            skipped.append(str(exc))
            continue
        return path, skipped
    return None, skipped




def launch_rank() -> int:
    """This process's global rank as the launcher set it (torchrun, SLURM, Lightning's DDP), 0 when alone."""
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    local, node = os.environ.get("LOCAL_RANK", "0"), os.environ.get("NODE_RANK", "0")
    return int(local or 0) + int(node or 0) * 10_000 if local.isdigit() and node.isdigit() else 0


def partial_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@dataclass
class RunSession:
    """Where a training job writes (``path``), and the checkpoint it resumes from (``resume_from``)."""

    out: Path
    path: Path
    resume_from: Path | None = None
    worker: bool = False  # a DDP process other than rank 0: writes nothing that lasts
    skipped: list[str] = field(default_factory=list)  # newer checkpoints passed over (corrupted), with reasons


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"process {info.get('pid')} on {info.get('host')} (started {info.get('started')})"


def _try_lock(lock: Path) -> Any | None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock, "a+")  # noqa: SIM115 - held for the run's whole life
    if fcntl is None:
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    fh.flush()
    return fh


def _release(fh: Any) -> None:
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def _good_checkpoint(run: Path) -> tuple[Path | None, list[str]]:
    return latest_good_checkpoint(run / "checkpoints")


def _check_same_config(partial: Path, config: dict[str, Any] | None) -> None:
    recorded_file = partial / "config.yaml"
    if config is None or not recorded_file.is_file():
        return
    recorded = yaml.safe_load(recorded_file.read_text()) or {}
    # the types config.yaml has (paths → str, tuples → lists, NumPy scalars → Python)
    now = json.loads(json.dumps(config, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    diff = sorted(k for k in set(recorded) | set(now) if k not in RESUME_FREE and recorded.get(k) != now.get(k))
    if diff:
        detail = "; ".join(f"{k}: {recorded.get(k)!r} then, {now.get(k)!r} now" for k in diff)
        raise ValueError(f"--resume: the options differ from the interrupted run's ({detail}); resume with the same "
                         "options ('transferkit resume DIR' reads them from its config.yaml) or start afresh with "
                         "--overwrite")


@contextlib.contextmanager
def run_session(out: str | Path, resume: bool = False, overwrite: bool = False,
                config: dict[str, Any] | None = None) -> Iterator[RunSession]:
    """Open ``out`` for a training run (see the module docstring); on success the results replace ``out``.

    ``config`` (the job's options) is compared with the interrupted run's ``config.yaml`` when resuming.
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError("--resume continues an interrupted run and --overwrite discards it: choose one")
    partial = partial_dir(out)
    if launch_rank() > 0:  # a DDP worker: same inputs, no lasting output
        scratch = Path(tempfile.mkdtemp(prefix="transferkit-worker-"))
        ckpt, skipped = _good_checkpoint(partial) if resume else (None, [])
        try:
            yield RunSession(out, scratch, ckpt, worker=True, skipped=skipped)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _try_lock(lock_path(out))
    if lock is None:
        if not overwrite:
            raise RunLockedError(f"{out} is being written by {_holder(lock_path(out))}; wait for it to finish, write "
                                 f"to another --out, or pass --overwrite to run anyway (this run then stages "
                                 f"separately and replaces {out} when it finishes)")
        with atomic.staged_dir(out) as staging:  # private staging, replaces out at the end; removed on failure
            yield RunSession(out, staging)
        return
    try:
        session = _open_partial(out, partial, resume, overwrite, config)
        try:
            yield session
        except BaseException:
            if _good_checkpoint(partial)[0] is None:  # nothing to resume from: leave no debris
                shutil.rmtree(partial, ignore_errors=True)
            raise
        for p in (partial / "checkpoints").glob("resume-*"):  # only for resuming; the bundle is the artefact
            p.unlink()
        atomic.replace_dir(partial, out)
    finally:
        _release(lock)


def _open_partial(out: Path, partial: Path, resume: bool, overwrite: bool,
                  config: dict[str, Any] | None) -> RunSession:
    if partial.exists():
        ckpt, skipped = _good_checkpoint(partial)
        if resume:
            if ckpt is None:
                reasons = f" ({'; '.join(skipped)})" if skipped else ""
                raise ValueError(f"--resume {out}: the interrupted run in {partial} has no usable checkpoint{reasons}; "
                                 "start afresh with --overwrite")
            _check_same_config(partial, config)
            return RunSession(out, partial, ckpt, skipped=skipped)
        if ckpt is not None and not overwrite:
            raise ValueError(f"{out} has an interrupted run (latest checkpoint {ckpt.name} in {partial}); continue "
                             f"it with --resume {out}, or discard it with --overwrite")
        shutil.rmtree(partial)
    elif resume:
        what = ("is a finished run: nothing to resume" if (out / "metrics.json").is_file()
                else f"has no interrupted run to resume (looked for {partial})")
        raise ValueError(f"--resume {out}: {what}")
    partial.mkdir(parents=True)
    return RunSession(out, partial)


def recorded_config(out: str | Path) -> dict[str, Any]:
    """The options of the interrupted run at ``out`` (its ``config.yaml``), for ``transferkit resume``."""
    out = Path(out)
    path = partial_dir(out) / "config.yaml"
    if not path.is_file():
        what = "is a finished run: nothing to resume" if (out / "metrics.json").is_file() else \
            f"has no interrupted run to resume (no {path})"
        raise ValueError(f"resume {out}: {what}")
    return yaml.safe_load(path.read_text()) or {}
