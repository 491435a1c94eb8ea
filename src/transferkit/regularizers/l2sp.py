"""L2-SP: weight decay toward the pretrained weights instead of toward zero.

Li, Grandvalet & Davoine, 2018, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks" (ICML). Plain weight decay pulls every weight toward 0, which forgets what the source learned as
fine-tuning goes on; L2-SP pulls the transferred weights toward their starting point ``w⁰`` (the source's
values) and keeps ordinary L2 only on the new head, which has no pretrained value:

    Ω(w) = α/2 · ||w_S − w⁰_S||²  +  β/2 · ||w_head||²

where ``w_S`` are the transferred parameters (every parameter outside the head). The paper uses L2-SP
*instead of* weight decay; the ``finetune`` strategy therefore sets the optimiser's weight decay to 0 on
its parameter groups when this regulariser is on.

**Scale.** Ω is a penalty on the weights, not a sum over examples, so it means the same beside a batch-mean
cross-entropy at any batch size: α = β = 0.01 (the defaults) are TLlib's ``SPRegularization`` trade-offs
(``--trade-off-backbone``/``--trade-off-head`` 0.01) in the same form; the paper tunes α in 0.01–0.1. How much it
does depends on how far training moves the weights (nothing in 10 steps, more over a few hundred): the run
history's ``reg_ratio`` (the term against the cross-entropy, per epoch) shows it.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.regularizers.base import (
    Batch,
    Regularizer,
    coefficient,
    head_prefix,
    register_regularizer,
    squared_norm,
)


@register_regularizer
class L2SP(Regularizer):
    """``α/2 · Σ ||w − w⁰||²`` over the non-head parameters + ``β/2 · ||w_head||²``.

    Parameters
    ----------
    alpha:
        Strength of the pull toward the starting weights (paper: 0.01–0.1; default 0.01).
    beta:
        Strength of plain L2 on the head (paper: 0.01; default 0.01).
    head:
        Attribute name of the new classifier (``Backbone.head``).

    The starting weights are copied by :meth:`attach` (from ``source`` where a parameter of the same name
    and shape exists there, else from the model as it is at that moment — which, for a model just copied
    from the source, is the same thing). Buffers (BatchNorm statistics) are not weights and are left out.
    """

    name = "l2sp"
    paper = "Li, Grandvalet & Davoine, 2018 (L2-SP)"
    strategy_options = {"alpha": "alpha", "beta": "beta"}
    replaces_weight_decay = True

    def __init__(self, alpha: float = 0.01, beta: float = 0.01, head: str = "head") -> None:
        super().__init__()
        self.alpha, self.beta = coefficient("l2sp", "alpha", alpha), coefficient("l2sp", "beta", beta)
        self.head = head
        self._reference: dict[str, torch.Tensor] = {}

    def attach(self, model: nn.Module, source: nn.Module | None = None, data: Batch | None = None) -> L2SP:
        prefix = head_prefix(model, self.head)
        src = dict(source.named_parameters()) if source is not None else {}
        self._reference = {}
        for n, p in model.named_parameters():
            if n.startswith(prefix):
                continue
            ref = src.get(n)
            ref = ref if ref is not None and ref.shape == p.shape else p
            self._reference[n] = ref.detach().clone()
        return self

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The penalty for ``model``'s current weights (``x``, ``y``, ``logits`` are not used)."""
        if not self._reference:
            raise RuntimeError("l2sp: call attach(model, source) before training")
        prefix = head_prefix(model, self.head)
        params = dict(model.named_parameters())
        missing = [n for n in self._reference if n not in params]
        if missing:
            raise ValueError(f"l2sp: the model lacks attached parameter(s) {missing[:5]}; attach to this model")
        diffs = []
        for n, ref in self._reference.items():
            p = params[n]
            if ref.device != p.device:  # the engine may move the model after attach: follow it once
                ref = self._reference[n] = ref.to(p.device)
            diffs.append(p - ref)
        head = [p for n, p in params.items() if n.startswith(prefix)]
        device = logits.device
        return (0.5 * self.alpha * squared_norm(diffs, device) + 0.5 * self.beta * squared_norm(head, device))
