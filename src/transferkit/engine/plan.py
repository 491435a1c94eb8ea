"""What a strategy hands the engine: a :class:`TrainingPlan` (what trains, at which rates, on which data, with
which extra loss terms and scheduled :class:`Phase` changes, and how to assemble the target model afterwards).

The types live here, with the engine that runs them: strategies (:mod:`transferkit.strategies`) import them to
produce plans; the engine knows a strategy only as a :class:`Planner` — anything with a ``plan`` method — and
never imports a particular one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches


@dataclass
class Phase:
    """A change of what trains, applied by the engine at the start of epoch ``start_epoch`` (0-based).

    ``unfreeze`` parameters get ``requires_grad=True`` (they are already in an optimiser group, idle until
    then: optimisers skip parameters without gradients, so neither the update nor weight decay touches
    them); ``train_modules`` leave eval mode; ``lr_factor`` scales every group's learning rate from then on.
    """

    start_epoch: int
    name: str
    unfreeze: list[nn.Parameter] = field(default_factory=list)
    train_modules: list[nn.Module] = field(default_factory=list)
    lr_factor: float | None = None


@dataclass
class TrainingPlan:
    """What a strategy asks the engine to train, and how to turn the result into the target model.

    Attributes
    ----------
    model:
        The module the engine trains (the whole network, or only a head on cached features).
    param_groups:
        ``[{"params": [...], "lr": float, "name": str}]``; frozen parameters are in no group.
    train, val:
        The data the engine iterates (images, or extracted features).
    cfg:
        The training configuration with the strategy's defaults filled in.
    finalize:
        Called after training; returns the complete target model (default: ``model`` itself).
    eval_modules:
        Modules kept in eval mode while training (frozen BatchNorm statistics).
    loss_terms:
        Extra loss terms ``term(model, x, y, logits) -> scalar`` (regularisers).
    phases:
        Scheduled changes of what trains (gradual unfreezing, two-phase fine-tuning), in epoch order.
    solve:
        For a plan that is *solved*, not stepped (the L-BFGS linear probe): the engine calls ``solve(slices)``
        instead of running epochs. It fits ``model`` in place — ``slices`` are the logit columns of each task when
        the labels are a multi-task matrix ``(N, T)`` (``-1`` = no label), ``None`` for one task — and returns a
        JSON-ready record of what it chose (kept as ``FitResult.solver``).
    """

    model: nn.Module
    param_groups: list[dict[str, Any]]
    train: TensorBatches
    val: TensorBatches | None
    cfg: TrainConfig
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    finalize: Callable[[], Backbone] | None = None
    eval_modules: list[nn.Module] = field(default_factory=list)
    loss_terms: list[Callable[..., torch.Tensor]] = field(default_factory=list)
    extra_time_s: float = 0.0  # time spent before training (feature extraction)
    feature_cache: str | None = None  # "hit" / "miss" for strategies that read cached features
    phases: list[Phase] = field(default_factory=list)
    head: nn.Module | None = None  # the new classifier (its rows can be initialised from the source head)
    solve: Callable[[Sequence[slice] | None], dict[str, Any]] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)  # the strategy's part of FitResult.recipe (head init, …)

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for g in self.param_groups for p in g["params"])


class Planner(Protocol):
    """What the engine needs of a strategy (:class:`~transferkit.strategies.base.Strategy` is one)."""

    name: str

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        """How to transfer from ``source`` (never modified) to a ``num_classes``-way target task."""
        ...
