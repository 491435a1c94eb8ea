"""Decoding one image file without trusting it: the size checked before decoding, every failure a :class:`BadImage`
naming the file. Dataset loaders (:mod:`transferkit.data.images`, the streamed folders of
:mod:`transferkit.data.lazy` and :mod:`transferkit.data.prepared`) and inference (:mod:`transferkit.inference`:
``predict``, ``serve``) all decode through :func:`decode_image`, so an image reads the same everywhere."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

_BUFFER_NAME = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: larger images are refused as possible decompression bombs


class BadImage(ValueError):
    """An input that is not a decodable image of acceptable size; the message says why."""


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``data`` to ``uint8`` (H, W) or (H, W, 3) without trusting it: size checked before decoding
    (``max_pixels=None``: only PIL's own decompression-bomb limit)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadImage(f"{name}: {w}×{h} = {w * h:,} pixels is more than the limit of {max_pixels:,} "
                               "(a decompression bomb?)")
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB") if im.mode not in ("I", "I;16", "F", "1") else im.convert("L")
            return np.array(im, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"{name}: refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why = _BUFFER_NAME.sub("", str(exc))  # PIL names the in-memory buffer ("<_io.BytesIO object at 0x…>")
        raise BadImage(f"{name}: not a readable image ({exc.__class__.__name__}: {why})") from None


def load_image_file(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode one image file to ``uint8`` (H, W) or (H, W, 3); raises :class:`BadImage` (a ``ValueError``) naming
    the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImage(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    return decode_image(data, str(path), max_pixels)
