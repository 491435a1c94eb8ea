"""The strategy interface and registry: *how* knowledge moves from a source model to a target task.

A strategy is built from a few options (``Strategy(**options)`` only stores and validates them, the
scikit-learn way) and has one method, :meth:`Strategy.plan`: given the source model and the target data
it decides what trains (a copy of the network, or only a head on cached features), at which learning
rates, which modules stay frozen, and how to assemble the target model afterwards — a
:class:`~transferkit.engine.plan.TrainingPlan`, the engine's type, which :func:`transferkit.engine.train` runs. So
data flows one way: strategies produce the engine's plans, and the engine knows strategies only as planners
(:class:`~transferkit.engine.plan.Planner`), never a particular one.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, resolve_budget
from transferkit.data.prepare import TensorBatches
from transferkit.engine.plan import Phase, TrainingPlan
from transferkit.registry import Registry

__all__ = ["STRATEGIES", "Phase", "Strategy", "TrainingPlan", "get_strategy", "list_strategies", "register_strategy",
           "resolve_strategy_name", "truncation_stage"]


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
    paper: ClassVar[str] = ""  # the method's paper, as `transferkit list strategies` shows it
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


def truncation_stage(source: Backbone, layer: str | None) -> str | None:
    """The stage to cut ``source`` at so that a new head reads ``layer``'s output — ``None`` when ``layer`` is
    ``None`` or already the last stage (nothing to drop). Shared by ``linear_probe`` and ``finetune``'s ``layer``."""
    stages = list(source.stages)
    return None if layer is None or (stages and layer == stages[-1]) else layer


STRATEGIES: Registry[type[Strategy]] = Registry("strategies", "strategy", "strategies")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available by its ``name`` and ``aliases``."""
    return STRATEGIES.register()(cls)


def list_strategies() -> list[type[Strategy]]:
    return [STRATEGIES.get(n) for n in STRATEGIES.names()]


def resolve_strategy_name(name: str) -> str:
    """Canonical name for ``name`` or an alias; an unknown name lists the valid ones."""
    return STRATEGIES.resolve(name)


def get_strategy(name: str, **options: Any) -> Strategy:
    """Instantiate strategy ``name`` (or alias) with ``options``."""
    return STRATEGIES.get(name)(**options)
