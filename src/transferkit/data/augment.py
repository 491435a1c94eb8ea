"""Data augmentation for training batches: ``transforms.v2`` presets, and Mixup/CutMix.

Presets (``--augment``), applied to the ``uint8`` images of the **training** batches only, before
normalisation (:meth:`TensorBatches.with_transform`), each image with its own random draw:

* ``none`` — no augmentation.
* ``light`` — random horizontal flip and a small random translation (pad by 1/8 of the side with reflection,
  random crop back: the classic CIFAR "pad and crop").
* ``standard`` — random horizontal flip, ``RandomResizedCrop(scale=(0.6, 1))`` (Szegedy et al., 2015,
  "Going Deeper with Convolutions") and a rotation of at most ±10°.
* ``strong`` — ``standard`` plus RandAugment (two random operations at magnitude 9; Cubuk et al., 2020,
  "RandAugment: Practical automated data augmentation with a reduced search space"), colour jitter
  (brightness, contrast, saturation; 3-channel data only) and RandomErasing (p = 0.25; Zhong et al., 2020,
  "Random Erasing Data Augmentation"). :func:`augmentation` also accepts ``policy="trivial"`` for
  TrivialAugmentWide (Müller & Hutter, 2021, "TrivialAugment: Tuning-free Yet State-of-the-Art Data
  Augmentation"), parameter-free but with wider ranges (rotations up to 135°), too strong for small images.

**Bordered images** (a ``shorter_crop`` spec: :func:`~transferkit.data.prepare.to_batches` stores the
``floor(size / crop_pct)`` square around the evaluation crop, :mod:`transferkit.data.resize`) get the
random-resized-crop style of timm's and torchvision's ImageNet training instead of the pad-and-crop and
in-view crops above, each drawing the output ``size`` from the whole bordered image:

* ``light`` — random horizontal flip and a random ``size`` crop of the bordered image (translation within the
  border: torchvision's classic "resize 256, random crop 224, flip");
* ``standard`` / ``strong`` — random horizontal flip and ``RandomResizedCrop(size)`` with an area of 0.6–1.31× the
  evaluation view's (``scale=(0.6·v, 1)`` of the bordered image, ``v = (crop_pct)²`` the view's share; the
  ``standard`` range of plain images, allowed to reach into the border), then the rest of the preset as above.

``none`` serves the evaluation crop (no random transform). Small squash-resized images (MNIST-like data with the
small backbones) keep the presets above unchanged.

Horizontal flips assume mirror-symmetric classes (true for clothing and natural images, not for digits or
text: use ``--augment none`` there, or a custom transform through ``with_transform``).

Mixup (Zhang et al., 2018, "mixup: Beyond Empirical Risk Minimization") blends two examples and their
labels with λ ~ Beta(α, α); CutMix (Yun et al., 2019, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features") pastes a box of one image into another and mixes the labels by
area. :class:`MixupCutmix` applies them to a whole batch (pairs are the batch and itself rolled by one, as
in torchvision; the loader already shuffles) and returns soft targets. With both on, each batch uses one of
the two, chosen with probability 1/2 (as timm's ``Mixup`` does).

All randomness comes from torch's global generator, so :func:`lightning.seed_everything` makes a run
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2

from transferkit.config import AUGMENT_PRESETS, TrainConfig  # the presets' one list (also the CLI's choices)
from transferkit.data.prepare import TensorBatches
from transferkit.errors import ConfigError

RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9  # the ImageNet setting of Cubuk et al. (2020)


class PerSample:
    """Apply a ``transforms.v2`` transform to each image of a batch separately.

    A v2 transform called on a batch tensor draws its random parameters once for the whole batch (every
    image flipped, or none); looping over the images gives each its own draw. At the batch sizes and image
    sizes of this toolkit the loop costs far less than the forward and backward pass it feeds.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], name: str = "custom",
                 out_size: tuple[int, int] | None = None) -> None:
        self.transform, self.name, self.out_size = transform, name, out_size

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 4:
            raise ValueError(f"augmentation expects an image batch (B, C, H, W), got shape {tuple(batch.shape)}")
        if batch.shape[0] == 0:
            h, w = self.out_size or batch.shape[-2:]
            return batch[..., :h, :w].clone()
        return torch.stack([self.transform(img) for img in batch])

    def __repr__(self) -> str:
        return f"PerSample({self.name}: {self.transform})"


