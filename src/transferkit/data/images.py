"""Image dataset loaders: IDX (Fashion-MNIST, MNIST, KMNIST), USPS, scikit-learn digits, folders, npz.

Every loader returns an :class:`~transferkit.data.base.ImageSet` of ``uint8`` pixels.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import re
import struct
from pathlib import Path

import numpy as np

from transferkit.data.base import ImageSet
from transferkit.data.download import find_or_download
from transferkit.data.registry import register_dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
DIGIT_CLASSES = [str(i) for i in range(10)]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of MNIST-like datasets."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = bytearray(fh.read())  # writable, so tensors made from it are too
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {arr.size} values (truncated?)")
    return arr.reshape(shape)


def _idx_dataset(name, split, classes, files, mirrors, system_dirs=(), how_to_get="") -> ImageSet:
    prefix = "train" if split == "train" else "t10k"
    wanted = {f: c for f, c in files.items() if f.startswith(prefix)}
    paths = find_or_download(name, wanted, mirrors, system_dirs, how_to_get)
    images = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
    labels = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"])
    return ImageSet(images, labels.astype(np.int64), list(classes), f"{name}/{split}")


# Fashion-MNIST checksums are SHA-256 of the *decompressed* IDX bytes: identical for the upstream files and
# for Debian's re-compressed copies in dataset-fashion-mnist.
_FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "sha256-gunzip:c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "sha256-gunzip:bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "sha256-gunzip:5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "sha256-gunzip:0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@register_dataset("fashion_mnist", "Fashion-MNIST: 28x28 grayscale clothing, 10 classes, 60k train / 10k test")
def fashion_mnist(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    return _idx_dataset(
        "fashion_mnist", split, FASHION_CLASSES, _FASHION_FILES,
        mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        system_dirs=["/usr/share/datasets/fashion-mnist"],
        how_to_get="on Debian/Ubuntu run 'sudo apt-get install dataset-fashion-mnist' (or 'make setup'); "
        "elsewhere connect to the internet once, or copy the four *-ubyte.gz files from "
        "https://github.com/zalandoresearch/fashion-mnist into $TRANSFERKIT_DATA/fashion_mnist/",
    )


# MNIST and KMNIST: MD5s of the upstream .gz files as published by their authors.
@register_dataset("mnist", "MNIST: 28x28 grayscale handwritten digits, 10 classes, 60k / 10k (downloaded)")
def mnist(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    files = {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }
    return _idx_dataset(
        "mnist", split, DIGIT_CLASSES, files,
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        how_to_get="connect to the internet once, or copy the four MNIST *-ubyte.gz files into "
        "$TRANSFERKIT_DATA/mnist/",
    )


@register_dataset("kmnist", "Kuzushiji-MNIST: 28x28 cursive Japanese characters, 10 classes (downloaded)")
def kmnist(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    files = {
        "train-images-idx3-ubyte.gz": "md5:bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "md5:e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "md5:5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "md5:7320c461ea6c1c855c0b718fb2a4b134",
    }
    return _idx_dataset(
        "kmnist", split, KMNIST_CLASSES, files,
        mirrors=["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        how_to_get="connect to the internet once, or copy the four KMNIST *-ubyte.gz files into "
        "$TRANSFERKIT_DATA/kmnist/",
    )


@register_dataset("usps", "USPS: 16x16 grayscale handwritten digits, 10 classes, 7291 / 2007 (downloaded)")
def usps(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    fname = "usps.bz2" if split == "train" else "usps.t.bz2"
    checksum = "md5:ec16c51db3855ca6c91edd34d0e9b197" if split == "train" else "md5:8ea070ee2aca1ac39742fdd1ef5ed118"
    paths = find_or_download(
        "usps", {fname: checksum},
        mirrors=["https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"],
        how_to_get=f"connect to the internet once, or copy {fname} (LIBSVM format) into $TRANSFERKIT_DATA/usps/",
    )
    with bz2.open(paths[fname], "rt") as fh:
        rows = fh.read().split("\n")
    images, labels = [], []
    for row in filter(None, (r.strip() for r in rows)):
        label, *feats = row.split()
        values = np.zeros(256, np.float32)
        for f in feats:
            i, v = f.split(":")
            values[int(i) - 1] = float(v)
        images.append(((values + 1.0) * 127.5).clip(0, 255).astype(np.uint8).reshape(16, 16))
        labels.append(int(float(label)) - 1)
    return ImageSet(np.stack(images), np.array(labels), DIGIT_CLASSES, f"usps/{split}")


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits (1797 images; fixed 80/20 split)")
def digits(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    idx_train, idx_test = train_test_split(
        np.arange(len(images)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    idx = idx_train if split == "train" else idx_test
    return ImageSet(images[idx], bunch.target[idx], DIGIT_CLASSES, f"digits/{split}")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_splits(arg: str) -> tuple[str, ...]:
    """Splits of ``image_folder:PATH``: ``train``/``val``/``test`` subfolders if present, else ``train``."""
    root = Path(arg).expanduser()
    nested = tuple(s for s in ("train", "val", "test") if (root / s).is_dir())
    return nested if "train" in nested else ("train",)


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


def list_image_files(paths: list[Path]) -> list[Path]:
    """Expand folders (recursively) into their image files, in sorted order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


