"""SetFit-style few-shot learning: contrastive fine-tuning of the encoder on pairs, then a logistic-regression head.

Tunstall et al., 2022, "Efficient Few-Shot Learning Without Prompts": from a handful of labelled examples,
generate many sentence pairs — two examples of the same class form a positive pair (target cosine 1), two of
different classes a negative one (target 0) — and fine-tune the sentence encoder so that the cosine similarity
of each pair's embeddings regresses to its target (sentence-transformers' ``CosineSimilarityLoss``: mean squared
error). With K examples per class there are O((KC)²) possible pairs, which is what makes eight examples per
class enough to move a 22 M-parameter encoder. A logistic-regression classifier is then fitted on the
fine-tuned embeddings of the same labelled examples (scikit-learn), and becomes the model's linear head.

Pair generation follows SetFit's ``num_iterations`` scheme: for every labelled example and every iteration, one
positive and one negative partner drawn at random (so ``2 · iterations · N`` pairs), capped by ``max_pairs``.
Nothing here is text-specific: the same recipe fine-tunes an image backbone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CosinePairLoss", "fit_logistic_head", "make_pairs"]


def make_pairs(labels: np.ndarray | torch.Tensor, iterations: int = 20, seed: int = 0,
               max_pairs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pairs (P, 2) int64, targets (P,) float)``: per example and iteration one positive and one negative pair.

    A class with a single example has no positive partner; it still gets negatives. At least two classes are
    needed. ``max_pairs`` keeps a random subset (the cost of a run is linear in the number of pairs).
    """
    y = np.asarray(labels, dtype=np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"contrastive pairs need at least 2 classes, got {len(classes)}")
    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations}")
    rng = np.random.default_rng(seed)
    members = {c: np.flatnonzero(y == c) for c in classes}
    others = {c: np.flatnonzero(y != c) for c in classes}
    pairs, targets = [], []
    for _ in range(iterations):
        for i, c in enumerate(y):
            same = members[c][members[c] != i]
            if len(same):
                pairs.append((i, int(rng.choice(same))))
                targets.append(1.0)
            pairs.append((i, int(rng.choice(others[c]))))
            targets.append(0.0)
    p, t = torch.tensor(pairs, dtype=torch.int64), torch.tensor(targets, dtype=torch.float32)
    if max_pairs is not None and len(p) > max_pairs:
        keep = torch.from_numpy(rng.permutation(len(p))[:max_pairs])
        p, t = p[keep], t[keep]
    return p, t


class CosinePairLoss(nn.Module):
    """Mean squared error between ``cos(u, v)`` and the pair's target (1: same class, 0: different classes).

    Shapes: ``u``, ``v`` ``(B, D)``; ``target`` ``(B,)``; returns a scalar. This is sentence-transformers'
    ``CosineSimilarityLoss``, SetFit's default body loss (Tunstall et al., 2022).
    """

    def forward(self, u: torch.Tensor, v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(F.cosine_similarity(u, v, dim=1), target.to(u.dtype))


def fit_logistic_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0,
                      c: float = 1.0, max_iter: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression (scikit-learn, L2, ``C=c``) on ``features``: ``(weight (num_classes, D), bias)`` of a
    linear head with the same decisions and probabilities (binary problems are written as two rows)."""
    from sklearn.linear_model import LogisticRegression

    y = labels.numpy()
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError("the logistic-regression head needs examples of at least 2 classes")
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(features.numpy().astype(np.float64), y)
    d = features.shape[1]
    weight, bias = torch.zeros(num_classes, d), torch.full((num_classes,), -1e4)  # absent classes: never chosen
    coef, intercept = torch.from_numpy(clf.coef_).float(), torch.from_numpy(clf.intercept_).float()
    if len(present) == 2:  # one decision function: log-odds of class present[1] over present[0]
        weight[present[1]], bias[present[1]] = coef[0], intercept[0]
        bias[present[0]] = 0.0
    else:
        weight[present], bias[present] = coef, intercept
    return weight, bias
