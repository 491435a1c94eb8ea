"""The learning-rate range test (Smith, 2017, "Cyclical Learning Rates for Training Neural Networks"), run by
Lightning's tuner on exactly what a strategy would train.

The rates grow exponentially from ``min_lr`` to ``max_lr`` over ``num_training`` steps while the training
loss is recorded; the suggestion is Lightning's (the steepest descent of the smoothed loss). Discriminative
rates keep their ratios: every group is scaled by the same factor. The strategy's model is a copy, so the
source is untouched; nothing of this trial is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches, make_loader
from transferkit.engine.device import check_precision, resolve_accelerator
from transferkit.engine.module import TransferModule
from transferkit.engine.plan import Planner
from transferkit.errors import ConfigError


@dataclass
class LRFindResult:
    """Rates tried, the (smoothed) training loss at each, and Lightning's suggestion (``None`` if it found none)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float | None = None


def find_lr(strategy: Planner, source: Backbone, num_classes: int, train: TensorBatches, cfg: TrainConfig,
            min_lr: float = 1e-6, max_lr: float = 1.0, num_training: int = 100) -> LRFindResult:
    """Run the range test for ``strategy`` on ``train`` (``num_training`` steps, cycling over the data)."""
    if not 0 < min_lr < max_lr:
        raise ConfigError("min_lr", f"0 < min_lr < max_lr (max_lr={max_lr})", min_lr)
    if num_training < 10:
        raise ConfigError("steps", "at least 10 to fit a curve", num_training)
    from lightning.pytorch.tuner import Tuner

    plan = strategy.plan(source, num_classes, train, None, cfg)
    L.seed_everything(plan.cfg.seed, workers=True, verbose=False)
    module = TransferModule(plan.model, plan.param_groups, plan.cfg, plan.eval_modules, plan.loss_terms)
    accelerator = resolve_accelerator(plan.cfg.accelerator)
    check_precision(plan.cfg.precision, accelerator)
    trainer = L.Trainer(max_epochs=max(1, num_training), accelerator=accelerator, devices=plan.cfg.devices,
                        precision=plan.cfg.precision,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    loader = make_loader(plan.train, plan.cfg.batch_size, shuffle=True, seed=plan.cfg.seed)
    finder = Tuner(trainer).lr_find(module, train_dataloaders=loader, min_lr=min_lr, max_lr=max_lr,
                                    num_training=num_training, early_stop_threshold=None, update_attr=False)
    if finder is None:
        return LRFindResult()
    return LRFindResult([float(x) for x in finder.results["lr"]], [float(x) for x in finder.results["loss"]],
                        finder.suggestion())
