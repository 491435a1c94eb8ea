"""The LightningModule that trains any backbone (or bare head) with cross-entropy plus optional loss terms.

It knows nothing about particular transfer methods: a strategy hands it the model, the parameter groups
(with their learning rates; frozen parameters are simply not in any group), the modules to keep in eval
mode (frozen BatchNorm), and extra loss terms (regularisers of later issues).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.config import TrainConfig

LossTerm = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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
        Callables ``term(model, x, y, logits) -> scalar`` added to the cross-entropy.
    """

    def __init__(
        self,
        model: nn.Module,
        param_groups: Sequence[dict[str, Any]],
        cfg: TrainConfig,
        eval_modules: Sequence[nn.Module] = (),
        loss_terms: Sequence[LossTerm] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.groups = list(param_groups)
        self.cfg = cfg
        self.eval_modules = list(eval_modules)
        self.loss_terms = list(loss_terms)
        self.history: list[dict[str, float]] = []
        self._sums = torch.zeros(3)  # loss·n, correct, n
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
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        for term in self.loss_terms:
            loss = loss + term(self.model, x, y, logits)
        # accumulate epoch statistics ourselves: one log call per epoch keeps the framework's overhead low
        with torch.no_grad():
            n = y.shape[0]
            self._sums += torch.stack([loss.detach().float().cpu() * n, (logits.argmax(1) == y).sum().float().cpu(),
                                       torch.tensor(float(n))])
        return loss

    def on_train_epoch_end(self) -> None:
        loss_n, correct, n = self._sums.tolist()
        row = {"epoch": float(self.current_epoch), "train_loss": loss_n / max(n, 1), "train_acc": correct / max(n, 1)}
        row.update(self._val_row)
        self.history.append(row)
        self.log_dict({"train_loss": row["train_loss"], "train_acc": row["train_acc"]}, on_epoch=True)

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
            return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=0.9, weight_decay=wd, nesterov=True)
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=groups[0]["lr"], weight_decay=wd)
        return torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=wd)