def augmentation(preset: str, channels: int, size: tuple[int, int], policy: str = "randaugment",
                 bordered: tuple[int, int] | None = None) -> PerSample | None:
    """The ``preset`` pipeline for ``uint8`` images with ``channels`` channels of ``size`` (H, W).

    Returns a callable that maps a batch ``(B, C, H, W)`` to an augmented batch of the same shape and dtype
    (``None`` for ``"none"``). ``policy`` picks the automatic policy of ``strong``: ``"randaugment"``
    (default) or ``"trivial"`` (TrivialAugmentWide). ``bordered`` = ``(H', W')``: the batches hold larger,
    bordered images (a ``shorter_crop`` spec's training data) and the output is ``size`` crops of them, drawn
    random-resized-crop style (module docstring).
    """
    if preset not in AUGMENT_PRESETS:
        raise ConfigError("augment", f"one of {', '.join(AUGMENT_PRESETS)}", preset)
    if policy not in ("randaugment", "trivial"):
        raise ValueError(f"unknown augmentation policy '{policy}'; valid choices: randaugment, trivial")
    if preset == "none":
        return None
    h, w = int(size[0]), int(size[1])
    flip = v2.RandomHorizontalFlip()
    border = bordered is not None and tuple(bordered) != (h, w)
    if border and (bordered[0] < h or bordered[1] < w):
        raise ValueError(f"bordered images {tuple(bordered)} must be at least the output size {(h, w)}")
    if preset == "light":
        crop = v2.RandomCrop((h, w)) if border else v2.RandomCrop((h, w), padding=max(1, round(min(h, w) / 8)),
                                                                  padding_mode="reflect")
        return PerSample(v2.Compose([flip, crop]), preset, (h, w))
    # bordered: the plain-image range (0.6–1 of the view) measured against the evaluation view's share of the image
    low = 0.6 * (h * w) / (bordered[0] * bordered[1]) if border else 0.6
    ops: list[nn.Module] = [flip, v2.RandomResizedCrop((h, w), scale=(low, 1.0), antialias=True),
                            v2.RandomRotation(10)]
    if preset == "strong":
        ops.append(v2.RandAugment(RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE) if policy == "randaugment"
                   else v2.TrivialAugmentWide())
        if channels == 3:
            ops.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3))
        ops.append(v2.RandomErasing(p=0.25, scale=(0.02, 0.2), value=0))
    return PerSample(v2.Compose(ops), preset, (h, w))


def pixel_options(cfg: TrainConfig) -> list[str]:
    """The pixel options of ``cfg`` (``augment``, ``cutmix``) as keywords, e.g. ``["augment=light"]``."""
    return ([f"augment={cfg.augment}"] if cfg.augment not in (None, "none") else []) + (
        [f"cutmix={cfg.cutmix:g}"] if cfg.cutmix > 0 else [])


def refuse_pixel_options(cfg: TrainConfig, why: str) -> None:
    """Raise a ``ValueError`` naming the pixel options of ``cfg`` (if any) and how to fix them; ``why`` says what
    the training data are instead of images."""
    bad = pixel_options(cfg)
    if bad:
        fix = " and ".join(("augment=none" if b.startswith("augment") else "cutmix=0") for b in bad)
        raise ValueError(f"{' and '.join(bad)}: augmentation needs image batches, but {why} — use finetune "
                         f"(or scratch), which trains on images, or {fix} (mixup works on features)")


