"""Domain-adaptation losses as plain modules, kept apart from the training loop (the TLlib pattern).

Each takes source and target batches of features (or logits) and returns a scalar to add to the source
cross-entropy; the loop that draws the two batches together comes with the ``adapt`` job.

* :class:`GradientReversal` / :func:`dann_coefficient` — Ganin & Lempitsky, 2015 (DANN): identity forward,
  gradient × ``−λ`` backward, with λ warmed up as ``2 / (1 + exp(−10 p)) − 1`` over training progress ``p``.
* :func:`coral_loss` — Sun & Saenko, 2016, "Deep CORAL": ``‖C_s − C_t‖²_F / (4 d²)`` between the feature
  covariances.
* :func:`mk_mmd_loss` — Long, Cao, Wang & Jordan, 2015, "Learning Transferable Features with Deep Adaptation
  Networks" (DAN): multi-kernel MMD² with Gaussian kernels around the batch's mean squared distance
  (biased estimate, as in DAN's training objective; differentiable).
* :func:`entropy` — mean prediction entropy, used by CDAN+E's weighting and as a label-free selection score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: ANN001
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.coeff * grad, None


class GradientReversal(nn.Module):
    """Identity in the forward pass; multiplies the gradient by ``−coeff`` in the backward pass (DANN)."""

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Reverse.apply(x, self.coeff)


def dann_coefficient(progress: float, gamma: float = 10.0, high: float = 1.0) -> float:
    """DANN's warm-up of the reversal coefficient: ``high · (2 / (1 + exp(−γ p)) − 1)`` for progress ``p`` ∈ [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return float(high * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0))


def _pair(source: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"{what}: needs (B, D) source and target features of the same width, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    if len(source) < 2 or len(target) < 2:
        raise ValueError(f"{what}: needs at least 2 samples per domain in a batch")


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the two feature covariances, divided by ``4 d²``."""
    _pair(source, target, "coral")
    d = source.shape[1]
    cs, ct = torch.cov(source.T), torch.cov(target.T)
    return (cs - ct).pow(2).sum() / (4 * d * d)


def mk_mmd_loss(source: torch.Tensor, target: torch.Tensor,
                kernel_mults: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """DAN's multi-kernel MMD²: Gaussian kernels with bandwidths ``mult ·`` the batch's mean squared distance."""
    _pair(source, target, "mk-mmd")
    x = torch.cat([source, target])
    d2 = torch.cdist(x, x).pow(2)
    base = d2.detach().sum() / (len(x) ** 2 - len(x))
    k = sum(torch.exp(-d2 / (base * m).clamp_min(1e-12)) for m in kernel_mults)
    m = len(source)
    return k[:m, :m].mean() + k[m:, m:].mean() - 2 * k[:m, m:].mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax predictions."""
    p = F.softmax(logits, dim=1)
    return -(p * F.log_softmax(logits, dim=1)).sum(1).mean()
