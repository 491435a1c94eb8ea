"""Feature fusion: one representation from several feature extractors, for a head trained on top.

Different pretrained backbones see different things (a supervised CNN, a self-supervised ViT); feeding a head
their joint features can beat each alone — the "off-the-shelf" CNN features of Razavian, Azizpour, Sullivan &
Carlsson, 2014, "CNN Features off-the-shelf: an Astounding Baseline for Recognition", combined. The ways to join
them (:data:`FUSION_MODES`) are those of :class:`~transferkit.backbones.fused.FeatureCombiner`: ``concat``,
``sum`` (learnable convex weights), ``product`` and ``max`` (after projecting to a common ``width``).

:class:`FusedFeatures` fuses arbitrary extractor modules (with per-extractor ``adapters``) — a building block for
your own models. To *train* a fused model with transferkit's strategies and save it as a bundle, use
:class:`~transferkit.backbones.fused.FeatureFusionBackbone` (``--source fuse:MODE:A+B`` on the command line),
which fuses backbones, each with its own preprocessing, and puts the fusion layer in the head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from transferkit.backbones.fused import FUSION_MODES, FeatureCombiner

__all__ = ["FUSION_MODES", "FusedFeatures"]


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
        FeatureCombiner([1], mode, width)  # validates mode and width before touching the extractors
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
        self.combiner = FeatureCombiner(self.dims, mode, width)
        self.mode, self.width = mode, width
        self.feature_dim = self.combiner.feature_dim

    @property
    def projections(self) -> nn.ModuleList | None:
        """The per-extractor projections to ``width`` (``None`` for a raw concatenation)."""
        return self.combiner.projections

    @property
    def mix_logits(self) -> nn.Parameter | None:
        """The ``sum`` mode's learnable mixing logits."""
        return self.combiner.mix_logits

    def mixing_weights(self) -> torch.Tensor:
        """The ``sum`` mode's weights ``(M,)`` (softmax of learnable logits; they sum to 1)."""
        return self.combiner.mixing_weights()

    def _raw_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        m = len(self.extractors)
        inputs = list(x) if isinstance(x, (list, tuple)) else [x if a is None else a(x) for a in self.adapters]
        if len(inputs) != m:
            raise ValueError(f"feature fusion: {m} extractors but {len(inputs)} per-extractor inputs")
        return [e.forward_features(xi) if hasattr(e, "forward_features") else e(xi)
                for e, xi in zip(self.extractors, inputs, strict=True)]

    def member_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each extractor's (projected, when ``width`` is set) features, ``(B, D_i)`` or ``(B, width)``."""
        return self.combiner.project(self._raw_features(x))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Fused features ``(B, feature_dim)``."""
        return self.combiner(self._raw_features(x))

    def forward_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Same as :meth:`forward`: the fusion is itself an extractor (it can be nested, or fed to a head)."""
        return self(x)