def require_image_batches(cfg: TrainConfig, data: TensorBatches) -> None:
    """Refuse ``augment``/``cutmix`` when the training data are features ``(N, D)``, not images.

    Both act on pixels; a strategy that trains on extracted features (``linear_probe`` trains a head on cached
    features) cannot use them. Mixup mixes feature vectors just as well and is allowed. Called before training
    starts, so a run fails at once rather than after its first epoch.
    """
    if data.lengths is not None:  # token ids
        bad = pixel_options(cfg) + ([f"mixup={cfg.mixup:g}"] if cfg.mixup > 0 else [])
        if bad:
            raise ValueError(f"{' and '.join(bad)}: these act on images, but the training data are texts (token "
                             "ids); leave them at their defaults for text")
    if data.x.ndim != 4:
        shape = "×".join(str(s) for s in data.x.shape[1:]) or "scalar"
        refuse_pixel_options(cfg, f"this strategy trains on {shape} feature vectors (linear_probe trains a head on "
                                  "cached features, not images)")


def augmented(data: TensorBatches, preset: str | None, policy: str = "randaugment") -> TensorBatches:
    """``data`` with the ``preset`` augmentation on its batches (``data`` itself for ``"none"``, which serves the
    evaluation crop of bordered images; ``None``, a configuration no strategy resolved, means ``"none"``).

    Returns a copy (see :meth:`TensorBatches.with_transform`): the original — and any validation or test
    data — stays unaugmented. Bordered data (``data.view`` set) get crops of the served size from the whole
    bordered images.
    """
    if preset is None or preset == "none":
        return data
    if data.x.ndim != 4:
        raise ValueError(f"augment={preset}: augmentation needs image batches (N, C, H, W), got data of shape "
                         f"{tuple(data.x.shape)}")
    bordered = tuple(data.x.shape[-2:]) if data.view is not None else None
    return data.with_transform(augmentation(preset, data.x.shape[1], data.image_size, policy, bordered))


class MixupCutmix:
    """Turn a batch ``(x, y)`` with integer labels into ``(mixed x, soft targets (B, num_classes))``.

    ``mixup``/``cutmix`` are the Beta(α, α) parameters (0 = off; at least one must be on). Uses
    ``torchvision.transforms.v2.MixUp``/``CutMix``; each call picks one of them at random when both are on.
    Works on whichever device ``x`` lives. Feature batches ``(B, D)`` can be mixed with Mixup (CutMix needs
    images and raises). The soft targets sum to 1 per row.
    """

    def __init__(self, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        if num_classes < 1:
            raise ValueError(f"Mixup/CutMix need the number of classes, got {num_classes}")
        if mixup < 0 or cutmix < 0 or not (mixup > 0 or cutmix > 0):
            raise ValueError(f"need mixup > 0 or cutmix > 0 (both ≥ 0), got mixup={mixup}, cutmix={cutmix}")
        self.num_classes, self.mixup, self.cutmix = num_classes, mixup, cutmix
        parts = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + (
            [v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
        self.transform = parts[0] if len(parts) == 1 else v2.RandomChoice(parts)

    @classmethod
    def from_config(cls, cfg: TrainConfig, num_classes: int) -> MixupCutmix | None:
        """The mixer ``cfg`` asks for (``--mixup``/``--cutmix``), or ``None`` when both are off."""
        return cls(num_classes, cfg.mixup, cfg.cutmix) if cfg.mixup > 0 or cfg.cutmix > 0 else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim == 2:  # feature vectors: Mixup only, as (B, D, 1, 1) "images"
            if self.cutmix > 0:
                raise ValueError(f"cutmix={self.cutmix:g} needs image batches (B, C, H, W), got feature vectors (B, D)")
            xm, t = self.transform(x[:, :, None, None], y)
            return xm.flatten(1), t
        return self.transform(x, y)

    def __repr__(self) -> str:
        return f"MixupCutmix(num_classes={self.num_classes}, mixup={self.mixup}, cutmix={self.cutmix})"


def infer_num_classes(model: nn.Module, data: TensorBatches) -> int:
    """How many logits ``model`` produces: its ``num_classes`` (a :class:`Backbone`), ``out_features`` (a bare
    linear head), or else one training example through the model (in eval mode, no gradient, modes restored)."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    if isinstance(model, nn.Linear):
        return model.out_features
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            x = data.__getitems__([0])
            return int(model(x[0] if isinstance(x, tuple) else x).shape[-1])
    finally:
        for m, training in modes.items():
            m.train(training)
