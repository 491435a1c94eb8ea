"""Atomic writes of files and directories: a crash or Ctrl-C never leaves a half-written artefact.

Everything is first written next to its destination under a hidden temporary name, flushed, and then
renamed into place (``os.replace`` is atomic on POSIX within one file system). Replacing a directory swaps
the old one aside first and deletes it only after the new one is in place — and only when the old one is an
empty folder or a transferkit output (:func:`transferkit.outputs.output_kind`), never anything else. Written
files and directories get the usual permissions (``0o666``/``0o777`` less the umask), not ``mkstemp``'s and
``mkdtemp``'s private ``0o600``/``0o700``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from transferkit.outputs import OutputPathError, output_kind


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_usual_mode(path: Path) -> None:
    """Give ``path`` the permissions a plainly created file (``0o666``) or directory (``0o777``) gets under the
    umask — for what ``mkstemp``/``mkdtemp`` or a library (safetensors writes ``0o600``) made private."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        set_usual_mode(Path(tmp))  # mkstemp makes 0600; a written artefact gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_dir(src: Path, dest: Path) -> None:
    """Move the finished directory ``src`` to ``dest``, replacing an existing ``dest`` only at the end.

    An existing ``dest`` that is a file, or a non-empty folder that is not a transferkit output, is never
    replaced: :class:`transferkit.outputs.OutputPathError`, leaving both ``src`` and ``dest`` as they are."""
    dest = Path(dest)
    old = None
    if dest.exists() and not (dest.is_dir() and (not any(dest.iterdir()) or output_kind(dest) is not None)):
        raise OutputPathError(f"{dest} is {'a folder that is not a transferkit output' if dest.is_dir() else 'a file'}"
                              f" and was not replaced; the new result is in {src}")
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)  # put the previous version back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``dest``; on success it replaces ``dest``, on any error (or
    Ctrl-C) it is deleted and ``dest`` is left exactly as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        set_usual_mode(tmp)  # mkdtemp makes 0700; the directory it becomes gets the usual permissions
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, dest)
