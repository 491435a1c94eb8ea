"""The prepared cache: a streamed image folder decoded and resized once, then read back batch by batch.

:func:`prepared_images` turns :class:`~transferkit.data.lazy.LazyImages` into :class:`DiskImages`, a stand-in for the
``uint8`` tensor ``(N, C, H, W)`` that :class:`~transferkit.data.prepare.TensorBatches` serves batches from. The
first use of a folder at a given preprocessing (channels, size, resize mode, training border) decodes and resizes
**every image of the folder** in DataLoader worker processes into one flat file of fixed-size ``uint8`` rows
(a progress bar on a terminal); every later use — another split, another seed, another run — reads rows straight
from it with ``pread``: no decoding, memory bounded by the batches in flight (the operating system's page cache,
not the process, holds the file).

One file per entry, ``<key>.tkdata`` in :func:`~transferkit.cachedir.prepared_root`: a 4 KiB JSON header (format,
shape, what was prepared) then the rows. The key hashes the format version, the folder's content key (paths, sizes,
modification times) and the preprocessing, so a changed file or another preprocessing is another entry and a cache
written by another format version is never read (it is rebuilt, and the log says so). The build writes a temporary
file renamed into place only when complete: a full disk (checked before starting — the error says how much space is
needed and where — and caught while writing) or Ctrl-C leaves no half-built entry. Entries count against the cache
cap (``$TRANSFERKIT_CACHE_MAX``, least recently used first, :mod:`transferkit.cachedir`) like feature entries, and
``transferkit cache list|clear`` shows and removes them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit import cachedir
from transferkit.data.decode import load_image_file
from transferkit.data.indexing import positions
from transferkit.data.lazy import INDEX_SUFFIX, LazyImages, in_workers
from transferkit.data.resize import convert_channels, resize_images, spec_resize, to_nchw

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".tkdata"
HEADER = 4096
_MAGIC = b"TKDATA\n"
_MARGIN = 64 * 2**20  # left free on the disk after a build


class DiskImages:
    """``uint8`` images ``(N, C, H, W)`` in a prepared-cache file, read on indexing: ``x[idx]`` (a slice, or an index
    array / list) is a tensor of those rows. ``rows`` map positions to rows of the file (a split is a subset of the
    whole folder's rows). ``workers``: DataLoader worker processes that read and augment its batches."""

    ndim = 4
    dtype = torch.uint8

    def __init__(self, path: Path, rows: np.ndarray, item_shape: tuple[int, int, int], key: str, workers: int) -> None:
        self.path, self.rows, self.item_shape = Path(path), np.asarray(rows, dtype=np.int64), tuple(item_shape)
        self.key, self.workers = key, int(workers)
        self._row_bytes = int(np.prod(self.item_shape))
        self._fd: int | None = None
        self._pid = -1

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.item_shape))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def content_key(self) -> str:
        """What these images are (file entry and rows): the feature cache's data signature."""
        return hashlib.sha256(self.key.encode() + self.rows.tobytes()).hexdigest()[:16]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a worker process opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def take(self, idx: Any) -> DiskImages:
        """The images at ``idx`` as another :class:`DiskImages` (nothing read)."""
        return DiskImages(self.path, self.rows[positions(idx, len(self.rows), "images")], self.item_shape, self.key,
                          self.workers)

    def __getitem__(self, idx: Any) -> torch.Tensor:
        single = isinstance(idx, (int, np.integer))
        wanted = self.rows[positions([int(idx)] if single else idx, len(self.rows), "images")]
        out = np.empty((len(wanted), *self.item_shape), dtype=np.uint8)
        flat = out.reshape(len(wanted), -1)
        fd = self._handle()
        order = np.argsort(wanted, kind="stable")
        start = 0
        while start < len(order):  # one read per run of consecutive rows
            stop = start + 1
            while stop < len(order) and wanted[order[stop]] == wanted[order[stop - 1]] + 1 and \
                    order[stop] == order[stop - 1] + 1:
                stop += 1
            first = int(wanted[order[start]])
            target = flat[order[start]:order[start] + (stop - start)]
            got = os.preadv(fd, [memoryview(target).cast("B")], HEADER + first * self._row_bytes)
            if got != target.nbytes:
                raise OSError(f"{self.path}: prepared cache entry is shorter than its header says (truncated?); "
                              "remove it with 'transferkit cache clear'")
            start = stop
        x = torch.from_numpy(out)
        return x[0] if single else x


def _one(image: np.ndarray, spec: Any, border: bool) -> torch.Tensor:
    return resize_images(convert_channels(to_nchw(image).unsqueeze(0), spec.channels), spec, border)[0]


