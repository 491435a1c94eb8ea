"""Image dataset loaders: IDX (Fashion-MNIST, MNIST, KMNIST), USPS, scikit-learn digits, folders, npz.

Every loader returns an :class:`~transferkit.data.base.ImageSet` of ``uint8`` pixels.
"""

from __future__ import annotations

import bz2
import gzip
import itertools
import logging
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from transferkit import cachedir
from transferkit.data.base import ImageSet
from transferkit.data.decode import BadImage, load_image_file
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


def read_image_list(path: Path) -> Iterator[tuple[str, Path | None, str | None]]:
    """The images a CSV list names: ``(path as listed and resolved, file or None, error or None)`` per entry, in order.

    The ``path`` column (or the first column when no header cell is ``path``; a first row that already names an
    image is data, not a header) lists image files. A relative path is resolved against the CSV file's folder; an
    absolute path or one leading out of that folder (``..``) is allowed — whoever wrote the list chose those
    files, as they could name them on the command line. Empty cells are passed over. An entry that is missing or is
    a folder yields an error naming the CSV line (the caller reports it per image, or stops under ``--strict``).
    The file itself must be UTF-8 CSV: another encoding or a malformed record is a ``ValueError`` naming the line.
    """
    from transferkit.data.text import _csv_records, decode_utf8

    records = _csv_records(decode_utf8(path, "image lists"), ",", path)
    first = next(records, None)
    if first is None:
        return
    header = first[1]
    names = [h.strip().lower() for h in header]
    col = names.index("path") if "path" in names else 0
    head = header[0].strip() if header else ""
    if "path" not in names and head and (Path(head).suffix.lower() in IMAGE_SUFFIXES
                                         or _entry_kind(path.parent / head) == "file"):
        records = itertools.chain([first], records)  # no header: the first row is already an image
    for line, row in records:
        value = row[col].strip() if col < len(row) else ""
        if not value:
            continue
        f = Path(value).expanduser()
        f = f if f.is_absolute() else path.parent / f
        where = f"listed at {path}:{line}" + (f" as '{value[:200]}'" if str(f) != value else "")
        kind = _entry_kind(f)
        if kind == "file":
            yield str(f), f, None
        elif kind == "folder":
            yield str(f), None, f"{f}: a folder, not an image file ({where}); list its images or pass the folder"
        elif kind == "missing":
            yield str(f), None, f"{f}: no such file ({where})"
        else:
            yield str(f)[:300], None, f"{str(f)[:300]}: not a usable file name ({kind}; {where[:300]})"


def _entry_kind(f: Path) -> str:
    """``"file"``, ``"folder"``, ``"missing"``, or why ``f`` cannot even be looked up (a name too long, a NUL byte)."""
    try:
        return "file" if f.is_file() else "folder" if f.is_dir() else "missing"
    except (OSError, ValueError) as exc:
        return f"{exc.__class__.__name__}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"


