"""How the tasks' losses combine into one: fixed weights, uncertainty weighting, GradNorm, dynamic weight averaging.

Each scheme is an ``nn.Module`` called once per training step as ``scheme(losses, present, rep)``:

* ``losses`` ``(T,)`` — each task's mean cross-entropy over the rows of the batch labelled for it (0 where none);
* ``present`` ``(T,)`` bool — whether the batch had any row labelled for the task (absent tasks add nothing);
* ``rep`` ``(B, D)`` — the shared representation the heads read (only :class:`GradNorm` uses it);

and returns ``(loss, parts)``: the scalar to minimise and named terms for the log. :meth:`weights` gives the current
task weights (logged every epoch); :meth:`epoch_end` receives each task's mean training loss of the epoch. Learnt
weights are parameters of the scheme (the engine adds them to the optimiser, without weight decay); state that
must survive a resume is kept in buffers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TaskWeighting(nn.Module):
    """Base class: a weighted sum ``Σ_t w_t · L_t`` over the tasks present in the batch."""

    name = ""
    needs_rep = False  # whether forward needs the shared representation (with its autograd graph)

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError("a loss weighting needs at least one task")
        self.num_tasks = num_tasks

    def weights(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, losses: torch.Tensor, present: torch.Tensor,
                rep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights().to(losses)
        return (w * losses * present).sum(), {}

    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        """Each task's mean training loss over the epoch that just ended (NaN for a task with no rows)."""


class FixedWeighting(TaskWeighting):
    """``Σ_t w_t · L_t`` with weights given by the user (default 1 each): the plain multi-task baseline."""

    name = "fixed"

    def __init__(self, num_tasks: int, weights: Sequence[float] | None = None) -> None:
        super().__init__(num_tasks)
        w = torch.ones(num_tasks) if weights is None else torch.as_tensor(list(weights), dtype=torch.float32)
        if w.shape != (num_tasks,) or not bool((w > 0).all()):
            raise ValueError(f"fixed weighting: need {num_tasks} positive weights, got {w.tolist()}")
        self.register_buffer("w", w)

    def weights(self) -> torch.Tensor:
        return self.w


