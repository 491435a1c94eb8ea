"""The LightningModule that trains any backbone (or bare head) with cross-entropy plus optional loss terms.

It knows nothing about particular transfer methods: a strategy hands it the model, the parameter groups
(with their learning rates; frozen parameters are simply not in any group), the modules to keep in eval
mode (frozen BatchNorm), and extra loss terms (regularisers of later issues). Class-imbalance weights and
Mixup/CutMix (``--class-weight``, ``--mixup``, ``--cutmix``) change the training loss only; the validation
loss stays plain, unweighted cross-entropy on the true labels, so early stopping compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.config import TrainConfig

LossTerm = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TransferModule(L.LightningModule):
    """Supervised training of ``model`` on ``(x, y)`` batches.

    Parameters
    ----------
    model:
        Maps a batch ``x`` to logits ``(B, C)``.
    param_groups:
        ``[{"params": [...], "lr": float, "name": str}, ...]``: what trains, at which rate.
    cfg:
        Optimiser settings.
    eval_modules:
        Modules kept in eval mode while training (frozen parts: BatchNorm statistics stay fixed).
    loss_terms:
        Callables ``term(model, x, y, logits) -> scalar`` added to the cross-entropy. With a ``mixer`` they
        receive the **mixed** inputs the model saw (``logits`` are of those) and the original integer labels
        ``y`` of the batch (before mixing).
    class_weights:
        Per-class weights ``(num_classes,)`` of the training cross-entropy (``--class-weight balanced``).
    mixer:
        ``mixer(x, y) -> (x_mixed, soft_targets)`` applied to every training batch (Mixup/CutMix,
        :class:`~transferkit.data.augment.MixupCutmix`); the loss is then cross-entropy against the soft
        targets, and ``train_acc`` counts a prediction as correct when it is the target's largest entry (the
        label that dominates the mixed example), so it reads lower than without mixing.
    """

    extra_name = "reg_loss"  # the history's name for the loss terms' share (regularisers here)

    def __init__(
        self,
        model: nn.Module,
        param_groups: Sequence[dict[str, Any]],
        cfg: TrainConfig,
        eval_modules: Sequence[nn.Module] = (),
        loss_terms: Sequence[LossTerm] = (),
        class_weights: torch.Tensor | None = None,
        mixer: BatchMixer | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.groups = list(param_groups)
        self.cfg = cfg
        self.eval_modules = list(eval_modules)
        self.loss_terms = list(loss_terms)
        self.mixer = mixer
        # a buffer follows the module to its device; not persistent, so checkpoints keep their keys
        self.register_buffer("class_weights", None if class_weights is None else class_weights.float(),
                             persistent=False)
        self.history: list[dict[str, float]] = []
        self._sums = torch.zeros(4)  # loss·n, correct, n, extra-terms·n
        self._val = torch.zeros(3)
        self._val_row: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- training ----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._sums.zero_()
        for m in self.eval_modules:
            m.eval()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixer is not None:
            x, target = self.mixer(x, y)  # soft targets (B, C)
        logits = self.model(x)
        loss = F.cross_entropy(logits, target, weight=self.class_weights)
        extra = torch.zeros((), device=loss.device)
        for term in self.loss_terms:
            extra = extra + term(self.model, x, y, logits)
        loss = loss + extra
        # accumulate epoch statistics ourselves: one log call per epoch keeps the framework's overhead low
        with torch.no_grad():
            n = y.shape[0]
            hard = target.argmax(1) if target.ndim == 2 else y
            self._sums += torch.stack([loss.detach().float().cpu() * n,
                                       (logits.argmax(1) == hard).sum().float().cpu(), torch.tensor(float(n)),
                                       extra.detach().float().cpu() * n])
        return loss

    def on_train_epoch_end(self) -> None:
        loss_n, correct, n, extra_n = self._sums.tolist()
        row = {"epoch": float(self.current_epoch), "train_loss": loss_n / max(n, 1), "train_acc": correct / max(n, 1)}
        if self.loss_terms or self.extra_name != "reg_loss":  # the extra terms' share of train_loss
            row[self.extra_name] = extra_n / max(n, 1)
        if self._trainer is not None and self.trainer.optimizers:  # the head's (largest) rate at the epoch's end
            row["lr"] = max(float(g["lr"]) for g in self.trainer.optimizers[0].param_groups)
        row.update(self._val_row)
        self.history.append(row)
        self.log_dict({k: row[k] for k in ("train_loss", "train_acc", self.extra_name, "lr") if k in row},
                      on_epoch=True)

    # -- validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val.zero_()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        n = y.shape[0]
        self._val += torch.stack([F.cross_entropy(logits, y, reduction="sum").float().cpu(),
                                  (logits.argmax(1) == y).sum().float().cpu(), torch.tensor(float(n))])

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, n = self._val.tolist()
        if n == 0:
            return
        self._val_row = {"val_loss": loss_sum / n, "val_acc": correct / n}
        self.log_dict(self._val_row, on_epoch=True, prog_bar=True)

    # -- optimiser ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        groups = [g for g in self.groups if g["params"]]
        if not groups:
            raise ValueError("nothing to train: every parameter group is frozen")
        wd = self.cfg.weight_decay
        if self.cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=0.9, weight_decay=wd, nesterov=True)
        elif self.cfg.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=groups[0]["lr"], weight_decay=wd)
        else:
            opt = torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=wd)
        self.lr_factor = 1.0  # phases (two-phase fine-tuning) scale every group's rate from their epoch on
        total = max(int(self.trainer.estimated_stepping_batches), 1) if self._trainer is not None else 1
        shape = lr_multiplier(self.cfg.schedule, total, total * self.cfg.warmup_epochs // max(self.cfg.epochs, 1))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: shape(step) * self.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_multiplier(schedule: str, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The factor on every group's learning rate at optimiser step ``step`` (0-based) of ``total_steps``.

    * ``constant`` — 1 (after the optional linear warm-up).
    * ``cosine`` — linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``
      (Loshchilov & Hutter, 2017, "SGDR"; warm-up: Goyal et al., 2017).
    * ``onecycle`` — Smith & Topin, 2017, "Super-Convergence": cosine rise from 1/25 to 1 over the first 30 %
      of the steps, then cosine annealing to 1/25e4 (the factors of ``torch.optim.lr_scheduler.OneCycleLR``,
      written as a multiplier so it composes with discriminative rates and phase factors; momentum is not
      cycled).

    The schedule spans the maximum epochs; a run that stops early ends part-way down the curve.
    """
    total_steps = max(int(total_steps), 1)

    def cosine(a: float, b: float, t: float) -> float:  # from a (t=0) to b (t=1)
        return b + (a - b) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2

    if schedule == "onecycle":
        peak = max(int(0.3 * total_steps), 1)

        def onecycle(step: int) -> float:
            if step < peak:
                return cosine(1 / 25, 1.0, step / peak)
            return cosine(1.0, 1 / 25e4, (step - peak) / max(total_steps - peak, 1))

        return onecycle

    def warm(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "cosine":
            return cosine(1.0, 0.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
        return 1.0

    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown schedule '{schedule}'; valid choices: constant, cosine, onecycle")
    return warm
