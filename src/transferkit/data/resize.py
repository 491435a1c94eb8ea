"""Resizing images to a model's input size: the **evaluation transform**, one function for every path.

Dataset preparation (training, validation and test data), :func:`transferkit.inference.preprocess` (``predict``,
``serve``, ``predict --backend onnx``) and the description of an exported model
(:func:`transferkit.inference.preprocessing_text`) all use :func:`resize_images`, so a model sees the same pixels
wherever it runs. Two modes (``InputSpec.resize``):

* ``squash`` — resize to ``size`` whatever the aspect ratio (a non-square image is distorted). What the small
  from-scratch backbones use, and what every bundle written before the field existed keeps.
* ``shorter_crop`` — the evaluation transform pretrained photo models were trained and scored with (torchvision's
  ``Resize(256) → CenterCrop(224)``; timm's ``resolve_data_config`` + ``create_transform``): resize, keeping the
  aspect ratio, so that the image just covers :func:`scale_size` = ``floor(size / crop_pct)`` (for a square size:
  the shorter side becomes ``floor(size / crop_pct)``; timm's rounding), then take the centre ``size`` crop
  (offsets ``round((n - size) / 2)`` as torchvision's ``center_crop``). **Except** a square image no larger than
  ``size`` (MNIST-like: 28 px for a 96- or 224-px model; :func:`keeps_whole`): it is resized whole to ``size``, as
  ``squash`` does. Such an image is a whole small frame with no background margin to trim, and cropping it costs
  accuracy: a MobileNetV2 linear probe at 96 px on Fashion-MNIST (K = 10 per class, 10 development seeds, full
  test split; ``benchmarks/bench_preprocess.py``) scores 1.2 ± 0.9 points lower with the crop at C = 1e-3 and
  lower at every L2 strength tried (0.6–1.4 points); with C chosen by cross-validation 0.7198 ± 0.0090 (whole)
  vs 0.7133 ± 0.0151 (cropped). timm crops every image; we do not, for these.

Both resize antialiased (``torch.nn.functional.interpolate(..., antialias=True)``) with ``InputSpec.interpolation``
(``bilinear`` or ``bicubic``, from the weights' pretrained configuration) on ``uint8`` pixels, rounded back to
``uint8``.

Training images of a ``shorter_crop`` spec keep a border (``border=True``): the ``scale_size`` box around the
evaluation crop, placed so that the crop at :func:`inner_box` is *exactly* the evaluation image. Batches without
augmentation are served that inner box (:class:`~transferkit.data.prepare.TensorBatches` ``view``), augmented
batches random-resized crops of the whole bordered image (:mod:`transferkit.data.augment`), as timm trains.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES: tuple[str, ...] = ("squash", "shorter_crop")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")
IMAGENET_CROP_PCT = 0.875  # torchvision's and timm's 224 / 256


def to_nchw(img: np.ndarray) -> torch.Tensor:
    """One ``uint8`` image (H, W) or (H, W, C) as a (C, H, W) tensor (no copy when already contiguous)."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) uint8 → (N, channels, H, W): gray → RGB by repetition, RGB → gray by luminance."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1 and c >= 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x[:, :3].float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if c == 4 and channels == 3:
        return x[:, :3].contiguous()
    raise ValueError(f"cannot convert images with {c} channels to the {channels} the model expects")


def spec_resize(spec: Any) -> tuple[str, float, str]:
    """``(resize, crop_pct, interpolation)`` of an input spec (any object; missing attributes: the defaults
    ``squash``, 1.0, ``bilinear``), checked: ``ValueError`` names the field and the valid choices."""
    resize = getattr(spec, "resize", "squash")
    crop_pct = getattr(spec, "crop_pct", 1.0)
    interpolation = getattr(spec, "interpolation", "bilinear")
    if resize not in RESIZE_MODES:
        raise ValueError(f"input_spec.resize: unknown {resize!r}; valid choices: {', '.join(RESIZE_MODES)}")
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise ValueError(f"input_spec.crop_pct must be a number in (0, 1], got {crop_pct!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"input_spec.interpolation: unknown {interpolation!r}; valid choices: "
                         f"{', '.join(INTERPOLATIONS)}")
    return resize, float(crop_pct), interpolation


