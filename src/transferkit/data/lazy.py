"""Image folders too large to hold decoded in memory: listed and checked once, decoded only when used.

A folder whose decoded pixels would exceed ``$TRANSFERKIT_STREAM_ABOVE`` (default ``512M``; ``0`` streams every
folder, ``none`` none) is loaded as :class:`LazyImages` instead of arrays: its files' paths, sizes and shapes.
Nothing else changes for the code that splits, samples and relabels an :class:`~transferkit.data.base.ImageSet`
(a subset of lazy images is another index into the same files). When a model needs the images
(:func:`transferkit.data.prepare.to_batches`), the whole folder is decoded and resized **once** into the prepared
on-disk cache (:mod:`transferkit.data.prepared`) that later runs read back batch by batch in DataLoader worker
processes — memory then stays flat whatever the folder's size.

The first load **checks** every file by decoding it (JPEGs in draft mode, ⅛ scale: the whole file is still read, so
a truncated file is found) in worker processes: unreadable files are skipped by name as for in-memory folders
(``--strict`` fails), and the images' sizes are recorded. The result is kept in the cache folder keyed by the files'
paths, sizes and modification times, so a second load of an unchanged folder lists it without decoding anything.

Why not Hugging Face ``datasets`` (Arrow) for this: the prepared images are fixed-shape ``uint8`` rows, which a flat
file read with ``pread`` serves with no dependency and no per-row decoding, and an Arrow table of a 20,000-photo
folder would be written once more than needed (encoded bytes, then resized pixels). See RESULTS.md, issue 29.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit import atomic, cachedir
from transferkit.data.decode import BadImage, decode_image, load_image_file
from transferkit.errors import ConfigError

log = logging.getLogger(__name__)

ENV_STREAM = "TRANSFERKIT_STREAM_ABOVE"
DEFAULT_STREAM_ABOVE = "512M"
ENV_WORKERS = "TRANSFERKIT_WORKERS"
INDEX_FORMAT = 1
INDEX_SUFFIX = ".index.json"
_GREY_MODES = ("L", "I", "I;16", "F", "1")  # decoded to one channel (transferkit.data.decode.decode_image)


def stream_above() -> int | None:
    """Decoded bytes above which a folder is streamed: ``$TRANSFERKIT_STREAM_ABOVE`` (default 512M); ``None``: never."""
    return cachedir.parse_size(os.environ.get(ENV_STREAM) or DEFAULT_STREAM_ABOVE, ENV_STREAM)


def default_workers() -> int:
    """Worker processes that decode, resize and augment streamed data: ``$TRANSFERKIT_WORKERS``, else
    ``min(4, CPUs)`` (0 = in the training process)."""
    text = os.environ.get(ENV_WORKERS)
    if text is None or not text.strip():
        return min(4, os.cpu_count() or 1)
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise ConfigError(ENV_WORKERS, "a whole number of worker processes ≥ 0 (0 = none)", text)
    return n


@dataclass(frozen=True)
class FolderIndex:
    """The checked files of one image folder (or list): paths, ``size|mtime`` signatures and ``(h, w, channels)``."""

    paths: tuple[str, ...]
    signatures: tuple[str, ...]
    shapes: np.ndarray  # (N, 3) int64: height, width, channels
    key: str  # content key of the whole folder (paths, sizes, modification times)

    def decoded_bytes(self, rows: np.ndarray | None = None) -> int:
        s = self.shapes if rows is None else self.shapes[rows]
        return int((s[:, 0] * s[:, 1] * s[:, 2]).sum())


class LazyImages(Sequence):
    """Images of a :class:`FolderIndex`, decoded when read: ``rows`` index its files (a subset shares the index)."""

    def __init__(self, index: FolderIndex, rows: np.ndarray | None = None, workers: int | None = None) -> None:
        self.index = index
        self.rows = np.arange(len(index.paths)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.workers = default_workers() if workers is None else int(workers)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # one image decoded, or a lazy subset
        if isinstance(i, (int, np.integer)):
            return load_image_file(Path(self.index.paths[int(self.rows[i])]))
        return self.take(np.arange(len(self.rows))[i])

    def take(self, idx: np.ndarray | Sequence[int]) -> LazyImages:
        return LazyImages(self.index, self.rows[np.asarray(idx, dtype=np.int64)], self.workers)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """``(h, w)`` of each image, from the index (nothing decoded)."""
        return [(int(h), int(w)) for h, w in self.index.shapes[self.rows, :2]]

    @property
    def channels(self) -> int:
        """1 when every image is grey, else 3 (colour images are served as RGB)."""
        return 1 if len(self.rows) and (self.index.shapes[self.rows, 2] == 1).all() else 3

    def content(self) -> bytes:
        """What identifies these images: the folder's key and the rows taken (for fingerprints)."""
        return self.index.key.encode() + self.rows.tobytes()


