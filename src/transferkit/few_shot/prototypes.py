"""Prototypes: classify by the nearest class mean in feature space, with no training at all.

Snell et al., 2017, "Prototypical Networks for Few-shot Learning": a class is represented by the mean of its
support examples' features and a query goes to the nearest mean. We measure nearness by cosine similarity, as
Chen et al., 2019 ("A Closer Look at Few-shot Classification") found best for frozen pretrained features: each
feature vector is L2-normalised before averaging, and the class means are compared by direction. The result
is an ordinary cosine classifier head (:class:`~transferkit.backbones.base.CosineClassifier`) on the frozen
backbone, so a prototype model is saved, exported and served like any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Unit-length class means ``(num_classes, D)`` of L2-normalised ``features`` ``(N, D)``.

    Every class needs at least one example; the error names the empty ones.
    """
    labels = labels.long()
    counts = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(f"prototypes: classes {empty} have no examples; every class needs at least one")
    f = F.normalize(features.float(), dim=1)
    sums = torch.zeros(num_classes, f.shape[1]).index_add_(0, labels, f)
    return F.normalize(sums / counts.unsqueeze(1), dim=1)


def cosine_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``(N, C)`` between ``features`` ``(N, D)`` and ``prototypes`` ``(C, D)``."""
    return F.normalize(features.float(), dim=1) @ F.normalize(prototypes.float(), dim=1).T
