"""Where data lives on disk, and a checksummed, atomic download for users who are online.

Look-up order for every dataset: ``$TRANSFERKIT_DATA/<name>/`` (default ``~/.cache/transferkit``), then
any system location the dataset names (Debian's ``/usr/share/datasets/...``), then a download from the
official mirrors. A download goes to a temporary file in the destination folder, is verified against its
checksum and only then renamed into place, so an interrupted or corrupted download never leaves a file that
looks complete. ``TRANSFERKIT_OFFLINE=1`` forbids downloads altogether (the test suite sets it).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


def data_root() -> Path:
    """The user's data folder: ``$TRANSFERKIT_DATA`` or ``~/.cache/transferkit``."""
    return Path(os.environ.get("TRANSFERKIT_DATA", Path.home() / ".cache" / "transferkit")).expanduser()


def offline() -> bool:
    """True when downloads are forbidden (``TRANSFERKIT_OFFLINE=1``)."""
    return os.environ.get("TRANSFERKIT_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def file_digest(path: Path, algorithm: str, decompress: bool = False) -> str:
    """Hex digest of a file's bytes (of its gzip payload when ``decompress``)."""
    h = hashlib.new(algorithm)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, checksum: str) -> bool:
    """Check ``path`` against ``"<algorithm>:<hex>"``; ``sha256-gunzip:`` hashes the gzip payload.

    Hashing the decompressed payload lets one checksum accept both the upstream ``.gz`` files and
    re-compressed copies of the same bytes (Debian repacks Fashion-MNIST).
    """
    algorithm, _, expected = checksum.partition(":")
    decompress = algorithm.endswith("-gunzip")
    algorithm = algorithm.removesuffix("-gunzip")
    return file_digest(path, algorithm, decompress) == expected.lower()


def download(urls: Sequence[str], dest: Path, checksum: str, timeout: float = 60.0) -> Path:
    """Download the first working URL of ``urls`` to ``dest``, verified and atomically renamed.

    Raises
    ------
    DatasetNotFoundError
        Offline mode, or every mirror failed or served bytes with the wrong checksum.
    """
    if offline():
        raise DatasetNotFoundError(f"{dest.name}: downloads are disabled (TRANSFERKIT_OFFLINE is set)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda r=resp: r.read(1 << 20), b""):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if not verify(tmp, checksum):
                errors.append(f"{url}: checksum mismatch (expected {checksum})")
                continue
            os.replace(tmp, dest)
            return dest
        except OSError as exc:  # URLError is an OSError
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DatasetNotFoundError(f"could not download {dest.name}: " + "; ".join(errors))


def find_or_download(
    name: str,
    files: dict[str, str],
    mirrors: Sequence[str],
    system_dirs: Sequence[str | Path] = (),
    how_to_get: str = "",
) -> dict[str, Path]:
    """Locate every file of ``files`` (filename → checksum) for dataset ``name``, downloading if needed.

    All files are taken from the first folder that holds all of them; otherwise they are downloaded into
    ``data_root()/name``. The error when that is impossible lists the folders searched and ``how_to_get``.
    """
    local = data_root() / name
    candidates = [local, *map(Path, system_dirs)]
    for folder in candidates:
        if all((folder / f).is_file() for f in files):
            return {f: folder / f for f in files}
    try:
        return {
            f: (local / f if (local / f).is_file() else download([m + f for m in mirrors], local / f, c))
            for f, c in files.items()
        }
    except DatasetNotFoundError as exc:
        searched = ", ".join(str(c) for c in candidates)
        raise DatasetNotFoundError(
            f"dataset '{name}' is not on this machine (searched {searched}) and could not be downloaded "
            f"({exc}).\nTo get it: {how_to_get or f'put the files {sorted(files)} into {local}'}"
        ) from None
