"""The strategy interface and registry: *how* knowledge moves from a source model to a target task.

A strategy is built from a few options (``Strategy(**options)`` only stores and validates them, the
scikit-learn way) and has one method, :meth:`Strategy.fit`, which decides which parameters train, at which
learning rates, and hands the loop to :func:`transferkit.engine.fit`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.trainer import FitResult


@dataclass
class TrainedModel:
    """A strategy's result: the target model (weights of the best validation epoch) and how it got there."""

    model: Backbone
    fit: FitResult
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    trainable_params: int = 0
    extra_time_s: float = 0.0  # time outside the training loop (feature extraction)
    feature_cache: str | None = None  # "hit" / "miss" for strategies that read cached features

    @property
    def total_time_s(self) -> float:
        return self.fit.train_time_s + self.extra_time_s


class Strategy:
    """Base class. Subclasses set ``name``, ``aliases``, ``default_lr``, ``options`` and implement ``fit``."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = ""  # which classic kind of transfer this is (shown in reports)
    default_lr: ClassVar[float] = 1e-3
    default_batch_size: ClassVar[int] = 64
    option_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.option_defaults)
        if unknown:
            valid = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"strategy '{self.name}' has no option(s) {sorted(unknown)}; valid options: {valid}")
        self.options = {**self.option_defaults, **{k: v for k, v in options.items() if v is not None}}

    def lr(self, cfg: TrainConfig) -> float:
        return cfg.lr if cfg.lr is not None else self.default_lr

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with this strategy's defaults filled in where it leaves ``lr``/``batch_size`` unset."""
        return dataclasses.replace(cfg, lr=self.lr(cfg), batch_size=cfg.batch_size or self.default_batch_size)

    def fit(
        self,
        source: Backbone,
        num_classes: int,
        train: TensorBatches,
        val: TensorBatches | None,
        cfg: TrainConfig,
        run_dir: Path | None = None,
    ) -> TrainedModel:
        """Transfer from ``source`` (never modified) to a ``num_classes``-way target task."""
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
