"""Adaptive (input-dependent) fusion: a gating network chooses, per input, how much to trust each member.

A fixed weight vector (:func:`transferkit.fusion.ensemble.fit_weights`) trusts a member equally everywhere; when
members are good in different regions of the input space (one on daylight images, another at night), a gate that
looks at the input can route each sample to the member that is right there. This is the mixture of experts of
Jacobs, Jordan, Nowlan & Hinton, 1991, "Adaptive Mixtures of Local Experts", with the experts (the members) fixed
and only the gate trained — on held-out member predictions, never on the data the members were trained on (where
every member looks right) nor on the test split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class GatedFusion(nn.Module):
    """Mixture of fixed experts: ``log Σ_m g_m(u) · softmax(z_m)``, with gate weights
    ``g(u) = softmax(W_2 ReLU(W_1 û + b_1) + b_2)`` over the ``M`` members.

    ``u`` ``(B, D)`` is the gating input (e.g. the members' concatenated features, or pooled features of the
    input) and ``û = (u − mean) / std`` with the buffers ``gate_mean``/``gate_std`` (set by :func:`fit_gating` from
    the training data, so features of any scale work). The output is a log-probability ``(B, C)``: train with
    ``nn.NLLLoss``; ``exp`` gives the fused probabilities. The mixture is computed as a log-sum-exp, so confident
    members do not underflow.

    Parameters
    ----------
    num_members : int
        ``M``, the number of members (experts).
    gate_dim : int
        ``D``, the width of the gating input.
    hidden : int
        Width of the gate's hidden layer.
    """

    def __init__(self, num_members: int, gate_dim: int, hidden: int = 32) -> None:
        super().__init__()
        if num_members < 1 or gate_dim < 1 or hidden < 1:
            raise ValueError(f"gated fusion: num_members, gate_dim and hidden must be >= 1, got {num_members}, "
                             f"{gate_dim}, {hidden}")
        self.num_members, self.gate_dim, self.hidden = num_members, gate_dim, hidden
        self.gate = nn.Sequential(nn.Linear(gate_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_members))
        self.register_buffer("gate_mean", torch.zeros(gate_dim))
        self.register_buffer("gate_std", torch.ones(gate_dim))

    def gate_log_weights(self, gate_input: torch.Tensor) -> torch.Tensor:
        """Log gate weights ``(B, M)`` for gating inputs ``(B, D)``."""
        if gate_input.ndim != 2 or gate_input.shape[1] != self.gate_dim:
            raise ValueError(f"gated fusion: gating input must be (B, {self.gate_dim}), got {tuple(gate_input.shape)}")
        return torch.log_softmax(self.gate((gate_input - self.gate_mean) / self.gate_std), dim=1)

    def gate_weights(self, gate_input: torch.Tensor) -> torch.Tensor:
        """Gate weights ``(B, M)`` (each row sums to 1): how much each member counts for each input."""
        return self.gate_log_weights(gate_input).exp()

    def forward(self, member_logits: torch.Tensor, gate_input: torch.Tensor) -> torch.Tensor:
        """Fused log-probabilities ``(B, C)`` from member logits ``(B, M, C)`` and gating inputs ``(B, D)``."""
        if member_logits.ndim != 3 or member_logits.shape[1] != self.num_members:
            raise ValueError(f"gated fusion: member logits must be (B, {self.num_members}, C), got "
                             f"{tuple(member_logits.shape)}")
        if gate_input.shape[0] != member_logits.shape[0]:
            raise ValueError(f"gated fusion: {member_logits.shape[0]} member predictions but {gate_input.shape[0]} "
                             f"gating inputs")
        log_w = self.gate_log_weights(gate_input)
        return torch.logsumexp(log_w.unsqueeze(2) + torch.log_softmax(member_logits, dim=2), dim=1)


def _as_tensor(x: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return x.detach().to(dtype) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)


def fit_gating(member_logits: torch.Tensor | np.ndarray, gate_inputs: torch.Tensor | np.ndarray,
               labels: torch.Tensor | np.ndarray, epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
               seed: int = 0, hidden: int = 32) -> GatedFusion:
    """Train a :class:`GatedFusion` gate on held-out member predictions (the members stay fixed).

    A plain full-batch Adam loop on the NLL of the fused prediction: the data are one small table of member logits,
    so there is nothing to batch. The gate's initialisation uses a forked RNG seeded with ``seed`` (deterministic,
    and the global RNG is left untouched); the gating inputs are standardised with their training mean/std, stored
    in the module.

    Parameters
    ----------
    member_logits : (N, M, C)
        Member logits on validation / out-of-fold samples (never the test split).
    gate_inputs : (N, D)
        The gating input of each sample.
    labels : (N,)
        Integer labels.
    epochs, lr, weight_decay :
        Full-batch Adam steps, learning rate and L2 penalty.
    seed : int
        Seeds the gate's initialisation.
    hidden : int
        Width of the gate's hidden layer.

    Returns
    -------
    GatedFusion
        The trained module, in eval mode, on the device of ``member_logits``.
    """
    z = _as_tensor(member_logits, torch.float32)
    u = _as_tensor(gate_inputs, torch.float32).to(z.device)
    y = _as_tensor(labels, torch.long).to(z.device)
    if z.ndim != 3 or u.ndim != 2 or y.ndim != 1 or not len(z) == len(u) == len(y) or len(z) == 0:
        raise ValueError(f"fit_gating: needs (N, M, C) member logits, (N, D) gating inputs and (N,) labels with the "
                         f"same N >= 1, got {tuple(z.shape)}, {tuple(u.shape)}, {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= z.shape[2]:
        raise ValueError(f"fit_gating: labels must lie in [0, {z.shape[2]}), got [{int(y.min())}, {int(y.max())}]")
    if epochs < 1:
        raise ValueError(f"fit_gating: epochs must be >= 1, got {epochs}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GatedFusion(z.shape[1], u.shape[1], hidden=hidden).to(z.device)
    model.gate_mean.copy_(u.mean(0))
    model.gate_std.copy_(u.std(0, unbiased=False).clamp_min(1e-6) if len(u) > 1 else torch.ones_like(u[0]))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.NLLLoss()
    model.train()
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(model(z, u), y)
        loss.backward()
        optimiser.step()
    return model.eval()
