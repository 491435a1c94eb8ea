"""Pruning: stop a trial early when its validation curve is already worse than the others'.

Each epoch the trial's validation metric is reported to Optuna (``trial.report(value, epoch)``); the study's
pruner — by default the median rule (``optuna.pruners.MedianPruner``: prune when the value at this epoch is
worse than the median of earlier trials at the same epoch; Golovin et al., 2017, "Google Vizier") — decides
whether to go on. A pruned trial ends by raising :class:`optuna.TrialPruned`, which travels out of Lightning's
``fit`` and ``transfer`` unchanged, and the study records the trial as PRUNED (not FAILED).

This is our own small callback rather than the ``optuna-integration`` package: one hook, no extra dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

MONITORS = ("val_acc", "val_loss")


class PruningCallback(Callback):
    """Report ``monitor`` (``val_acc`` or ``val_loss``, as the training module logs them on the validation
    split) to ``trial`` after every validation epoch, and raise :class:`optuna.TrialPruned` when the study's
    pruner says the trial should stop. The sanity-check pass and epochs without the metric are skipped.

    ``pruned_at`` is the 0-based epoch at which the trial was pruned (``None`` while it runs on).
    """

    def __init__(self, trial: BaseTrial, monitor: str = "val_acc") -> None:
        if monitor not in MONITORS:
            raise ValueError(f"pruning: unknown monitor '{monitor}'; valid: {', '.join(MONITORS)}")
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = int(trainer.current_epoch)
        value = float(value)
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}: {self.monitor} {value:.4f}")
