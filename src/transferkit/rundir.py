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

**What may be replaced.** Every job that writes a directory replaces its ``--out`` as a whole, so before
anything is written :func:`check_output_dir` refuses an ``--out`` that is an existing file, a folder that is
not a transferkit output (even with ``--overwrite``: that flag only discards an interrupted run or another
run's lock), one of the inputs the job reads, a folder inside one, or a folder holding one. Every directory
transferkit writes carries the marker file ``.transferkit-run`` (JSON: ``kind`` = the job, ``version``,
``host``, ``created``); see :func:`output_kind` for how directories written before the marker are
recognised. Output files (``predict --output``, ``export --out``) get the same care from
:func:`check_output_file`.

**Resuming trusts the checkpoint.** Lightning checkpoints are pickles: loading one runs whatever code it
names. Resuming a run directory that another user owns, or that was created on another machine, warns
(:class:`UntrustedRunWarning`); resume only runs you (or someone you trust) wrote.
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
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferkit import atomic
from transferkit.errors import ConfigError
from transferkit.outputs import (  # noqa: F401  (re-exported: the marker rule lives below atomic)
    LEGACY_SIGNATURES,
    MARKER_FILE,
    OutputPathError,
    output_kind,
    read_marker,
)

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


class UntrustedRunWarning(RuntimeWarning):
    """Resuming a run directory that another user owns or that another machine created (checkpoints are pickles)."""


def write_marker(directory: str | Path, kind: str) -> None:
    """Mark ``directory`` as a transferkit output of job ``kind`` (``.transferkit-run``, JSON)."""
    from transferkit import __version__

    atomic.write_text(Path(directory) / MARKER_FILE, json.dumps({
        "kind": kind, "version": __version__, "host": socket.gethostname(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")


def _local_paths(value: Any) -> list[Path]:
    """The existing local paths a source/data argument names: itself, or the parts of ``name:PATH`` and
    ``fuse:A+B`` specs (names such as ``mobilenet_v2`` that are no path here give nothing)."""
    if value is None or not isinstance(value, str | os.PathLike):
        return []
    text = os.fspath(value)
    if not text:
        return []
    found = []
    for piece in [text, *re.split(r"[:+,]", text)]:
        try:
            p = Path(piece).expanduser()
            if piece and p.exists() and p not in found:
                found.append(p)
        except (OSError, ValueError):  # a name no file can have (NUL byte, too long): not a path here
            continue
    return found


def _listing(path: Path, most: int = 3) -> str:
    try:
        names = sorted(path.iterdir())
    except OSError:
        return "entries transferkit cannot list"
    shown = [(p.name if p.name.isprintable() else repr(p.name)) + ("/" if p.is_dir() else "") for p in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more


def _check_not_an_input(out: Path, sources: Iterable[Any], option: str, what: str) -> None:
    target = out.expanduser().resolve()
    for source in sources:
        for path in _local_paths(source):
            src = path.resolve()
            if target == src:
                raise OutputPathError(f"{option}={out} is {path}, an input this job reads: writing {what} there "
                                      f"would replace it; choose another {option}=… (nothing was written)")
            if src in target.parents:
                raise OutputPathError(f"{option}={out} lies inside {path}, an input this job reads; write {what} "
                                      f"outside it, e.g. {option}={src.parent / (src.name + '-out')} "
                                      "(nothing was written)")
            if target in src.parents:
                raise OutputPathError(f"{option}={out} holds {path}, an input this job reads, and would be "
                                      f"replaced by {what}; choose another {option}=… (nothing was written)")


def check_output_name(out: Any, option: str = "out") -> Path:
    """``out`` as a path; :class:`OutputPathError` when it is empty or names the current or a parent folder."""
    if out is None or (isinstance(out, str) and not out.strip()):
        raise OutputPathError(f"{option}='' is empty: give the path to write, e.g. {option}=runs/NAME")
    path = Path(out)
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"{option}={out}: name a folder of its own (e.g. {option}={path / 'NAME'}), not "
                              "the current or a parent folder (nothing was written)")
    return path


def check_output_dir(out: Any, sources: Iterable[Any] = (), kind: str | None = None,
                     option: str = "out", bundle: bool = False) -> Path:
    """Refuse (:class:`OutputPathError`) to write the output directory ``out`` unless it is safe; return it.

    Safe means: ``out`` does not exist, is an empty folder, or is a transferkit output (:func:`output_kind`),
    and is neither one of ``sources`` (the run/bundle directories, data folders and files the job reads: names
    that are no local path are ignored), nor inside one, nor holding one (paths compared resolved). A job that
    writes into ``out`` in place rather than replacing it whole (curve, tune, evaluate) gives its ``kind``:
    a transferkit output of another kind is then refused too, since the two would mix. A bare bundle
    directory is replaced only by a job that writes a bundle there (``bundle=True``: merge), not by a run
    directory (``runs/x/bundle`` is another run's model). Called before anything is written; ``--overwrite``
    does not loosen it.
    """
    path = check_output_name(out, option)
    _check_not_an_input(path, sources, option, "this job's output")
    if path.is_symlink() and not path.exists():
        return path  # a dangling link: replaced like a missing folder, nothing behind it
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option}={out} is an existing file, not a folder: transferkit writes {option} as "
                              f"a directory and would replace the file; choose another {option}=… (nothing was "
                              "written)")
    if not path.exists() or not any(path.iterdir()):
        return path
    found = output_kind(path)
    if found is None:
        raise OutputPathError(f"{option}={out} is a folder that is not a transferkit output (it holds "
                              f"{_listing(path)}); transferkit replaces {option} as a whole, so it refuses to write "
                              f"there, even with overwrite=True: choose a new or empty folder, e.g. {option}="
                              f"{path / 'NAME'} (nothing was written)")
    if found == "bundle" and not bundle:
        raise OutputPathError(f"{option}={out} is a transferkit bundle (a model, perhaps another run's); this job "
                              f"writes a run directory and would replace it: choose another {option}=… (nothing was "
                              "written)")
    if kind is not None and found != kind:
        raise OutputPathError(f"{option}={out} holds a transferkit {found} output; {kind} writes into {option} "
                              f"and would mix its files with it: choose another {option}=… (nothing was written)")
    return path


def check_output_file(output: Any, inputs: Iterable[Any] = (), overwrite: bool = False,
                      previous: Any = None, option: str = "output") -> Path:
    """Refuse (:class:`OutputPathError`) to write the file ``output`` unless it is safe; return it.

    Never onto or into one of ``inputs`` (files and folders the job reads, compared resolved), never onto a
    folder; an existing file only when ``previous(path)`` says it is this job's own earlier output, or with
    ``overwrite`` — but never a file of a transferkit output directory (a run's ``metrics.json``, say) that is
    not such an earlier output, ``overwrite`` or not.
    """
    path = check_output_name(output, option)
    _check_not_an_input(path, inputs, option, "the output")
    if path.is_dir():
        raise OutputPathError(f"{option}={output} is a folder; give a file name in it, e.g. {option}="
                              f"{path / 'predictions.csv'}")
    earlier = path.exists() and previous is not None and previous(path)
    if path.exists() and not earlier and output_kind(path.parent) is not None:
        # a run's own files (metrics.json, config.yaml, report.md, …) are never replaced, overwrite or not
        raise OutputPathError(f"{option}={output} is a file of the transferkit {output_kind(path.parent)} output "
                              f"{path.parent}; writing there would replace it: choose another {option}=… (nothing "
                              "was written)")
    if path.exists() and not overwrite and not earlier:
        raise OutputPathError(f"{option}={output} exists and is not an earlier output of this command; pass "
                              f"overwrite=True to replace it, or choose another {option}=… (nothing was written)")
    return path


@contextlib.contextmanager
def staged_output(out: str | Path, kind: str) -> Iterator[Path]:
    """:func:`transferkit.atomic.staged_dir` for a job's output directory, marked as a ``kind`` output."""
    with atomic.staged_dir(Path(out)) as tmp:
        write_marker(tmp, kind)
        yield tmp


def open_output_dir(out: str | Path, kind: str) -> Path:
    """Create (or keep) the directory ``out`` of a job that writes into it in place, marked as ``kind``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:
        write_marker(out, kind)
    return out


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
        raise ValueError(f"resume=True: the options differ from the interrupted run's ({detail}); resume with the "
                         "same options ('transferkit resume DIR' or tk.resume(DIR) read them from its config.yaml) "
                         "or start afresh with overwrite=True")


@contextlib.contextmanager
def run_session(out: str | Path, resume: bool = False, overwrite: bool = False,
                config: dict[str, Any] | None = None, sources: Iterable[Any] = ()) -> Iterator[RunSession]:
    """Open ``out`` for a training run (see the module docstring); on success the results replace ``out``.

    ``config`` (the job's options) is compared with the interrupted run's ``config.yaml`` when resuming; its
    ``command`` is the kind in the run's marker. ``sources`` (what the job reads) must not be ``out``, inside
    it or hold it (:func:`check_output_dir`, checked before anything is written).
    """
    if resume and overwrite:
        raise ConfigError("overwrite", "False with resume (resume continues an interrupted run, overwrite discards "
                          "it: choose one)", overwrite)
    out = check_output_dir(out, sources)
    kind = str((config or {}).get("command") or "run")
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
    last_host = _lock_host(lock_path(out)) if resume else None
    lock = _try_lock(lock_path(out))
    if lock is None:
        if not overwrite:
            raise RunLockedError(f"{out} is being written by {_holder(lock_path(out))}; wait for it to finish, write "
                                 f"to another out=…, or pass overwrite=True to run anyway (this run then stages "
                                 f"separately and replaces {out} when it finishes)")
        with staged_output(out, kind) as staging:  # private staging, replaces out at the end; removed on failure
            yield RunSession(out, staging)
        return
    try:
        session = _open_partial(out, partial, resume, overwrite, config, kind, last_host)
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
                  config: dict[str, Any] | None, kind: str = "run", last_host: str | None = None) -> RunSession:
    if partial.exists():
        ckpt, skipped = _good_checkpoint(partial)
        if resume:
            if ckpt is None:
                reasons = f" ({'; '.join(skipped)})" if skipped else ""
                raise ValueError(f"resume=True, out={out}: the interrupted run in {partial} has no usable "
                                 f"checkpoint{reasons}; start afresh with overwrite=True")
            _check_same_config(partial, config)
            warn_if_untrusted(partial, ckpt, last_host)
            if read_marker(partial) is None:  # a run interrupted before the marker existed
                write_marker(partial, kind)
            return RunSession(out, partial, ckpt, skipped=skipped)
        if ckpt is not None and not overwrite:
            raise ValueError(f"{out} has an interrupted run (latest checkpoint {ckpt.name} in {partial}); continue "
                             f"it with resume=True (or 'transferkit resume {out}'), or discard it with overwrite=True")
        shutil.rmtree(partial)
    elif resume:
        what = ("is a finished run: nothing to resume" if (out / "metrics.json").is_file()
                else f"has no interrupted run to resume (looked for {partial})")
        raise ValueError(f"resume=True, out={out}: {what}")
    partial.mkdir(parents=True)
    write_marker(partial, kind)
    return RunSession(out, partial)


def untrusted_reasons(run: str | Path, checkpoint: str | Path | None = None, host: str | None = None) -> list[str]:
    """Why resuming the run directory ``run`` (and its ``checkpoint``) may run someone else's code: owned by
    another user, or created on another machine (the host in its marker, else ``host``: the lock's last holder)."""
    run = Path(run)
    reasons = []
    if hasattr(os, "getuid"):
        for p in (run, *([Path(checkpoint)] if checkpoint is not None else [])):
            with contextlib.suppress(OSError):
                if p.stat().st_uid != os.getuid():
                    reasons.append(f"{p} is owned by another user (uid {p.stat().st_uid})")
    host = (read_marker(run) or {}).get("host") or host
    if host and host != socket.gethostname():
        reasons.append(f"it was created on another machine ({host}, this is {socket.gethostname()})")
    return reasons


def warn_if_untrusted(run: str | Path, checkpoint: str | Path | None = None, host: str | None = None) -> None:
    """Warn (:class:`UntrustedRunWarning`) before resuming a run directory that may not be the user's own."""
    reasons = untrusted_reasons(run, checkpoint, host)
    if reasons:
        warnings.warn(f"resuming {run}: {'; '.join(reasons)}. Resume checkpoints are pickles that can run "
                      "arbitrary code when loaded: resume only runs you or someone you trust wrote (share "
                      "bundles, not checkpoints)", UntrustedRunWarning, stacklevel=2)


def _lock_host(lock: Path) -> str | None:
    """The host of the lock's last holder (for runs interrupted before the marker existed)."""
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return None
    return info.get("host") if isinstance(info, dict) else None


def recorded_config(out: str | Path) -> dict[str, Any]:
    """The options of the interrupted run at ``out`` (its ``config.yaml``), for ``transferkit resume``."""
    out = Path(out)
    path = partial_dir(out) / "config.yaml"
    if not path.is_file():
        what = "is a finished run: nothing to resume" if (out / "metrics.json").is_file() else \
            f"has no interrupted run to resume (no {path})"
        raise ValueError(f"resume {out}: {what}")
    return yaml.safe_load(path.read_text()) or {}


def work_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.work")


class FinishedWork:
    """The finished pieces of a job whose output directory is written whole at its end (``transfer --cv``'s folds,
    ``select --verify``'s fine-tuning runs), kept as they finish so that an error or Ctrl-C later loses none of them.

    They live in ``.<out>.work/`` beside ``out``: ``config.yaml`` (the job's configuration, written before any
    work starts), ``settings.json`` (what the pieces depend on) and one ``<key>.json`` record — or ``<key>/``
    directory — per finished piece, each written atomically. Rerunning the same job with the same settings reuses
    them; other settings discard them (``stale`` says so, for the caller to print). :meth:`close` removes the
    directory once the job's output has landed.
    """

    def __init__(self, out: str | Path, kind: str, settings: dict[str, Any], config: dict[str, Any]) -> None:
        self.out = Path(out)
        self.path = work_dir(self.out)
        self.kind = kind
        text = json.dumps(settings, sort_keys=True, default=str)
        saved = self.path / "settings.json"
        self.stale = False
        if self.path.exists():
            same = saved.is_file() and saved.read_text() == text
            if not same:
                self.stale = True
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_text(saved, text)
        atomic.write_text(self.path / "config.yaml", yaml.safe_dump(json.loads(json.dumps(config, default=str)),
                                                                     sort_keys=False))

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of finished piece ``key``, or ``None``."""
        f = self.path / f"{key}.json"
        try:
            return json.loads(f.read_text()) if f.is_file() else None
        except (OSError, ValueError):
            return None  # a damaged record is redone

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic.write_text(self.path / f"{key}.json", json.dumps(record, default=str))

    def reused(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.json") if p.name != "settings.json")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# the trials a search leaves in its run directory (``transferkit auto``'s probes, rungs and refit)

def drop_checkpoints(run_dir: Path) -> None:
    """Remove a finished trial's Lightning checkpoints (resume state, hundreds of MB for a large backbone over a
    search): auto never resumes a trial, and its bundle, metrics and report stay."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def keep_bundle(run_dir: Path, out: Path) -> None:
    """Copy ``run_dir``'s bundle to ``<out>/bundle``, replacing it atomically: an interrupted run keeps the best."""
    with atomic.staged_dir(out / "bundle") as tmp:
        shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)