class _Resized:
    """Chunks of a folder's files decoded and resized (run in DataLoader worker processes)."""

    def __init__(self, paths: tuple[str, ...], spec: Any, border: bool, chunk: int = 32) -> None:
        self.paths, self.spec, self.border, self.chunk = paths, spec, border, chunk

    def __len__(self) -> int:
        return -(-len(self.paths) // self.chunk)

    def __getitem__(self, i: int) -> np.ndarray:
        part = self.paths[i * self.chunk:(i + 1) * self.chunk]
        return torch.stack([_one(load_image_file(Path(p)), self.spec, self.border) for p in part]).numpy()


def _preprocessing(spec: Any, border: bool) -> dict[str, Any]:
    resize, crop_pct, interpolation = spec_resize(spec)
    return {"channels": spec.channels, "size": list(spec.size), "resize": resize, "crop_pct": crop_pct,
            "interpolation": interpolation, "border": border}


def read_header(path: Path) -> dict[str, Any] | None:
    """The JSON header of a prepared-cache entry, ``None`` when it is not one (or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER)
        if not head.startswith(_MAGIC):
            return None
        return json.loads(head[len(_MAGIC):].rstrip(b"\0 ").decode())
    except (OSError, ValueError):
        return None


def prepared_images(images: LazyImages, spec: Any, border: bool, name: str) -> DiskImages:
    """``images`` at ``spec``'s size (with the training ``border`` when asked) from the prepared cache, building the
    folder's entry first when there is none (see the module's description)."""
    index = images.index
    prep = _preprocessing(spec, border)
    key = hashlib.sha256(json.dumps([FORMAT, index.key, prep]).encode()).hexdigest()[:40]
    root = cachedir.prepared_root()
    path = root / f"{key}{SUFFIX}"
    head = read_header(path)
    expected = None if head is None else HEADER + int(np.prod(head["shape"]))
    if head is not None and head.get("format") == FORMAT and path.stat().st_size == expected:
        cachedir.touch(path)
        log.info("prepared cache hit: %s (%d of the folder's %d images) from %s", name, len(images), len(index.paths),
                 path)
    else:
        if head is not None:
            log.warning("prepared cache entry %s is incomplete or from another format; rebuilding it", path)
        head = _build(path, index.paths, spec, border, name, images.workers, {"content": index.key, **prep})
    return DiskImages(path, images.rows, tuple(head["shape"][1:]), key, images.workers)


def _older_formats(root: Path, content: str) -> bool:
    for e in cachedir.entries(root, SUFFIX):
        h = read_header(e.path)
        if h is not None and h.get("content") == content and h.get("format") != FORMAT:
            return True
    return False


def _build(path: Path, paths: tuple[str, ...], spec: Any, border: bool, name: str, workers: int,
           meta: dict[str, Any]) -> dict[str, Any]:
    root = path.parent
    root.mkdir(parents=True, exist_ok=True)
    if _older_formats(root, meta["content"]):
        log.warning("%s was prepared by another transferkit version (format ≠ %d): preparing it again", name, FORMAT)
    item = tuple(_one(_first_image(paths), spec, border).shape)
    needed = HEADER + len(paths) * int(np.prod(item))
    _check_space(root, needed, name)
    started = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=root)
    head = {"format": FORMAT, "shape": [len(paths), *item], "name": name, **meta}
    try:
        with os.fdopen(fd, "wb") as fh:
            blob = _MAGIC + json.dumps(head).encode()
            if len(blob) > HEADER:
                raise ValueError(f"prepared cache header too long ({len(blob)} bytes)")
            fh.write(blob.ljust(HEADER, b"\0"))
            for chunk in in_workers(_Resized(paths, spec, border), workers, f"preparing {name}", len(paths)):
                fh.write(np.ascontiguousarray(chunk).tobytes())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, _space_message(root, needed, name)) from None
        raise
    finally:  # Ctrl-C, a full disk or a failed decode: no half-built entry is left
        Path(tmp).unlink(missing_ok=True)
    took = time.perf_counter() - started
    log.info("prepared %s: %d images in %.1f s (%.0f images/s), %s at %s", name, len(paths), took,
                len(paths) / max(took, 1e-9), cachedir.format_size(needed), path)
    gone = cachedir.evict(root, SUFFIX, cachedir.max_bytes(), keep=path)
    if gone:
        log.info("prepared cache over its cap: removed %d least recently used entries", len(gone))
    return head


def _first_image(paths: tuple[str, ...]) -> np.ndarray:
    return load_image_file(Path(paths[0]))


def _space_message(root: Path, needed: int, name: str) -> str:
    free = shutil.disk_usage(root).free
    return (f"preparing {name} needs {cachedir.format_size(needed)} in {root} but {cachedir.format_size(free)} is "
            "free: free some space ('transferkit cache clear'), or set TRANSFERKIT_CACHE to a folder on a larger "
            "disk; nothing half-built was kept")


def _check_space(root: Path, needed: int, name: str) -> None:
    if shutil.disk_usage(root).free < needed + _MARGIN:
        raise OSError(errno.ENOSPC, _space_message(root, needed, name))


def prepared_entries(root: Path | None = None) -> list[dict[str, Any]]:
    """Every prepared-cache entry, least recently used first: ``path``, ``bytes``, ``last_used`` and its header's
    ``name``, ``shape`` and ``format`` (empty when unreadable)."""
    found = cachedir.entries(root if root is not None else cachedir.prepared_root(), SUFFIX)
    out = []
    for e in found:
        head = read_header(e.path) or {}
        out.append({"path": str(e.path), "bytes": e.size, "last_used": e.last_used, "name": head.get("name", ""),
                    "shape": head.get("shape", []), "format": head.get("format")})
    return out


def clear_prepared(root: Path | None = None, older_than_s: float | None = None) -> list[cachedir.Entry]:
    """Remove the prepared-cache entries (or those not used for ``older_than_s`` seconds) and the folder checks
    (:mod:`transferkit.data.lazy`) beside them; the entries removed."""
    root = root if root is not None else cachedir.prepared_root()
    return cachedir.clear(root, SUFFIX, older_than_s) + cachedir.clear(root, INDEX_SUFFIX, older_than_s)
