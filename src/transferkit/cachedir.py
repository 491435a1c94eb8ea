"""A cache folder with a size cap: entries listed, touched when used, evicted least recently used first.

transferkit's on-disk caches (the frozen-feature cache, :mod:`transferkit.backbones.cache`) keep one immutable file
per entry, written atomically. Left alone such a folder only grows; this module bounds it. An entry's
*last use* is its modification time: a hit touches it (``os.utime``; access times are unreliable, most disks are
mounted ``relatime`` or ``noatime``), so after a write :func:`evict` removes the least recently used entries until
the folder fits its cap, never the entry just written. The cap comes from ``$TRANSFERKIT_CACHE_MAX``
(:func:`max_bytes`: ``10G`` by default, ``500M``, ``2.5G``, ``none`` for no cap). Eviction is safe beside other
processes: a file another process is reading stays readable until it closes it (POSIX), a reader that finds an
entry gone computes it again, and removing a file already removed is not an error. Temporary files a crashed
writer left behind (``.<name>.*.tmp``) are removed once a day old.

The policy — size cap, LRU by last use — is the one pip's and Hugging Face's caches leave to the user; here it runs
by itself because a feature cache of a large dataset grows by hundreds of MB per backbone.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from transferkit.errors import ConfigError

ENV_MAX = "TRANSFERKIT_CACHE_MAX"
DEFAULT_MAX = "10G"
STALE_TMP_S = 24 * 3600  # a writer's temporary file older than this is a crash's leftover
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One cache file: its path, size in bytes and last use (seconds since the epoch)."""

    path: Path
    size: int
    last_used: float


def parse_size(text: str, name: str = ENV_MAX) -> int | None:
    """Bytes from ``10G``, ``500M``, ``2.5GB``, ``800KiB`` or a plain number of bytes; ``None`` for ``none`` (no cap).
    Anything else is a :class:`~transferkit.errors.ConfigError` naming ``name``."""
    if text.strip().lower() in ("none", "unlimited", "off"):
        return None
    m = _SIZE.match(text)
    if m is None:
        raise ConfigError(name, "a size such as 10G, 500M or 2.5GB, or 'none' for no cap", text)
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_size(n: int) -> str:
    """``n`` bytes for a person: ``812 bytes``, ``3.4 MiB``, ``10.0 GiB`` (the units :func:`parse_size` reads)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def feature_root() -> Path:
    """The feature cache folder: ``$TRANSFERKIT_CACHE`` or ``~/.cache/transferkit/features``."""
    default = Path.home() / ".cache" / "transferkit" / "features"
    return Path(os.environ.get("TRANSFERKIT_CACHE", default)).expanduser()


def prepared_root() -> Path:
    """The prepared-data cache folder (streamed image folders, :mod:`transferkit.data.prepared`): ``prepared/`` in the
    feature cache folder."""
    return feature_root() / "prepared"


def max_bytes() -> int | None:
    """The cache cap: ``$TRANSFERKIT_CACHE_MAX`` (default 10G); ``None`` = no cap."""
    return parse_size(os.environ.get(ENV_MAX) or DEFAULT_MAX)


def entries(root: Path, suffix: str) -> list[Entry]:
    """The entries of ``root`` (files ending in ``suffix``, not hidden), least recently used first."""
    out = []
    for p in root.glob(f"*{suffix}") if root.is_dir() else ():
        if p.name.startswith("."):
            continue
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        out.append(Entry(p, st.st_size, st.st_mtime))
    return sorted(out, key=lambda e: (e.last_used, e.path.name))


def touch(path: Path) -> None:
    """Mark ``path`` as used now (a read-only cache is left as it is)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evict(root: Path, suffix: str, cap: int | None, keep: Path | None = None) -> list[Entry]:
    """Remove the least recently used entries of ``root`` until their total is at most ``cap`` bytes (never
    ``keep``, the entry just written, even when it alone is larger), and a crashed writer's day-old temporary files;
    the entries removed."""
    _remove_stale_tmp(root)
    if cap is None:
        return []
    found = entries(root, suffix)
    total = sum(e.size for e in found)
    removed = []
    for e in found:
        if total <= cap:
            break
        if keep is not None and e.path == keep:
            continue
        try:
            e.path.unlink()
        except FileNotFoundError:  # another process evicted it first
            pass
        except OSError:
            continue
        total -= e.size
        removed.append(e)
    return removed


def clear(root: Path, suffix: str, older_than_s: float | None = None) -> list[Entry]:
    """Remove every entry of ``root`` (or those not used for ``older_than_s`` seconds) and stale temporary files;
    the entries removed."""
    _remove_stale_tmp(root, 0 if older_than_s is None else STALE_TMP_S)
    now = time.time()
    removed = []
    for e in entries(root, suffix):
        if older_than_s is not None and now - e.last_used < older_than_s:
            continue
        with contextlib.suppress(FileNotFoundError):
            e.path.unlink()
        removed.append(e)
    return removed


def _remove_stale_tmp(root: Path, age_s: float = STALE_TMP_S) -> None:
    now = time.time()
    for p in root.glob(".*.tmp") if root.is_dir() else ():
        try:
            if now - p.stat().st_mtime >= age_s:
                p.unlink()
        except OSError:
            pass
