"""Batch Spectral Shrinkage (BSS): shrink the smallest singular values of the batch's feature matrix.

Chen, Wang, Fu, Long & Wang, 2019, "Catastrophic Forgetting Meets Negative Transfer: Batch Spectral
Shrinkage for Safe Transfer Learning" (NeurIPS). The authors find that the feature directions with small
singular values are the ones that transfer poorly (negative transfer) and are not needed by the target,
so they penalise them:

    L_bss(F) = η · Σ_{i=1..k} σ²_{-i}(F) / B

where ``F`` is the ``(B, D)`` matrix of a batch's features (the input of the classifier) and ``σ_{-i}`` its
``i``-th smallest singular value (paper: ``k = 1``, ``η = 0.001``).

**Scale (calibrated for a batch-mean loss).** The paper and TLlib (``tllib.regularization.bss``, added to the
batch-*mean* cross-entropy with trade-off 0.001 at batch 48) use the raw sum ``Σσ²``, which grows with the batch
size (σ² of a ``(B, D)`` matrix is a sum over its ``B`` rows), so the same η means a different strength at
another batch size. We divide by ``B`` — a per-example term like the cross-entropy it is added to — and set the
default ``η = 0.048 = 0.001 × 48``: exactly TLlib's strength at its batch of 48, and the same strength at any
other batch size. The run history's ``reg_ratio`` (the term against the cross-entropy, per epoch) shows how
strong it was.

How the features are read: a forward *pre*-hook on the model's head records the head's input during the
training forward pass, i.e. exactly ``forward_features(x)``, so BSS costs one SVD of a ``(B, D)`` matrix per
step and no extra forward pass. Called without a preceding forward (a test, a custom loop), it recomputes
``model.forward_features(x)``.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.regularizers.base import Batch, Regularizer, coefficient, register_regularizer

DEFAULT_ETA = 0.001 * 48  # TLlib's trade-off on the raw Σσ² at its batch of 48, as a per-example (batch-mean) term


def batch_spectral_shrinkage(features: torch.Tensor, k: int = 1) -> torch.Tensor:
    """``Σ`` of the ``k`` smallest squared singular values of ``features`` ``(B, D)`` (a scalar).

    ``k`` larger than ``min(B, D)`` (the number of singular values) uses all of them. Computed in float32.
    """
    if features.ndim != 2:
        raise ValueError(f"bss: features must be (B, D), got shape {tuple(features.shape)}")
    sigma = torch.linalg.svdvals(features.float())  # descending order
    k = min(k, sigma.numel())
    return sigma[sigma.numel() - k :].pow(2).sum()


@register_regularizer
class BatchSpectralShrinkage(Regularizer):
    """``η · Σ_{i=1..k} σ²_{-i}(F) / B`` on the batch features ``F`` ``(B, D)`` that enter the head.

    Parameters
    ----------
    eta:
        Strength ``η`` of the batch-mean term (default 0.048: the paper's and TLlib's 0.001 on the raw sum at
        TLlib's batch of 48; see the module docstring).
    k:
        How many of the smallest singular values to shrink (paper: 1).
    head:
        Attribute name of the classifier whose input is the feature matrix.
    """

    name = "bss"
    paper = "Chen et al., 2019 (BSS)"
    strategy_options = {"alpha": "eta", "k": "k"}

    def __init__(self, eta: float = DEFAULT_ETA, k: int = 1, head: str = "head") -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"bss: k must be a positive integer, got {k!r}")
        self.eta, self.k, self.head = coefficient("bss", "eta", eta), k, head
        self._features: torch.Tensor | None = None

    def attach(self, model: nn.Module, source: nn.Module | None = None,
               data: Batch | None = None) -> BatchSpectralShrinkage:
        self.detach()
        head = getattr(model, self.head, None)
        if not isinstance(head, nn.Module):
            raise ValueError(f"bss: the model has no '{self.head}' submodule to read features from")
        self._hook(head.register_forward_pre_hook(self._record))
        return self

    def _record(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        # only training forwards (gradients on) are recorded: validation and prediction run without them
        if torch.is_grad_enabled():
            self._features = args[0]

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The penalty for the batch ``x``, from the features recorded during the forward that made ``logits``."""
        f, self._features = self._features, None
        if f is None or f.shape[0] != x.shape[0]:
            f = model.forward_features(x)
        f = f.flatten(1)
        return self.eta * batch_spectral_shrinkage(f, self.k) / f.shape[0]