@register_dataset(
    "image_folder", "Class-per-folder images: PATH/<class>/*.png, or PATH/{train,test}/<class>/*",
    splits=("train", "val", "test"), takes_argument=True, splits_of=folder_splits,
)
def image_folder(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    root = Path(arg or "").expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image_folder:{arg}: no such folder")
    splits = folder_splits(str(root))
    if split not in splits:
        raise ValueError(
            f"image_folder:{arg} has no '{split}' split (found: {', '.join(splits)}); lay out "
            f"PATH/train/<class>/... and PATH/test/<class>/... to evaluate on a held-out folder"
        )
    base = root / split if (root / "train").is_dir() else root
    class_dirs = _class_folders(base)
    if not class_dirs:
        raise ValueError(f"image_folder:{arg}: no class subfolders in {base}")
    images, labels, paths, bad = [], [], [], []
    for label, cdir in enumerate(class_dirs):
        for f in sorted(cdir.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            try:
                images.append(load_image_file(f))
            except ValueError as exc:
                if strict:
                    raise
                bad.append(str(exc))
                continue
            labels.append(label)
            paths.append(str(f))
    if bad:
        log.warning("image_folder:%s: skipped %d unreadable file(s):\n  %s", arg, len(bad), "\n  ".join(bad))
    if not images:
        raise ValueError(f"image_folder:{arg}: no readable images under {base}")
    shapes = {im.shape for im in images}
    stacked = np.stack(images) if len(shapes) == 1 else images
    ds = ImageSet(stacked, np.array(labels), [c.name for c in class_dirs], f"image_folder:{arg}/{split}", paths)
    ds.skipped = bad  # type: ignore[attr-defined]
    return ds


def npz_splits(arg: str) -> tuple[str, ...]:
    """Splits of ``npz:PATH``: ``train`` (x/y or x_train/y_train), plus ``test`` when x_test/y_test exist."""
    path = Path(arg).expanduser()
    if not path.is_file():
        return ("train",)
    with np.load(path, allow_pickle=False) as z:
        return ("train", "test") if {"x_test", "y_test"} <= set(z.files) else ("train",)


@register_dataset(
    "npz", "NumPy archive with arrays x (N,H,W[,C] uint8) and y (N,); optional x_test/y_test, classes",
    takes_argument=True, splits_of=npz_splits,
)
def npz(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    path = Path(arg or "").expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"npz:{arg}: no such file")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        xk, yk = ("x", "y") if split == "train" else ("x_test", "y_test")
        if split == "train" and "x" not in keys and "x_train" in keys:
            xk, yk = "x_train", "y_train"
        if xk not in keys or yk not in keys:
            raise ValueError(f"npz:{arg}: split '{split}' needs arrays '{xk}' and '{yk}'; the file has {sorted(keys)}")
        x, y = z[xk], z[yk].astype(np.int64)
        classes = [str(c) for c in z["classes"]] if "classes" in keys else [str(i) for i in range(int(y.max()) + 1)]
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.max() <= 1.0:
            x = x * 255.0
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return ImageSet(x, y, classes, f"npz:{arg}/{split}")