class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018, "Multi-Task Learning Using Uncertainty to
    Weigh Losses for Scene Geometry and Semantics").

    Each task has a learnt ``s_t = log σ_t²``; for a softmax classifier the paper's objective is
    ``Σ_t exp(−s_t) · L_t + s_t / 2`` (``1/σ² · L + log σ``): a noisy task earns a larger σ and a smaller weight,
    and the ``log σ`` term keeps σ from growing without bound. ``s_t`` starts at 0 (weight 1).
    """

    name = "uncertainty"

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.log_var = nn.Parameter(torch.zeros(num_tasks))

    def weights(self) -> torch.Tensor:
        return torch.exp(-self.log_var.detach())

    def forward(self, losses: torch.Tensor, present: torch.Tensor,
                rep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.log_var
        terms = (torch.exp(-s) * losses + 0.5 * s) * present
        return terms.sum(), {}


class GradNorm(TaskWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, 2018, "GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks").

    Learnt weights ``w_t`` (start 1, renormalised to sum ``T`` before every step) are tuned so that the norm of each
    weighted task's gradient, ``G_t = w_t · ‖∇ L_t‖``, approaches ``Ḡ · r_t^α``: ``Ḡ`` the mean norm and ``r_t`` the
    task's inverse training rate (its loss ratio ``L_t / L_t(0)`` relative to the mean), so tasks that learn slowly get
    larger gradients. ``α`` (default 1.5, the paper's choice for classification-like tasks) sets how hard.

    The gradients are taken with respect to the shared representation ``rep`` (the features the heads read) rather
    than the last shared layer's weights — the cheaper variant the paper mentions and LibMTL's ``rep_grad`` uses; it
    also works for a frozen backbone. The gradient-norm loss ``Σ_t |G_t − target_t|`` reaches the weights only
    (``‖∇ L_t‖`` and the targets are constants in it), and the network trains on ``Σ_t w_t · L_t`` with ``w`` fixed.
    """

    name = "gradnorm"
    needs_rep = True

    def __init__(self, num_tasks: int, alpha: float = 1.5) -> None:
        super().__init__(num_tasks)
        if not alpha >= 0:
            raise ValueError(f"gradnorm: alpha must be ≥ 0, got {alpha}")
        self.alpha = float(alpha)
        self.w = nn.Parameter(torch.ones(num_tasks))
        self.register_buffer("initial", torch.full((num_tasks,), float("nan")))

    def weights(self) -> torch.Tensor:
        return self.w.detach().clamp_min(1e-3) * self.num_tasks / self.w.detach().clamp_min(1e-3).sum()

    def forward(self, losses: torch.Tensor, present: torch.Tensor,
                rep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if rep is None or not rep.requires_grad:
            raise ValueError("gradnorm needs the shared representation with its gradient graph")
        with torch.no_grad():  # the renormalisation after the previous step: Σ w = T, w > 0
            self.w.copy_(self.weights())
            first = present & torch.isnan(self.initial)
            self.initial[first] = losses.detach()[first].clamp_min(1e-8)
        idx = torch.nonzero(present).flatten().tolist()
        weighted = (self.w.detach() * losses * present).sum()
        if len(idx) < 2:  # nothing to balance in this batch
            return weighted, {"gradnorm_loss": torch.zeros((), device=losses.device)}
        norms = torch.stack([torch.autograd.grad(losses[t], rep, retain_graph=True)[0].norm() for t in idx]).detach()
        g = self.w[idx] * norms
        ratio = losses.detach()[idx] / self.initial[idx]
        target = (g.detach().mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        grad_loss = (g - target).abs().sum()
        return weighted + grad_loss, {"gradnorm_loss": grad_loss.detach()}


class DynamicWeightAverage(TaskWeighting):
    """Dynamic weight averaging (Liu, Johns & Davison, 2019, "End-to-End Multi-Task Learning with Attention").

    ``w_t = T · softmax_t(r_t / τ)`` with ``r_t = L_t(e−1) / L_t(e−2)``, the ratio of the task's mean training losses
    over the two previous epochs: a task whose loss falls slowly gets more weight. The first two epochs use weight 1;
    ``τ`` (default 2, the paper's) smooths the weights. Nothing is learnt, so it costs nothing per step.
    """

    name = "dwa"

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        if not temperature > 0:
            raise ValueError(f"dwa: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.full((2, num_tasks), float("nan")))  # losses of epochs e-2, e-1
        self.register_buffer("w", torch.ones(num_tasks))

    def weights(self) -> torch.Tensor:
        return self.w

    def epoch_end(self, mean_losses: torch.Tensor) -> None:
        with torch.no_grad():
            self.history[0] = self.history[1]
            self.history[1] = mean_losses.to(self.history)
            ratio = self.history[1] / self.history[0].clamp_min(1e-8)
            if bool(torch.isfinite(ratio).all()):
                self.w.copy_(self.num_tasks * torch.softmax(ratio / self.temperature, 0))


def make_weighting(name: str, num_tasks: int, weights: Sequence[float] | None = None, alpha: float = 1.5,
                   temperature: float = 2.0) -> TaskWeighting:
    """The weighting scheme ``name`` (``fixed``, ``uncertainty``, ``gradnorm``, ``dwa``) for ``num_tasks`` tasks."""
    if name == "fixed":
        return FixedWeighting(num_tasks, weights)
    if name == "uncertainty":
        return UncertaintyWeighting(num_tasks)
    if name == "gradnorm":
        return GradNorm(num_tasks, alpha)
    if name == "dwa":
        return DynamicWeightAverage(num_tasks, temperature)
    raise ValueError(f"weighting '{name}' is unknown; valid choices: fixed, uncertainty, gradnorm, dwa")
