"""The backbone interface every model in transferkit implements (timm's shape, made explicit).

A backbone is an ordered list of named **stages** (the feature extractor, input → output) followed by a
**head** (the classifier). That one structure serves all three classic kinds of transfer:

* parameter transfer copies every stage and replaces the head (:meth:`Backbone.reset_classifier`);
* feature transfer reads the output of one stage (:meth:`Backbone.forward_features` with ``layer``) and
  trains a new head on it, dropping later stages (:meth:`Backbone.truncate`);
* structure transfer rebuilds the same architecture from :meth:`Backbone.config` with random weights.

Freezing and (later) discriminative learning rates use :meth:`Backbone.param_groups`, the stages'
parameters in input → output order with the head last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.data.resize import INTERPOLATIONS, RESIZE_MODES, spec_resize
from transferkit.errors import ConfigError


@dataclass(frozen=True)
class InputSpec:
    """What a backbone expects as input; stored in every bundle so that ``predict`` preprocesses alike.

    Images are converted to ``channels`` channels, resized to ``size`` (``(H, W)``) by the evaluation transform
    ``resize`` (:mod:`transferkit.data.resize`), scaled to [0, 1] and normalised with ``mean``/``std`` per channel.

    ``resize`` is ``"squash"`` (a plain resize to ``size``, whatever the aspect ratio; the default, and what every
    bundle written without the field keeps) or ``"shorter_crop"`` (resize keeping the aspect ratio so that the
    shorter side is ``floor(size / crop_pct)``, then the centre ``size`` crop — how ImageNet models are evaluated;
    training batches then get random-resized crops of the bordered image when augmentation is on).
    ``interpolation`` is ``"bilinear"`` or ``"bicubic"`` (antialiased either way). The rule, decided in two
    places: (1) the backbone sets the mode — pretrained photo backbones, ``mobilenet_v2`` (torchvision: crop_pct
    0.875, bilinear), ``efficientnet_lite0/1/2`` and ``timm:`` models (their pretrained config's crop_pct and
    interpolation), ``torchvision:`` models (their weights' ``resize_size``/``crop_size``), use ``shorter_crop``;
    the small from-scratch backbones (``seed_cnn``, ``lenet``, ``resnet_small``), text and composite inputs of mixed
    members keep ``squash``; (2) the image decides within ``shorter_crop``: a square image no larger than ``size``
    (MNIST-like) is resized whole, not cropped (:func:`~transferkit.data.resize.keeps_whole`), in training,
    evaluation, ``predict``, ``serve`` and the exported description alike. Why (2): cropping 28-px Fashion-MNIST
    squares for a MobileNetV2 linear probe at 96 px cost 0.6–1.4 accuracy points at every L2 strength, 10
    development seeds (``benchmarks/bench_preprocess.py``; numbers in :mod:`transferkit.data.resize`).

    Text (``modality="text"``) is tokenised by ``tokenizer`` (a
    ``tokenizers.Tokenizer``, which travels with the model and is written beside a bundle's weights, not into
    the JSON) and truncated to ``extra["max_length"]`` tokens; ``extra["pad_id"]`` pads batches.
    """

    modality: str = "image"
    channels: int = 1
    size: tuple[int, int] | None = (28, 28)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    min_size: int = 1
    resize: str = "squash"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        spec_resize(self)  # ValueError naming the field for an unknown resize/interpolation or a bad crop_pct
        if self.resize != "squash" and not self.size:
            raise ValueError(f"input_spec.resize {self.resize!r} needs a fixed size (size is None); use 'squash'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (the tokenizer is not one: a bundle stores it as ``tokenizer.json``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tokenizer"}
        d["size"] = list(self.size) if self.size else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        d = {k: v for k, v in d.items() if k != "tokenizer"}
        d["size"] = tuple(d["size"]) if d.get("size") else None
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        if "crop_pct" in d:
            d["crop_pct"] = float(d["crop_pct"])
        return cls(**d)

    @staticmethod
    def validate_dict(d: Any, where: str = "input_spec") -> None:
        """Check a stored spec (:meth:`to_dict`) from untrusted JSON; ``ValueError`` names the field.

        Images: ``channels`` 1–64, ``size`` null or two whole numbers 1–4096, ``mean``/``std`` one finite number per
        channel (``std`` > 0), ``min_size`` ≥ 1, ``resize`` one of :data:`~transferkit.data.resize.RESIZE_MODES`
        (``shorter_crop`` only with a size), ``crop_pct`` a number in (0, 1], ``interpolation`` one of
        :data:`~transferkit.data.resize.INTERPOLATIONS` (each optional: absent = squash, 1.0, bilinear).
        Text: 0 channels, no size/mean/std, ``extra.max_length`` ≥ 2 and
        ``extra.pad_id`` ≥ 0. ``extra`` holds at most 32 short scalar values."""
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be an object, got {type(d).__name__}")
        known = {f.name for f in fields(InputSpec)} - {"tokenizer"}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0][:80]} is not an input-spec field (fields: "
                             f"{', '.join(sorted(known))})")

        def whole(v: Any, lo: int, hi: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

        def finite(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        modality = d.get("modality", "image")
        if modality not in ("image", "text"):
            raise ValueError(f"{where}.modality must be 'image' or 'text', got {modality!r}"[:300])
        resize, crop_pct = d.get("resize", "squash"), d.get("crop_pct", 1.0)
        interpolation = d.get("interpolation", "bilinear")
        if not isinstance(resize, str) or resize not in RESIZE_MODES:
            raise ValueError(f"{where}.resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}"[:300])
        if not finite(crop_pct) or not 0 < crop_pct <= 1:
            raise ValueError(f"{where}.crop_pct must be a number in (0, 1], got {crop_pct!r}"[:300])
        if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
            raise ValueError(f"{where}.interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {interpolation!r}"[:300])
        if resize != "squash" and d.get("size") is None:
            raise ValueError(f"{where}.resize {resize!r} needs a size (size is null); use 'squash'")
        extra = d.get("extra", {})
        if not isinstance(extra, dict) or len(extra) > 32:
            raise ValueError(f"{where}.extra must be an object of at most 32 entries")
        for k, v in extra.items():
            if len(k) > 64 or not (v is None or isinstance(v, (bool, int, str)) or finite(v)) \
                    or (isinstance(v, str) and len(v) > 256):
                raise ValueError(f"{where}.extra.{k[:64]} must be a number, true/false, null or a short string")
        channels, size, mean, std = d.get("channels", 1), d.get("size"), d.get("mean", ()), d.get("std", ())
        if modality == "text":
            if channels != 0 or isinstance(channels, bool) or size is not None or mean or std:
                raise ValueError(f"{where}: a text spec has channels 0, size null and no mean/std")
            if not whole(extra.get("max_length"), 2, 1 << 20):
                raise ValueError(f"{where}.extra.max_length must be a whole number ≥ 2, "
                                 f"got {extra.get('max_length')!r}")
            if not whole(extra.get("pad_id"), 0, 1 << 31):
                raise ValueError(f"{where}.extra.pad_id must be a whole number ≥ 0, got {extra.get('pad_id')!r}")
            return
        if not whole(channels, 1, 64):
            raise ValueError(f"{where}.channels must be a whole number in [1, 64], got {channels!r}"[:300])
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(whole(s, 1, 4096) for s in size)):
            raise ValueError(f"{where}.size must be [height, width] (whole numbers in [1, 4096]) or null, "
                             f"got {size!r}"[:300])
        for name, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or len(values) != channels:
                raise ValueError(f"{where}.{name} must be a list of {channels} numbers (one per channel), "
                                 f"got {values!r}"[:300])
            bad = [v for v in values if not finite(v) or (name == "std" and v <= 0)]
            if bad:
                raise ValueError(f"{where}.{name} must hold finite numbers{' > 0' if name == 'std' else ''}, "
                                 f"got {bad[0]!r}")
        min_size = d.get("min_size", 1)
        if not whole(min_size, 1, 4096) or (size is not None and min_size > min(size)):
            raise ValueError(f"{where}.min_size must be a whole number in [1, {min(size) if size else 4096}], "
                             f"got {min_size!r}"[:300])

    def check_fits(self, built: InputSpec, where: str = "input_spec") -> None:
        """``ValueError`` unless this (stored) spec feeds a model whose architecture expects ``built``: same
        modality, same number of channels, same size (when the model has one)."""
        if self.modality != built.modality:
            raise ValueError(f"{where}.modality is '{self.modality}', but the architecture takes {built.modality}")
        if self.channels != built.channels:
            raise ValueError(f"{where}.channels is {self.channels}, but the architecture takes {built.channels}")
        if built.size and (not self.size or tuple(self.size) != tuple(built.size)):
            raise ValueError(f"{where}.size is {list(self.size) if self.size else None}, but the architecture was "
                             f"built for {list(built.size)}")


class CosineClassifier(nn.Module):
    """Logits ``scale · cos(f, w_c)``: a classifier by direction only, whose rows are class prototypes or label
    embeddings (few-shot prototypes, Snell et al., 2017, with cosine similarity as in Chen et al., 2019, "A Closer
    Look at Few-shot Classification"; zero-shot by label descriptions). ``scale`` sharpens the softmax."""

    def __init__(self, in_features: int, num_classes: int, scale: float = 10.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, in_features) * 0.01)
        self.scale = float(scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).T

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}"


