"""The network domain adaptation trains: a feature extractor, a bottleneck, a classifier.

:class:`AdaptNet` exposes the two calls the adaptation loop needs, ``embed`` (input → the features the
methods align: the bottleneck's output) and ``classify`` (features → logits). It wraps either a whole
:class:`~transferkit.backbones.base.Backbone` whose head is a bottleneck MLP (``Backbone.set_bottleneck``),
or — for frozen-feature adaptation on cached features — that head alone, fed with precomputed features.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import Backbone


def _split(head: nn.Module) -> tuple[nn.Module, nn.Module]:
    if isinstance(head, nn.Sequential) and len(head) > 1:
        return head[:-1], head[-1]
    return nn.Identity(), head


class AdaptNet(nn.Module):
    """``embed(x)`` = bottleneck(backbone features) (or bottleneck(x) for precomputed features); ``classify(f)``
    = the last linear layer. ``forward = classify ∘ embed``."""

    def __init__(self, backbone: Backbone | None, head: nn.Module | None = None) -> None:
        super().__init__()
        if (backbone is None) == (head is None):
            raise ValueError("AdaptNet needs a backbone (whole network) or a head (precomputed features), not both")
        self.backbone = backbone
        self._head = head  # only for precomputed features; otherwise the backbone's head
        self.bottleneck, self.classifier = _split(backbone.head if backbone is not None else head)

    @property
    def feature_dim(self) -> int:
        return int(self.classifier.in_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            x = self.backbone.forward_features(x)
        return self.bottleneck(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))
