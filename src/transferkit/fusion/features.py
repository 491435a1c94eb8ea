"""Feature fusion: one representation from several feature extractors, for a head trained on top.

Different pretrained backbones see different things (a supervised CNN, a self-supervised ViT); feeding a head
their joint features can beat each alone — the "off-the-shelf" CNN features of Razavian, Azizpour, Sullivan &
Carlsson, 2014, "CNN Features off-the-shelf: an Astounding Baseline for Recognition", combined. The ways to join
them (:data:`FUSION_MODES`):

* ``concat`` — concatenation (optionally each first projected to ``width``): keeps everything, widest output;
* ``sum`` — each projected to ``width``, then a weighted sum with learnable softmax-normalised weights (a convex
  combination, so the scale does not drift and the weights say which extractor the head relies on);
* ``product`` — element-wise product of the projections (multiplicative interactions, as in bilinear pooling);
* ``max`` — element-wise maximum of the projections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

FUSION_MODES: tuple[str, ...] = ("concat", "sum", "product", "max")


def _as_module(extractor: object, i: int) -> nn.Module:
    # A bound ``backbone.forward_features`` is unwrapped to its module, so its parameters are registered and move
    # with ``.to(device)``.
    owner = getattr(extractor, "__self__", None)
    if isinstance(owner, nn.Module) and getattr(extractor, "__name__", "") == "forward_features":
        return owner
    if isinstance(extractor, nn.Module):
        return extractor
    raise TypeError(f"feature fusion: extractor {i} must be an nn.Module (ideally with forward_features) or a "
                    f"module's bound forward_features, got {type(extractor).__name__}")


class FusedFeatures(nn.Module):
    """Fuse the features ``(B, D_i)`` of several extractors into one ``(B, feature_dim)`` vector.

    Parameters
    ----------
    extractors :
        Modules whose ``forward_features(x)`` (or, without one, ``forward(x)``) returns ``(B, D_i)`` — e.g.
        :class:`transferkit.backbones.base.Backbone` instances; a bound ``backbone.forward_features`` is accepted
        too. Kept in an ``nn.ModuleList``: they train with the fusion unless the caller freezes them.
    mode :
        One of :data:`FUSION_MODES`.
    width :
        The common projection width. Required for ``sum``/``product``/``max`` (each extractor gets its own
        ``Linear(D_i, width)``); for ``concat`` optional: ``None`` concatenates the raw features
        (``feature_dim = Σ D_i``), an int projects each first (``feature_dim = M · width``).
    dims :
        The extractors' output widths ``D_i``; by default each extractor's ``feature_dim`` attribute.
    adapters :
        Per extractor, an optional callable ``x -> x_i`` applied before it (``None``: identity). One input ``x`` is
        fed to all extractors, but they often expect different preprocessing (resolution, channels,
        normalisation statistics: see each backbone's ``input_spec``); adapters convert ``x`` for each. ``forward``
        also accepts a list of ``M`` ready per-extractor inputs instead.
    """

    def __init__(self, extractors: Sequence[nn.Module | Callable[[torch.Tensor], torch.Tensor]], mode: str = "concat",
                 width: int | None = None, dims: Sequence[int] | None = None,
                 adapters: Sequence[Callable[[torch.Tensor], torch.Tensor] | None] | None = None) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown feature-fusion mode {mode!r}; valid modes: {', '.join(FUSION_MODES)}")
        if not extractors:
            raise ValueError("feature fusion: needs at least one extractor")
        self.extractors = nn.ModuleList([_as_module(e, i) for i, e in enumerate(extractors)])
        m = len(self.extractors)
        if dims is None:
            missing = [i for i, e in enumerate(self.extractors) if not getattr(e, "feature_dim", 0)]
            if missing:
                raise ValueError(f"feature fusion: extractors {missing} have no feature_dim; pass dims=")
            dims = [int(e.feature_dim) for e in self.extractors]  # type: ignore[arg-type]
        self.dims = [int(d) for d in dims]
        if len(self.dims) != m or min(self.dims) < 1:
            raise ValueError(f"feature fusion: needs one positive width per extractor ({m}), got dims {self.dims}")
        self.adapters = list(adapters) if adapters is not None else [None] * m
        if len(self.adapters) != m:
            raise ValueError(f"feature fusion: {m} extractors but {len(self.adapters)} adapters")
        if width is None and mode != "concat":
            raise ValueError(f"feature fusion: mode {mode!r} needs a common projection width (width=)")
        if width is not None and width < 1:
            raise ValueError(f"feature fusion: width must be >= 1, got {width}")
        self.mode, self.width = mode, width
        self.projections = nn.ModuleList([nn.Linear(d, width) for d in self.dims]) if width else None
        self.mix_logits = nn.Parameter(torch.zeros(m)) if mode == "sum" else None
        self.feature_dim = sum(self.dims) if width is None else (m * width if mode == "concat" else width)

    def mixing_weights(self) -> torch.Tensor:
        """The ``sum`` mode's weights ``(M,)`` (softmax of learnable logits; they sum to 1)."""
        if self.mix_logits is None:
            raise ValueError(f"feature fusion: mode {self.mode!r} has no mixing weights (only 'sum')")
        return torch.softmax(self.mix_logits, dim=0)

    def member_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each extractor's (projected, when ``width`` is set) features, ``(B, D_i)`` or ``(B, width)``."""
        m = len(self.extractors)
        if isinstance(x, (list, tuple)):
            if len(x) != m:
                raise ValueError(f"feature fusion: {m} extractors but {len(x)} per-extractor inputs")
            inputs = list(x)
        else:
            inputs = [x if a is None else a(x) for a in self.adapters]
        feats = []
        for i, (extractor, xi) in enumerate(zip(self.extractors, inputs, strict=True)):
            f = extractor.forward_features(xi) if hasattr(extractor, "forward_features") else extractor(xi)
            if f.ndim != 2 or f.shape[1] != self.dims[i]:
                raise ValueError(f"feature fusion: extractor {i} returned shape {tuple(f.shape)}, expected "
                                 f"(B, {self.dims[i]})")
            feats.append(self.projections[i](f) if self.projections is not None else f)
        return feats

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Fused features ``(B, feature_dim)``."""
        feats = self.member_features(x)
        if self.mode == "concat":
            return torch.cat(feats, dim=1)
        stacked = torch.stack(feats, dim=1)  # (B, M, width)
        if self.mode == "sum":
            return (self.mixing_weights().view(1, -1, 1) * stacked).sum(1)
        if self.mode == "product":
            return stacked.prod(1)
        return stacked.amax(1)

    def forward_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Same as :meth:`forward`: the fusion is itself an extractor (it can be nested, or fed to a head)."""
        return self(x)