def scale_size(size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """The size the evaluation crop is taken from: ``floor(side / crop_pct)`` per side (timm's
    ``transforms_factory``; 224 / 0.875 = 256). The tiny offset keeps exact quotients from rounding down."""
    return (math.floor(size[0] / crop_pct + 1e-6), math.floor(size[1] / crop_pct + 1e-6))


def _centre(n: int, m: int) -> int:
    """Offset of a centred length-``m`` window in ``n`` (torchvision's ``center_crop``: ``round((n - m) / 2)``)."""
    return int(round((n - m) / 2.0))


def resized_shape(h: int, w: int, size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """The shape an ``h × w`` image is resized to under ``shorter_crop``: the aspect ratio kept, just covering
    :func:`scale_size` (a square size: the shorter side becomes ``floor(size / crop_pct)``, the longer side
    ``floor(long · scale / short)``, as torchvision's ``Resize(int)``)."""
    sh, sw = scale_size(size, crop_pct)
    if sh * w >= sw * h:  # the height is the binding side
        return sh, max(sw, sh * w // h)
    return max(sh, sw * h // w), sw


def inner_box(spec: Any) -> tuple[int, int, int, int] | None:
    """Where the evaluation crop lies in a training image prepared with ``border=True``: ``(top, left, height,
    width)``; ``None`` when the spec keeps no border (``squash``, or no fixed size)."""
    resize, crop_pct, _ = spec_resize(spec)
    if resize == "squash" or not spec.size:
        return None
    size = (int(spec.size[0]), int(spec.size[1]))
    sh, sw = scale_size(size, crop_pct)
    if (sh, sw) == size:
        return None
    return _centre(sh, size[0]), _centre(sw, size[1]), size[0], size[1]


def _box(h: int, w: int, size: tuple[int, int], crop_pct: float, border: bool) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the crop in the resized image (shape :func:`resized_shape`)."""
    rh, rw = resized_shape(h, w, size, crop_pct)
    top, left = _centre(rh, size[0]), _centre(rw, size[1])
    if not border:
        return top, left, size[0], size[1]
    sh, sw = scale_size(size, crop_pct)
    # the bordered box sits so that its own centre crop (inner_box) is exactly the evaluation crop: it starts
    # that inner offset before the evaluation crop, which always fits (round() moves each offset by ≤ ½)
    return top - _centre(sh, size[0]), left - _centre(sw, size[1]), sh, sw


def keeps_whole(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether ``shorter_crop`` resizes an ``h × w`` image whole instead of cropping it: a square image no larger
    than the input ``size`` (MNIST-like; the module docstring has the measurement behind the rule)."""
    return h == w and h <= size[0] and w <= size[1]


def all_keep_whole(shapes: Any, spec: Any) -> bool:
    """Whether every ``(h, w)`` in ``shapes`` is resized whole under ``spec`` (``squash``, or squares no larger than
    the input): then training data need no border (:func:`~transferkit.data.prepare.to_batches`)."""
    resize = spec_resize(spec)[0]
    if resize == "squash" or not spec.size:
        return True
    size = (int(spec.size[0]), int(spec.size[1]))
    return all(keeps_whole(int(h), int(w), size) for h, w in shapes)


def _interpolate(x: torch.Tensor, shape: tuple[int, int], mode: str) -> torch.Tensor:
    out = F.interpolate(x.float(), size=shape, mode=mode, antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _resized(x: torch.Tensor, shape: tuple[int, int], box: tuple[int, int, int, int], mode: str,
             chunk: int) -> torch.Tensor:
    """``x`` resized to ``shape`` and cut to ``box``, ``chunk`` images at a time (the float copies stay small)."""
    top, left, bh, bw = box
    if tuple(x.shape[-2:]) == shape:
        return x[..., top : top + bh, left : left + bw]
    out = torch.empty((x.shape[0], x.shape[1], bh, bw), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        out[i : i + chunk] = _interpolate(x[i : i + chunk], shape, mode)[..., top : top + bh, left : left + bw]
    return out


def resize_images(x: torch.Tensor, spec: Any, border: bool = False, chunk: int = 2048,
                  whole_squares: bool = True) -> torch.Tensor:
    """``uint8`` images ``(N, C, h, w)`` (one shared size) → ``(N, C, H, W)`` at ``spec.size`` by the spec's
    evaluation transform (module docstring); ``border=True`` (training data of a ``shorter_crop`` spec) keeps the
    :func:`scale_size` box around the crop instead — for an image resized whole, a reflected border around it, so
    that the :func:`inner_box` is still exactly the evaluation image. Images already at the output size are
    returned as they are. ``whole_squares=False`` crops small squares too, as timm does (for measurements)."""
    resize, crop_pct, mode = spec_resize(spec)
    size = (int(spec.size[0]), int(spec.size[1]))
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if resize == "shorter_crop" and not (whole_squares and keeps_whole(h, w, size)):
        return _resized(x, resized_shape(h, w, size, crop_pct), _box(h, w, size, crop_pct, border), mode, chunk)
    out = _resized(x, size, (0, 0, *size), mode, chunk)
    inner = inner_box(spec) if border else None
    if inner is None:
        return out
    sh, sw = scale_size(size, crop_pct)
    pads = (inner[1], sw - size[1] - inner[1], inner[0], sh - size[0] - inner[0])  # left, right, top, bottom
    return F.pad(out, pads, mode="reflect" if max(pads) < min(size) else "replicate")


def describe_resize(spec: Any) -> str:
    """The resize step in words (for ``preprocessing_text`` and reports)."""
    resize, crop_pct, mode = spec_resize(spec)
    if not spec.size:
        return "keep the native size"
    size = f"{spec.size[0]}×{spec.size[1]}"
    if resize == "squash":
        return f"resize to {size} ignoring the aspect ratio ({mode}, antialiased)"
    sh, sw = scale_size((int(spec.size[0]), int(spec.size[1])), crop_pct)
    cover = f"the shorter side is {sh}" if sh == sw else f"it just covers {sh}×{sw}"
    return (f"resize keeping the aspect ratio so that {cover} (floor(size / crop_pct), crop_pct {crop_pct:g}; "
            f"{mode}, antialiased), then take the centre {size} crop (offsets round((side - crop) / 2)); "
            f"except a square image no larger than {size}: resize it to {size} whole ({mode}, antialiased)")