@register_dataset(
    "image_folder", "Class-per-folder images: PATH/<class>/*.png, or PATH/{train,test}/<class>/*",
    splits=("train", "val", "test"), takes_argument=True, splits_of=folder_splits,
)
def image_folder(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    """Images of ``PATH/<class>/…`` (or ``PATH/<split>/<class>/…``); the class folders' sorted names are the classes.

    With a ``train``/``val``/``test`` layout the *training* folder's classes are every split's classes (so a
    label means the same class in each split): a held-out folder may lack some classes (evaluating one class is
    fine) but may not add one. In the training split a class folder without a readable image is an error: its
    class could not be learnt. Unreadable files are skipped with one warning (``strict``: an error).
    """
    root = Path(arg or "").expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image_folder:{arg}: no such folder")
    splits = folder_splits(str(root))
    if split not in splits:
        raise ValueError(
            f"image_folder:{arg} has no '{split}' split (found: {', '.join(splits)}); lay out "
            f"PATH/train/<class>/... and PATH/test/<class>/... to evaluate on a held-out folder"
        )
    nested = (root / "train").is_dir()
    base = root / split if nested else root
    class_dirs = _class_folders(base)
    if not class_dirs:
        raise ValueError(f"image_folder:{arg}: no class subfolders in {base} (lay out {base}/<class>/<image>)")
    classes = [c.name for c in class_dirs]
    if nested and split != "train":
        train_classes = [c.name for c in _class_folders(root / "train")]
        extra = [c for c in classes if c not in train_classes]
        if extra:
            raise ValueError(f"image_folder:{arg}: {base} has class folder(s) {extra} that {root / 'train'} lacks; "
                             f"the model learns the training folder's classes ({', '.join(train_classes)})")
        classes = train_classes
    listed = [(f, classes.index(cdir.name), cdir) for cdir in class_dirs for f in sorted(cdir.rglob("*"))
              if f.is_file() and not f.name.startswith(".")]
    label_dirs = [(classes.index(c.name), c) for c in class_dirs]
    return _folder_set(listed, label_dirs, classes, f"image_folder:{arg}", split, base, strict)


def _folder_set(listed: list[tuple[Path, int, Path]], label_dirs: list[tuple[int, Path]], classes: list[str],
                name: str, split: str, base: Path, strict: bool) -> ImageSet:
    """The images of ``listed`` ``(file, label, class folder)``: decoded in memory, or streamed (:mod:`.lazy`) when
    their decoded size is above ``$TRANSFERKIT_STREAM_ABOVE``; unreadable files skipped with one warning (``strict``:
    an error)."""
    from transferkit.data import lazy

    files = [f for f, _, _ in listed]
    limit = lazy.stream_above()
    checked = lazy.index_files(files, name, saved_only=True) if limit is not None else None
    decoded = (checked[0].decoded_bytes() if checked else lazy.header_bytes(files)) if limit is not None else 0
    images: list[np.ndarray] | lazy.LazyImages
    if limit is not None and decoded > limit:
        index, bad = checked or lazy.index_files(files, name)  # type: ignore[misc]
        if bad and strict:
            raise BadImage(bad[0])
        kept = {p: i for i, p in enumerate(index.paths)}
        rows = [kept[str(f)] for f in files if str(f) in kept]
        labels = [lab for f, lab, _ in listed if str(f) in kept]
        paths = [str(f) for f in files if str(f) in kept]
        images = lazy.LazyImages(index, np.asarray(rows, dtype=np.int64))
        sizes = len({(int(h), int(w)) for h, w, _ in index.shapes[rows]})
        log.info("%s/%s: %d images (%d size%s, each resized to the model's), %s decoded: above %s=%s, streamed from "
                 "disk through the prepared cache", name, split, len(paths), sizes, "s" if sizes > 1 else "",
                 cachedir.format_size(decoded), lazy.ENV_STREAM, cachedir.format_size(limit))
        per_dir = Counter(d for f, _, d in listed if str(f) in kept)
        bad_per_dir = Counter(d for f, _, d in listed if str(f) not in kept)
    else:
        images, labels, paths, bad = [], [], [], []
        per_dir, bad_per_dir = Counter(), Counter()
        for f, label, cdir in listed:
            try:
                images.append(load_image_file(f))
            except ValueError as exc:
                if strict:
                    raise
                bad.append(str(exc))
                bad_per_dir[cdir] += 1
                continue
            labels.append(label)
            paths.append(str(f))
            per_dir[cdir] += 1
    empty = [f"{d}" + (f" ({bad_per_dir[d]} unreadable file(s) skipped)" if bad_per_dir[d] else " (no files)")
             for _, d in label_dirs if not per_dir[d]]
    if bad:
        log.warning("%s: skipped %d unreadable file(s):\n  %s", name, len(bad), "\n  ".join(bad))
    if not len(images):
        raise ValueError(f"{name}: no readable images under {base}"
                         + (f" ({len(bad)} unreadable file(s) skipped, e.g. {bad[0]})" if bad else ""))
    if empty and split == "train":
        raise ValueError(f"{name}: class(es) without a readable image: {'; '.join(empty)}. A class "
                         "needs training images: add some, or remove it")
    if isinstance(images, list):
        shapes = {im.shape for im in images}
        images = np.stack(images) if len(shapes) == 1 else images
    ds = ImageSet(images, np.array(labels), classes, f"{name}/{split}", paths)
    ds.skipped = bad  # type: ignore[attr-defined]
    return ds


def _open_npz(path: Path, arg: str | None):
    """``np.load`` of an ``.npz`` archive without pickles; anything else is an error naming the file."""
    with path.open("rb") as fh:
        magic = fh.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
        raise ValueError(f"npz:{arg}: not a NumPy .npz archive (it does not begin like a zip file); save one with "
                         "numpy.savez(path, x=images, y=labels)")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"npz:{arg}: not a readable NumPy .npz archive ({exc.__class__.__name__}: "
                         f"{str(exc).split('. ')[0]}); save one with numpy.savez(path, x=images, y=labels)") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"npz:{arg}: a single .npy array, not an .npz archive of named arrays; save one with "
                         "numpy.savez(path, x=images, y=labels)")
    return z


