"""Domain-shifted Fashion-MNIST, built offline from real data: the targets of domain-adaptation experiments.

Each keeps Fashion-MNIST's classes, splits and labels and changes only the images, deterministically:

* ``fashion_mnist_m`` — colour, the way MNIST-M is built from MNIST (Ganin & Lempitsky, 2015, "Unsupervised
  Domain Adaptation by Backpropagation"): every image is blended with a random 28×28 patch of a colour photo,
  ``|patch − image|`` per channel. The photos are the real ones bundled with scikit-image (astronaut, cat,
  coffee, rocket, Hubble deep field, immunohistochemistry, retina). Seed 0 per split; built once (a few
  seconds) and cached as ``$TRANSFERKIT_DATA/fashion_mnist_m/<split>.npz`` (written atomically).
* ``fashion_mnist_rot:<deg>`` — every image rotated by ``deg`` degrees (bilinear, black fill).
* ``fashion_mnist_inv`` — inverted intensities (255 − x).
* ``fashion_mnist_noise:<sigma>`` — additive Gaussian noise of standard deviation ``sigma`` in units of the
  intensity range (0.2 = 51 grey levels), clipped; seeded per split.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import torch

from transferkit import atomic
from transferkit.data.base import ImageSet
from transferkit.data.download import data_root
from transferkit.data.registry import get_dataset, register_dataset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
MNIST_M_VERSION = 1  # bump when the construction changes: old caches are then rebuilt
_SPLIT_SEED = {"train": 0, "test": 1}


def _base(split: str) -> ImageSet:
    return get_dataset("fashion_mnist", split)


def _number(name: str, arg: str | None, what: str, lo: float, hi: float) -> float:
    try:
        value = float(arg)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"dataset '{name}:{arg}': {what} must be a number, e.g. '{name}:45'") from None
    if not lo <= value <= hi:
        raise ValueError(f"dataset '{name}:{arg}': {what} must lie in [{lo:g}, {hi:g}]")
    return value


def _like(base: ImageSet, images: np.ndarray, name: str) -> ImageSet:
    return ImageSet(images, base.labels, list(base.classes), name)


def photo_patches(n: int, seed: int, size: int = 28) -> np.ndarray:
    """``n`` random ``size``×``size`` RGB patches (uint8, ``(n, size, size, 3)``) cut from scikit-image's photos."""
    try:
        import skimage.data
    except ImportError:
        raise ImportError("fashion_mnist_m cuts its colour patches from the photos bundled with scikit-image: "
                          "pip install scikit-image") from None
    photos = [np.ascontiguousarray(getattr(skimage.data, p)()[..., :3]) for p in PHOTOS]
    rng = np.random.default_rng(seed)
    which = rng.integers(len(photos), size=n)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, photo in enumerate(photos):
        idx = np.flatnonzero(which == i)
        h, w = photo.shape[:2]
        ys, xs = rng.integers(h - size + 1, size=len(idx)), rng.integers(w - size + 1, size=len(idx))
        rows = ys[:, None] + np.arange(size)[None, :]  # (m, size)
        cols = xs[:, None] + np.arange(size)[None, :]
        out[idx] = photo[rows[:, :, None], cols[:, None, :]]
    return out


def blend_mnist_m(images: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """MNIST-M's blend: ``|patch − image|`` per channel, grey ``(N, H, W)`` images against RGB patches."""
    return np.abs(patches.astype(np.int16) - images[..., None].astype(np.int16)).astype(np.uint8)


@register_dataset("fashion_mnist_m", "Fashion-MNIST blended with colour photo patches (MNIST-M recipe), 28x28x3")
def fashion_mnist_m(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    base = _base(split)
    cache = data_root() / "fashion_mnist_m" / f"{split}-v{MNIST_M_VERSION}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            images = z["x"]
        if len(images) == len(base):
            return _like(base, images, "fashion_mnist_m")
    images = blend_mnist_m(base.images, photo_patches(len(base), seed=_SPLIT_SEED[split]))
    buf = io.BytesIO()
    np.savez(buf, x=images)
    atomic.write_bytes(cache, buf.getvalue())
    return _like(base, images, "fashion_mnist_m")


@register_dataset("fashion_mnist_inv", "Fashion-MNIST with inverted intensities (255 - x)")
def fashion_mnist_inv(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    base = _base(split)
    return _like(base, 255 - base.images, "fashion_mnist_inv")


@register_dataset("fashion_mnist_rot", "Fashion-MNIST rotated by DEG degrees", takes_argument=True, arg_name="DEG")
def fashion_mnist_rot(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    deg = _number("fashion_mnist_rot", arg, "the angle in degrees", -360, 360)
    return _rotated(split, deg)


@functools.lru_cache(maxsize=4)
def _rotated(split: str, deg: float) -> ImageSet:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    base = _base(split)
    x = torch.from_numpy(np.ascontiguousarray(base.images))[:, None]  # (N, 1, H, W) uint8
    out = torch.cat([TF.rotate(x[i:i + 8192], deg, interpolation=InterpolationMode.BILINEAR, fill=0)
                     for i in range(0, len(x), 8192)])
    return _like(base, out[:, 0].numpy(), f"fashion_mnist_rot:{deg:g}")


@register_dataset("fashion_mnist_noise", "Fashion-MNIST with Gaussian noise of std SIGMA (fraction of the range)",
                  takes_argument=True, arg_name="SIGMA")
def fashion_mnist_noise(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    sigma = _number("fashion_mnist_noise", arg, "sigma (a fraction of the intensity range)", 0, 1)
    return _noisy(split, sigma)


@functools.lru_cache(maxsize=4)
def _noisy(split: str, sigma: float) -> ImageSet:
    base = _base(split)
    rng = np.random.default_rng(_SPLIT_SEED[split])
    noisy = base.images.astype(np.float32) + rng.normal(0.0, sigma * 255.0, base.images.shape).astype(np.float32)
    return _like(base, np.clip(np.rint(noisy), 0, 255).astype(np.uint8), f"fashion_mnist_noise:{sigma:g}")
