"""The strategy interface and registry: *how* knowledge moves from a source model to a target task.

A strategy is built from a few options (``Strategy(**options)`` only stores and validates them, the
scikit-learn way) and has one method, :meth:`Strategy.plan`: given the source model and the target data
it decides what trains (a copy of the network, or only a head on cached features), at which learning
rates, which modules stay frozen, and how to assemble the target model afterwards. The engine
(:func:`transferkit.engine.train`) runs the plan; so data flows one way — strategies never import the
engine, and the engine knows strategies only through this interface.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, resolve_budget
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


class Strategy:
    """Base class. Subclasses set ``name``, ``aliases``, ``default_lr``, ``option_defaults`` and implement
    :meth:`plan`.

    The training recipe a strategy fills in where the configuration leaves it unset (:meth:`resolve`):
    ``default_steps`` — the floor of optimiser steps whatever the dataset size (``None``: an epoch budget,
    :data:`~transferkit.config.DEFAULT_EPOCHS`), ``min_epochs`` — at least this many passes over a large training
    set, ``default_schedule`` with a linear warm-up over ``warmup`` (a share of the steps), and
    ``default_augment``, which applies to image batches only (a text or feature strategy trains without).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = ""  # which classic kind of transfer this is (shown in reports)
    default_lr: ClassVar[float] = 1e-3
    default_batch_size: ClassVar[int] = 64
    option_defaults: ClassVar[dict[str, Any]] = {}
    default_steps: ClassVar[int | None] = None
    min_epochs: ClassVar[int] = 1
    default_schedule: ClassVar[str] = "constant"
    warmup: ClassVar[float] = 0.0
    default_augment: ClassVar[str] = "none"

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.option_defaults)
        if unknown:
            valid = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"strategy '{self.name}' has no option(s) {sorted(unknown)}; valid options: {valid}")
        self.options = {**self.option_defaults, **{k: v for k, v in options.items() if v is not None}}

    def lr(self, cfg: TrainConfig) -> float:
        return cfg.lr if cfg.lr is not None else self.default_lr

    def resolve(self, cfg: TrainConfig, train: TensorBatches | None = None) -> TrainConfig:
        """``cfg`` with this strategy's defaults filled in where it leaves ``lr``/``batch_size`` unset, and — given
        the training data — its recipe: the budget (steps, and the epochs derived from them), schedule, warm-up and
        augmentation (:func:`~transferkit.config.resolve_budget`)."""
        cfg = dataclasses.replace(cfg, lr=self.lr(cfg), batch_size=cfg.batch_size or self.default_batch_size)
        if train is None:
            return cfg
        images = train.x.ndim == 4 and getattr(train, "lengths", None) is None
        return resolve_budget(cfg, len(train), self.default_steps, self.min_epochs, self.default_schedule,
                              self.warmup, self.default_augment if images else "none")

    def plan(
        self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None, cfg: TrainConfig
    ) -> TrainingPlan:
        """How to transfer from ``source`` (never modified) to a ``num_classes``-way target task."""
        raise NotImplementedError

    @staticmethod
    def copy_source(source: Backbone) -> Backbone:
        """A deep copy of the source with every parameter trainable (the source itself stays untouched)."""
        model = copy.deepcopy(source).train()
        for p in model.parameters():
            p.requires_grad_(True)
        return model


_REGISTRY: dict[str, type[Strategy]] = {}
_ALIASES: dict[str, str] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available by its ``name`` and ``aliases``."""
    for n in (cls.name, *cls.aliases):
        if n in _REGISTRY or n in _ALIASES:
            raise ValueError(f"strategy name '{n}' is already registered")
    _REGISTRY[cls.name] = cls
    _ALIASES.update({a: cls.name for a in cls.aliases})
    return cls


def list_strategies() -> list[type[Strategy]]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def resolve_strategy_name(name: str) -> str:
    """Canonical name for ``name`` or an alias; an unknown name lists the valid ones."""
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    valid = ", ".join(f"{c.name} (alias {', '.join(c.aliases)})" if c.aliases else c.name for c in list_strategies())
    raise ValueError(f"unknown strategy '{name}'; valid strategies: {valid}")


def get_strategy(name: str, **options: Any) -> Strategy:
    """Instantiate strategy ``name`` (or alias) with ``options``."""
    return _REGISTRY[resolve_strategy_name(name)](**options)