def check_image(path: str, max_pixels: int | None = None) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an image file, decoding it whole (JPEG in draft mode, ⅛ scale) to be sure it
    reads; :class:`~transferkit.data.decode.BadImage` naming the file otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            if im.format == "JPEG":
                if max_pixels is not None and w * h > max_pixels:
                    raise BadImage(f"{path}: {w}×{h} = {w * h:,} pixels is more than the limit of {max_pixels:,}")
                im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))
                im.load()
                return h, w, 1 if mode in _GREY_MODES else 3
    except BadImage:
        raise
    except Exception:  # not a JPEG we can draft, or not an image: the full decode below says why
        pass
    img = decode_image(Path(path).read_bytes() if Path(path).is_file() else b"", path, max_pixels)
    return int(img.shape[0]), int(img.shape[1]), 1 if img.ndim == 2 else int(img.shape[2])


class _Checks:
    """A dataset of chunks of files: each item checks its chunk (run in DataLoader worker processes)."""

    def __init__(self, paths: Sequence[str], chunk: int = 64) -> None:
        self.paths, self.chunk = paths, chunk

    def __len__(self) -> int:
        return -(-len(self.paths) // self.chunk)

    def __getitem__(self, i: int) -> list[tuple[int, int, int] | str]:
        out: list[tuple[int, int, int] | str] = []
        for p in self.paths[i * self.chunk:(i + 1) * self.chunk]:
            try:
                out.append(check_image(p))
            except (ValueError, OSError) as exc:
                out.append(str(exc))
        return out


def _as_is(chunk):
    return chunk


def in_workers(items, workers: int, what: str, total: int):
    """Iterate ``items`` (a map-style dataset of chunks) in ``workers`` processes, in order, with a progress bar on
    standard error when it is a terminal (``total`` files: ``what``)."""
    from torch.utils.data import DataLoader

    from transferkit import terminal

    # chunks come back as they are (NumPy arrays, lists) through the workers' pipes: the default conversion to tensors
    # would pass each through shared memory, which the measured peak showed growing by ~1.5 GB per process on 5,000
    # images (benchmarks/RESULTS.md, issue 29)
    loader = DataLoader(items, batch_size=None, num_workers=workers if len(items) > 1 else 0,
                        prefetch_factor=4 if workers and len(items) > 1 else None, collate_fn=_as_is)
    console = terminal.resolve(stderr=True)
    with terminal.progress_bar(console, sys.stderr.isatty()) as bar:
        task = bar.add_task(what, total=total)
        for chunk in loader:
            yield chunk
            bar.advance(task, len(chunk))


def _signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}|{st.st_mtime_ns}"


def index_files(files: Sequence[Path], name: str, workers: int | None = None,
                cache: Path | None = None, saved_only: bool = False) -> tuple[FolderIndex, list[str]] | None:
    """Check ``files`` (decoding each once, in worker processes) into a :class:`FolderIndex` of the readable ones, and
    the messages of the unreadable ones. Kept in the cache folder by content, so an unchanged folder is not checked
    again (a cache that cannot be written is only logged). ``saved_only``: the kept check or ``None``, nothing
    decoded."""
    paths = [str(f) for f in files]
    sigs = [_signature(Path(p)) for p in paths]
    key = hashlib.sha256(json.dumps([INDEX_FORMAT, paths, sigs]).encode()).hexdigest()[:40]
    root = cache if cache is not None else cachedir.prepared_root()
    saved = root / f"{key}{INDEX_SUFFIX}"
    try:
        got = json.loads(saved.read_text())
        ok, bad = got["ok"], got["bad"]
        cachedir.touch(saved)
    except (OSError, ValueError, KeyError, TypeError):
        if saved_only:
            return None
        results: list[tuple[int, int, int] | str] = []
        workers = default_workers() if workers is None else workers
        for chunk in in_workers(_Checks(paths), workers, f"checking {name}", len(paths)):
            results.extend(chunk)
        ok = [[i, *r] for i, r in enumerate(results) if not isinstance(r, str)]
        bad = [r for r in results if isinstance(r, str)]
        try:
            atomic.write_text(saved, json.dumps({"format": INDEX_FORMAT, "name": name, "ok": ok, "bad": bad}))
        except OSError as err:
            log.warning("could not keep the check of %s in %s: %s", name, root, err)
    rows = [r[0] for r in ok]
    shapes = np.array([r[1:] for r in ok], dtype=np.int64).reshape(-1, 3)
    content = hashlib.sha256(json.dumps([INDEX_FORMAT, [paths[i] for i in rows], [sigs[i] for i in rows]]).encode())
    index = FolderIndex(tuple(paths[i] for i in rows), tuple(sigs[i] for i in rows), shapes, content.hexdigest()[:40])
    return index, bad


def header_bytes(files: Sequence[Path]) -> int:
    """Decoded size of ``files`` estimated from their headers alone (unreadable headers count as nothing)."""
    from PIL import Image

    total = 0
    for f in files:
        try:
            with Image.open(f) as im:
                total += im.size[0] * im.size[1] * (1 if im.mode in _GREY_MODES else 3)
        except Exception:
            continue
    return total
