"""Composite backbones: several backbones behind one input, their features fused for one head.

Different pretrained extractors see different things — an ImageNet CNN knows textures and shapes of natural
images, a CNN pretrained on the source task knows its classes — and a head on their *joint* features can beat
either alone (the off-the-shelf features of Razavian, Azizpour, Sullivan & Carlsson, 2014, "CNN Features
off-the-shelf: an Astounding Baseline for Recognition", combined as in multi-stream / late feature fusion).

:class:`FeatureFusionBackbone` is an ordinary :class:`~transferkit.backbones.base.Backbone` (architecture
``fused_features``), so every strategy, bundle, ``predict`` and ``evaluate`` handles it:

* **input** — one image, scaled to ``[0, 1]`` (mean 0, std 1 in :attr:`input_spec`) at the largest member's size
  with the most channels any member takes (:func:`joint_input_spec`); each member then converts it to *its own*
  input — size, channels, normalisation — with :func:`member_input`. So a 96-px colour ImageNet network and a
  28-px grey CNN fuse without a common preprocessing;
* **features** (:meth:`FeatureFusionBackbone.forward_features`) — the members' feature vectors, concatenated raw
  ``(B, Σ D_i)``; this is what a linear probe caches;
* **head** — :class:`FeatureCombiner` (the fusion proper: concatenation, or a projection of every member to a
  common ``width`` followed by a learnable convex sum, an element-wise product or an element-wise max) followed by
  the classifier. The fusion layer belongs to the head, so a *linear probe* trains the projections together with
  the classifier on cached features (a fused probe is no longer strictly linear in the features, only in the
  projections), *fine-tuning* trains members, fusion and classifier, and *scratch* rebuilds every member with
  random weights (:meth:`FeatureFusionBackbone.config` records each member's architecture);
* **parameter groups** — the members' groups interleaved from the output end (each member's last stage next to
  the others' last stages, …, the head last), so freezing the first ``n`` groups freezes the lowest stages, and
  layer-wise learning-rate decay gives stages at the same distance from the output similar rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.backbones.base import Backbone, InputSpec, ParamGroup

FUSION_MODES: tuple[str, ...] = ("concat", "sum", "product", "max")
FUSED_FEATURES_ARCH = "fused_features"

_LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" conversion


def joint_input_spec(members: Sequence[Backbone]) -> InputSpec:
    """The input every member can be made from: ``[0, 1]`` pixels (mean 0, std 1), the most channels any member
    takes, the largest member size (``None`` when no member has a fixed size). When every member takes photos the
    ``shorter_crop`` way, so does the joint input (the largest crop_pct: the least any member crops; their common
    interpolation, else bilinear) and each member resizes that square crop; otherwise ``squash``."""
    if not members:
        raise ValueError("a composite model needs at least one member")
    modalities = {m.input_spec.modality for m in members}
    if modalities != {"image"}:
        raise ValueError(f"composite models fuse image backbones only; members take {sorted(modalities)}")
    channels = max(m.input_spec.channels for m in members)
    sizes = [tuple(m.input_spec.size) for m in members if m.input_spec.size]
    size = max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
    resize: dict[str, Any] = {}
    specs = [m.input_spec for m in members]
    if size and all(s.resize == "shorter_crop" for s in specs):
        modes = {s.interpolation for s in specs}
        resize = {"resize": "shorter_crop", "crop_pct": max(s.crop_pct for s in specs),
                  "interpolation": modes.pop() if len(modes) == 1 else "bilinear"}
    return InputSpec(channels=channels, size=size, mean=(0.0,) * channels, std=(1.0,) * channels,
                     min_size=max(m.input_spec.min_size for m in members), **resize)


def member_input(spec: InputSpec, x: torch.Tensor) -> torch.Tensor:
    """Images ``x`` ``(B, C, H, W)`` in ``[0, 1]`` → the input a model with ``spec`` expects: channels converted
    (grey → colour by repetition, colour → grey by luminance), resized (bilinear, antialiased) and normalised.
    (Resizing in floating point, not on ``uint8`` as :mod:`transferkit.data.prepare` does, can move a member's
    output by a rounding error.) Inputs that are not image batches pass through unchanged."""
    if x.ndim != 4:
        return x
    c = x.shape[1]
    if spec.channels != c:
        if c == 1:
            x = x.expand(-1, spec.channels, -1, -1)
        elif spec.channels == 1:
            x = (x[:, :3] * x.new_tensor(_LUMINANCE).view(1, 3, 1, 1)).sum(1, keepdim=True)
        else:
            x = x[:, : spec.channels]
    if spec.size and tuple(x.shape[-2:]) != tuple(spec.size):
        x = F.interpolate(x, size=tuple(spec.size), mode="bilinear", antialias=True, align_corners=False)
    mean = x.new_tensor(spec.mean).view(1, -1, 1, 1)
    std = x.new_tensor(spec.std).view(1, -1, 1, 1)
    return (x - mean) / std


def members_from_config(configs: Sequence[dict[str, Any]], build: Any) -> list[Backbone]:
    """Rebuild a composite model's members (random weights) from their configs, each with its recorded input spec;
    ``build`` is :func:`~transferkit.backbones.registry.build_from_config`."""
    members = []
    for i, mc in enumerate(configs):
        member = build({k: v for k, v in mc.items() if k != "input_spec"})
        spec = InputSpec.from_dict(mc["input_spec"])
        spec.check_fits(member.input_spec, f"kwargs.members[{i}].input_spec")  # a spec the member cannot take
        member.input_spec = spec
        members.append(member)
    return members


class FeatureCombiner(nn.Module):
    """Fuse per-extractor features ``(B, D_i)`` into one ``(B, feature_dim)`` vector (:data:`FUSION_MODES`).

    * ``concat`` — concatenation (with ``width``, each first projected to ``width``): keeps everything;
    * ``sum`` — each projected to ``width``, then a convex combination with learnable softmax-normalised weights
      (the scale does not drift, and :meth:`mixing_weights` says which extractor the head relies on);
    * ``product`` — element-wise product of the projections (multiplicative interactions, as in bilinear pooling);
    * ``max`` — element-wise maximum of the projections.

    ``forward`` takes a list of ``M`` feature tensors or their concatenation ``(B, Σ D_i)`` (split by ``dims``).
    """

    def __init__(self, dims: Sequence[int], mode: str = "concat", width: int | None = None) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown feature-fusion mode {mode!r}; valid modes: {', '.join(FUSION_MODES)}")
        self.dims = [int(d) for d in dims]
        if not self.dims or min(self.dims) < 1:
            raise ValueError(f"feature fusion: needs one positive width per extractor, got dims {self.dims}")
        if width is None and mode != "concat":
            raise ValueError(f"feature fusion: mode {mode!r} needs a common projection width (width=)")
        if width is not None and (isinstance(width, bool) or int(width) < 1):
            raise ValueError(f"feature fusion: width must be >= 1, got {width}")
        m = len(self.dims)
        self.mode, self.width = mode, (int(width) if width is not None else None)
        self.projections = nn.ModuleList([nn.Linear(d, self.width) for d in self.dims]) if self.width else None
        self.mix_logits = nn.Parameter(torch.zeros(m)) if mode == "sum" else None
        if self.width is None:
            self.feature_dim = sum(self.dims)
        else:
            self.feature_dim = m * self.width if mode == "concat" else self.width

    def mixing_weights(self) -> torch.Tensor:
        """The ``sum`` mode's weights ``(M,)`` (softmax of learnable logits; they sum to 1)."""
        if self.mix_logits is None:
            raise ValueError(f"feature fusion: mode {self.mode!r} has no mixing weights (only 'sum')")
        return torch.softmax(self.mix_logits, dim=0)

    def project(self, feats: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-extractor features, projected to ``width`` when it is set."""
        if isinstance(feats, torch.Tensor):
            if feats.ndim != 2 or feats.shape[1] != sum(self.dims):
                raise ValueError(f"feature fusion: expected concatenated features (B, {sum(self.dims)}), got "
                                 f"{tuple(feats.shape)}")
            feats = list(torch.split(feats, self.dims, dim=1))
        if len(feats) != len(self.dims):
            raise ValueError(f"feature fusion: {len(self.dims)} extractors but {len(feats)} feature tensors")
        for i, f in enumerate(feats):
            if f.ndim != 2 or f.shape[1] != self.dims[i]:
                raise ValueError(f"feature fusion: extractor {i} gave shape {tuple(f.shape)}, expected "
                                 f"(B, {self.dims[i]})")
        return [p(f) for p, f in zip(self.projections, feats, strict=True)] if self.projections is not None \
            else list(feats)

    def forward(self, feats: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        parts = self.project(feats)
        if self.mode == "concat":
            return torch.cat(parts, dim=1)
        stacked = torch.stack(parts, dim=1)  # (B, M, width)
        if self.mode == "sum":
            return (self.mixing_weights().view(1, -1, 1) * stacked).sum(1)
        if self.mode == "product":
            return stacked.prod(1)
        return stacked.amax(1)


class FeatureFusionBackbone(Backbone):
    """Members' features fused by :class:`FeatureCombiner` in the head; see the module docstring.

    Parameters
    ----------
    members :
        Backbones (their heads are dropped; pass trained or pretrained ones — their weights are kept).
    mode, width :
        The fusion (:class:`FeatureCombiner`): ``width`` is required for ``sum``/``product``/``max``.
    num_classes :
        Size of the new head (0: none yet, as for a source; strategies call :meth:`reset_classifier`).
    """

    def __init__(self, members: Sequence[Backbone], mode: str = "concat", width: int | None = None,
                 num_classes: int = 0) -> None:
        if len(members) < 2:
            raise ValueError(f"feature fusion needs at least 2 members, got {len(members)}")
        FeatureCombiner([1] * len(members), mode, width)  # validates mode and width before any work
        super().__init__(FUSED_FEATURES_ARCH, {"mode": mode, "width": width})
        self.input_spec = joint_input_spec(members)
        for m in members:
            m.reset_classifier(0)
        self.members = nn.ModuleList(members)
        self.mode, self.width = mode, width
        self.member_dims = [int(m.feature_dim) for m in members]
        self.feature_dim = sum(self.member_dims)
        self.reset_classifier(num_classes)

    # -- forward ----------------------------------------------------------------------------------
    def member_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's features ``(B, D_i)``, each computed from its own preprocessing of ``x``."""
        return [m.forward_features(member_input(m.input_spec, x)) for m in self.members]

    def forward_features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        if layer is not None:
            raise ValueError(f"{self.arch}: features are read after every member's last stage; truncate members "
                             f"before fusing them instead of asking for layer '{layer}'")
        return torch.cat(self.member_features(x), dim=1)

    def combiner(self) -> FeatureCombiner:
        """The head's fusion layer."""
        return self.head[0]  # type: ignore[index,return-value]

    # -- transfer operations ----------------------------------------------------------------------
    def build_head(self, num_classes: int) -> nn.Module:
        """The fusion layer followed by a classifier (linear, or the bottleneck MLP with ``head_hidden``)."""
        combiner = FeatureCombiner(self.member_dims, self.mode, self.width)
        saved, self.feature_dim = self.feature_dim, combiner.feature_dim  # the classifier reads fused features
        try:
            classifier = super().build_head(num_classes)
        finally:
            self.feature_dim = saved
        return nn.Sequential(combiner, classifier)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fusion layer + classifier (with ``num_classes == 0``: the fusion layer alone, no classifier)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.head = self.build_head(num_classes) if num_classes else \
            nn.Sequential(FeatureCombiner(self.member_dims, self.mode, self.width))

    def probe_head(self, num_classes: int) -> nn.Module:
        """For a linear probe: a fresh fusion layer + linear classifier (the projections train with it)."""
        combiner = FeatureCombiner(self.member_dims, self.mode, self.width)
        return nn.Sequential(combiner, nn.Linear(combiner.feature_dim, num_classes))

    def truncate(self, layer: str) -> None:
        raise ValueError(f"{self.arch}: cannot cut a fused backbone at '{layer}'; truncate each member (e.g. a "
                         "linear-probe run of it) before fusing")

    def param_groups(self) -> list[ParamGroup]:
        """Members' groups (named ``m<i>.<group>``) interleaved from the output end, then the head."""
        per_member = [[g for g in m.param_groups() if g.name != "head"] for m in self.members]
        depth = max((len(gs) for gs in per_member), default=0)
        groups: list[ParamGroup] = []
        for level in range(depth):  # level 0 = the deepest member's first group
            for i, gs in enumerate(per_member):
                j = level - (depth - len(gs))  # members aligned at their last stage
                if j >= 0:
                    groups.append(ParamGroup(f"m{i}.{gs[j].name}", gs[j].params, gs[j].modules))
        groups.append(ParamGroup("head", list(self.head.parameters()), [self.head]))
        return [g for g in groups if g.params]

    # -- rebuilding -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        members = [{**m.config(), "input_spec": m.input_spec.to_dict()} for m in self.members]
        config: dict[str, Any] = {"arch": self.arch, "kwargs": {**self.arch_kwargs, "members": members},
                                  "num_classes": self.num_classes, "cut_at": None}
        if self.head_hidden:
            config["head_hidden"] = self.head_hidden
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Any) -> FeatureFusionBackbone:
        """Rebuild (random weights) from :meth:`config`; ``build`` rebuilds one member from its config."""
        kwargs = dict(config["kwargs"])
        model = cls(members_from_config(kwargs.pop("members"), build), **kwargs)
        if config.get("head_hidden"):
            model.head_hidden = int(config["head_hidden"])
        model.reset_classifier(int(config.get("num_classes") or 0))
        return model
