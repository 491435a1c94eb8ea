"""Training on batches that carry extra targets: ``(x, y, *extras)`` — e.g. a teacher's logits (distillation).

The engine knows no particular method: the caller passes a *loss module* ``loss(logits, y, *extras) ->
{name: scalar}`` (for knowledge distillation, :class:`transferkit.distillation.KDLoss` plus a hint term) whose
own parameters (a hint regressor) train with the model. Labels ``-1`` mark unlabelled examples (their
extras still count). Validation, early stopping, the kept weights and the CSV log are those of
:func:`transferkit.engine.trainer.fit`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches, make_loader
from transferkit.engine.module import EpochSums, TransferModule
from transferkit.engine.trainer import FitResult, check_fit_inputs, fit_module

TargetLoss = Callable[..., dict[str, torch.Tensor]]


class TargetsModule(TransferModule):
    """``loss(logits, y, *extras)``'s terms summed; ``train_acc`` over the labelled examples (``y ≥ 0``)."""

    def __init__(self, model: nn.Module, loss: nn.Module, param_groups: Sequence[dict[str, Any]], cfg: TrainConfig,
                 eval_modules: Sequence[nn.Module] = ()) -> None:
        super().__init__(model, param_groups, cfg, eval_modules)
        self.loss = loss
        self.labelled_sums = EpochSums(2)  # correct, n over the labelled examples

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *extras = batch
        logits = self.model(x)
        terms = self.loss(logits, y, *extras)
        loss = sum(terms.values(), torch.zeros((), device=logits.device))
        if not self.finite_or_stop(loss, terms):
            return self.skip_step(loss)
        with torch.no_grad():
            labelled = y >= 0
            b = float(len(y))
            self.train_sums.update(torch.stack([loss.detach().double() * b, *torch.tensor([0.0, b, 0.0],
                                                                                          device=loss.device)]))
            self.labelled_sums.update(torch.stack([(logits.argmax(1)[labelled] == y[labelled]).sum().double(),
                                                   labelled.sum().double()]))
        return loss * self.share_weight(len(y))  # the terms are means over the batch (KD, hint)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.labelled_sums.reset()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        correct, n = self.labelled_sums.compute().tolist()
        self.history[-1]["train_acc"] = correct / n if n else float("nan")  # over the labelled examples only


def fit_with_targets(model: nn.Module, loss: nn.Module, param_groups: Sequence[dict[str, Any]], train: TensorBatches,
                     val: TensorBatches | None, cfg: TrainConfig, run_dir: Path | None = None) -> FitResult:
    """Train ``model`` in place on ``train`` batches ``(x, y, *extras)`` with ``loss``; keep the best validation
    epoch's weights (plain cross-entropy on the labelled ``val``), as :func:`~transferkit.engine.trainer.fit`."""
    check_fit_inputs(train, cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = TargetsModule(model, loss, param_groups, cfg)
    return fit_module(module, make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed), val, cfg, run_dir)