def _npz_array(z, key: str, arg: str | None) -> np.ndarray:
    try:
        return z[key]
    except ValueError as exc:  # object arrays need pickles, which are refused
        raise ValueError(f"npz:{arg}: array '{key}' cannot be read without pickle ({exc}); store numbers, not "
                         "Python objects") from None


def npz_splits(arg: str) -> tuple[str, ...]:
    """Splits of ``npz:PATH``: ``train`` (x/y or x_train/y_train), plus ``test`` when x_test/y_test exist."""
    path = Path(arg).expanduser()
    if not path.is_file():
        return ("train",)
    with _open_npz(path, arg) as z:
        return ("train", "test") if {"x_test", "y_test"} <= set(z.files) else ("train",)


def _npz_labels(y: np.ndarray, key: str, arg: str | None) -> np.ndarray:
    """``y`` as int64 labels, or an error naming the array: labels are whole numbers ≥ 0, one per image."""
    if y.ndim != 1:
        raise ValueError(f"npz:{arg}: '{key}' must be one label per image (shape (N,)), got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_):
        raise ValueError(f"npz:{arg}: '{key}' must hold integer class ids, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        wrong = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(wrong):
            raise ValueError(f"npz:{arg}: '{key}' must hold integer class ids; '{key}[{wrong[0]}]' is {y[wrong[0]]}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        bad = int(np.argmin(y))
        raise ValueError(f"npz:{arg}: '{key}[{bad}]' is {y[bad]}; class ids start at 0")
    return y


@register_dataset(
    "npz", "NumPy archive with arrays x (N,H,W[,C] uint8) and y (N,); optional x_test/y_test, classes",
    takes_argument=True, splits_of=npz_splits,
)
def npz(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    """Images ``x`` (``uint8``, or floats in [0, 1] or [0, 255]; ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``)
    and labels ``y`` (``x_test``/``y_test`` for the test split). Class names come from ``classes``, else the class
    count from the largest label of any split (so that train and test agree). Anything else — a missing or unreadable
    array, lengths that differ, a label outside the classes, a NaN or infinite pixel — is an error naming the array."""
    path = Path(arg or "").expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"npz:{arg}: no such file")
    with _open_npz(path, arg) as z:
        keys = set(z.files)
        xk, yk = ("x", "y") if split == "train" else ("x_test", "y_test")
        if split == "train" and "x" not in keys and "x_train" in keys:
            xk, yk = "x_train", "y_train"
        if xk not in keys or yk not in keys:
            raise ValueError(f"npz:{arg}: split '{split}' needs arrays '{xk}' and '{yk}'; the file has {sorted(keys)}")
        x, y = _npz_array(z, xk, arg), _npz_labels(_npz_array(z, yk, arg), yk, arg)
        if "classes" in keys:
            classes = [str(c) for c in _npz_array(z, "classes", arg).reshape(-1)]
        else:  # ids only: as many classes as the largest label of any split
            tops = [int(a.max()) for k in ("y", "y_train", "y_test") if k in keys
                    for a in [_npz_labels(_npz_array(z, k, arg), k, arg)] if len(a)]
            classes = [str(i) for i in range(max(tops, default=-1) + 1)]
    if x.ndim not in (3, 4):
        raise ValueError(f"npz:{arg}: '{xk}' must hold images of shape (N, H, W), (N, H, W, C) or (N, C, H, W); "
                         f"got shape {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"npz:{arg}: '{xk}' holds {len(x)} images but '{yk}' {len(y)} labels; they must pair up")
    if not len(x):
        raise ValueError(f"npz:{arg}: '{xk}' holds no images")
    if len(y) and y.max() >= len(classes):
        bad = int(np.argmax(y))
        raise ValueError(f"npz:{arg}: '{yk}[{bad}]' is {y[bad]} but 'classes' names only {len(classes)} classes "
                         f"(ids 0..{len(classes) - 1})")
    if x.dtype != np.uint8:
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(x.dtype, np.complexfloating):
            raise ValueError(f"npz:{arg}: '{xk}' must hold pixel values (uint8, or floats in [0, 1] or [0, 255]), "
                             f"got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating):
            finite = np.isfinite(x)
            if not finite.all():
                n_bad = int((~finite).sum())
                first = int(np.flatnonzero(~finite.reshape(len(x), -1).all(1))[0])
                raise ValueError(f"npz:{arg}: '{xk}' holds {n_bad} NaN or infinite value(s) (first in image {first}); "
                                 "pixels must be finite")
            if x.max() <= 1.0:
                x = x * 255.0
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW → NHWC
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    return ImageSet(x, y, classes, f"npz:{arg}/{split}")