@dataclass
class ParamGroup:
    """A named group of parameters (one stage, or the head)."""

    name: str
    params: list[nn.Parameter]
    modules: list[nn.Module]


class Backbone(nn.Module):
    """Base class: named ``stages`` (an ``nn.ModuleDict``, input → output) plus a ``head``.

    Subclasses fill ``self.stages``, set ``self.feature_dim`` (width of the last stage's output) and
    ``self.input_spec``, may override :meth:`build_head`, then call :meth:`reset_classifier`.

    Parameters
    ----------
    arch:
        Registry name, used to rebuild the model (``config()["arch"]``).
    arch_kwargs:
        Keyword arguments that, with ``arch``, rebuild this architecture.
    """

    default_probe_layer: str | None = None  # the stage whose output feature transfer reads (None: last)

    def __init__(self, arch: str, arch_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs)
        self.stages = nn.ModuleDict()
        self.head: nn.Module = nn.Identity()
        self.num_classes = 0
        self.feature_dim = 0
        self.cut_at: str | None = None
        self.stage_dims: dict[str, int] = {}
        self.input_spec = InputSpec()
        self.head_hidden = 0  # >0: the head is a bottleneck MLP (Linear → BatchNorm → ReLU → Linear)
        self.head_kind = "linear"  # "cosine": a CosineClassifier (prototypes, zero-shot label embeddings)

    # -- forward ---------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Features ``(B, D)`` after stage ``layer`` (default: the last stage)."""
        if layer is not None and layer not in self.stages:
            raise ValueError(f"unknown layer '{layer}' for {self.arch}; valid layers: {', '.join(self.stages)}")
        for name, stage in self.stages.items():
            x = stage(x)
            if name == layer:
                break
        return self.pool_features(x)

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """A stage's output as a feature vector ``(B, D)``: flattened here; CNNs with feature maps average."""
        return x.flatten(1) if x.ndim > 2 else x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from features ``(B, feature_dim)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- transfer operations ---------------------------------------------------------------------
    def build_head(self, num_classes: int) -> nn.Module:
        """A fresh classifier on ``feature_dim`` features: linear, or with ``head_hidden > 0`` a bottleneck
        ``Linear(feature_dim, head_hidden) → BatchNorm1d → ReLU → Linear(head_hidden, num_classes)`` (the
        domain-adaptation classifier of Ganin et al., 2016 and Long et al., 2018, whose bottleneck output the
        adaptation losses align); with ``head_kind == "cosine"`` a :class:`CosineClassifier`. Subclasses may
        override."""
        if self.head_kind == "cosine":
            return CosineClassifier(self.feature_dim, num_classes)
        if self.head_hidden:
            h = int(self.head_hidden)
            return nn.Sequential(nn.Linear(self.feature_dim, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                                 nn.Linear(h, num_classes))
        return nn.Linear(self.feature_dim, num_classes)

    def probe_head(self, num_classes: int) -> nn.Module:
        """A fresh head for a linear probe on :meth:`forward_features`: one linear layer (composite backbones put
        their fusion layer before it)."""
        return nn.Linear(self.feature_dim, num_classes)

    def set_bottleneck(self, num_classes: int, hidden: int) -> None:
        """Replace the head with a fresh ``num_classes``-way head with a ``hidden``-wide bottleneck (0: linear)."""
        if hidden < 0:
            raise ConfigError("bottleneck", "a whole number ≥ 0 (0: a linear head)", hidden)
        self.head_hidden = int(hidden)
        self.reset_classifier(num_classes)

    def set_cosine_head(self, weight: torch.Tensor) -> None:
        """Replace the head with a :class:`CosineClassifier` whose rows are ``weight`` ``(num_classes, feature_dim)``
        (class prototypes or label embeddings); the bundle records ``head_kind: cosine`` to rebuild it."""
        if weight.ndim != 2 or weight.shape[1] != self.feature_dim:
            raise ValueError(f"cosine head: expected weights (num_classes, {self.feature_dim}), "
                             f"got {tuple(weight.shape)}")
        self.head_kind, self.head_hidden = "cosine", 0
        self.reset_classifier(int(weight.shape[0]))
        with torch.no_grad():
            self.head.weight.copy_(weight)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` classes."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.head = self.build_head(num_classes) if num_classes else nn.Identity()

    def truncate(self, layer: str) -> None:
        """Drop every stage after ``layer``; ``feature_dim`` becomes that stage's width; head is reset."""
        names = list(self.stages)
        if layer not in names:
            raise ValueError(f"unknown layer '{layer}' for {self.arch}; valid layers: {', '.join(names)}")
        for name in names[names.index(layer) + 1 :]:
            del self.stages[name]
        self.cut_at = layer
        self.feature_dim = self.stage_dims[layer]
        self.reset_classifier(self.num_classes)

    def param_groups(self) -> list[ParamGroup]:
        """Parameter groups in input → output order; the head is last. Groups without parameters are left out."""
        groups = [ParamGroup(n, list(m.parameters()), [m]) for n, m in self.stages.items()]
        groups.append(ParamGroup("head", list(self.head.parameters()), [self.head]))
        return [g for g in groups if g.params]

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this architecture (weights aside)."""
        config = {"arch": self.arch, "kwargs": self.arch_kwargs, "num_classes": self.num_classes, "cut_at": self.cut_at}
        if self.head_hidden:
            config["head_hidden"] = self.head_hidden
        if self.head_kind != "linear":
            config["head_kind"] = self.head_kind
        return config

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _register_dims(self) -> None:
        """Record every stage's output width by a dry run at the spec's size."""
        h, w = self.input_spec.size or (32, 32)
        x = torch.zeros(1, self.input_spec.channels, h, w)
        with torch.no_grad():
            was_training = self.training
            self.eval()
            for name, stage in self.stages.items():
                x = stage(x)
                self.stage_dims[name] = int(self.pool_features(x).shape[1])
            self.train(was_training)
        self.feature_dim = self.stage_dims[list(self.stages)[-1]]
