"""The LightningModule that trains any backbone (or bare head) with cross-entropy plus optional loss terms.

It knows nothing about particular transfer methods: a strategy hands it the model, the parameter groups
(with their learning rates; frozen parameters are simply not in any group), the modules to keep in eval
mode (frozen BatchNorm), and extra loss terms (regularisers of later issues). Class-imbalance weights and
Mixup/CutMix (``--class-weight``, ``--mixup``, ``--cutmix``) change the training loss only; the validation
loss stays plain, unweighted cross-entropy on the true labels, so early stopping compares like with like.

Under DDP every process sees its share of each global batch: the epoch sums behind the logged metrics are
reduced over processes (a ``torchmetrics`` metric), and the cross-entropy is weighted by the share's size so
that the averaged gradient is the global batch's (:meth:`TransferModule.share_weight`). A non-finite loss or
gradient skips the step and stops the run (:attr:`TransferModule.diverged`; the engine turns it into a
:class:`DivergenceError` naming the step).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from transferkit.config import TrainConfig
from transferkit.errors import DivergenceError  # noqa: F401  (re-exported: raised here)

LossTerm = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
BatchMixer = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

warnings.filterwarnings("ignore", ".*was called before the ``update`` method.*")  # an epoch with no step left
warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # how a diverged step is skipped
warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed.*")  # our sums are reduced already


class EpochSums(Metric):
    """Running sums over an epoch (loss·n, correct, n, …), summed over DDP processes when computed.

    float64, so that sums over large epochs stay exact enough to compare runs; kept in checkpoints
    (``persistent``) so that a run resumed in the middle of an epoch reports the same epoch figures.
    """

    full_state_update = False

    def __init__(self, size: int) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum", persistent=True)

    def update(self, values: torch.Tensor) -> None:
        self.total += values.detach().to(self.total)

    def compute(self) -> torch.Tensor:
        return self.total


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
        self.train_sums = EpochSums(4)  # loss·n, correct, n, extra-terms·n
        self.val_sums = EpochSums(3)  # loss sum, correct, n
        self._val_row: dict[str, float] = {}
        self.diverged: dict[str, Any] | None = None
        self.time_before_resume = 0.0  # training seconds spent before the checkpoint this run resumed from
        self.epoch_times: list[float] = []  # wall seconds per epoch (training + its validation pass), resumes too
        self._epoch_started = time.perf_counter()
        self._fit_started = time.perf_counter()

    # -- data parallelism, divergence, checkpoints ------------------------------------------------------
    def share_weight(self, n: int) -> float | torch.Tensor:
        """Factor on a per-example-mean loss of this process's ``n`` examples so that DDP's gradient average
        equals the gradient of the mean over the whole global batch (1 in a single process)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return 1.0
        total = self.trainer.strategy.reduce(torch.tensor(float(n), device=self.device), reduce_op="sum")
        return n * self.trainer.world_size / total

    def _diverge(self, what: str) -> None:
        if self.diverged is None:
            self.diverged = {"step": int(self.global_step), "epoch": int(self.current_epoch), "what": what}
        self.trainer.should_stop = True

    def finite_or_stop(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> bool:
        """``True`` when ``loss`` is finite; otherwise record the divergence (naming ``parts``) and stop."""
        if torch.isfinite(loss):
            return True
        detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in parts.items())
        self._diverge(f"non-finite loss ({detail})")
        return False

    def skip_step(self, loss: torch.Tensor) -> torch.Tensor | None:
        """What a diverged step returns: ``None`` (no backward) alone; under DDP every process must still join
        the gradient all-reduce, so the loss goes on and the non-finite gradient check drops the update."""
        return loss if self._trainer is not None and self.trainer.world_size > 1 else None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().abs().max() for g in grads])).all():
            self._diverge("non-finite gradient")
            for g in optimizer.param_groups:  # no update from this step
                for p in g["params"]:
                    p.grad = None

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()
        self._epoch_started = self._fit_started - getattr(self, "_epoch_carry", 0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["transferkit_module"] = {
            "history": self.history, "val_row": self._val_row, "lr_factor": getattr(self, "lr_factor", 1.0),
            "train_time_s": self.time_before_resume + time.perf_counter() - self._fit_started,
            "epoch_times": self.epoch_times, "epoch_elapsed_s": time.perf_counter() - self._epoch_started}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("transferkit_module", {})
        self.history = list(state.get("history", []))
        self._val_row = dict(state.get("val_row", {}))
        self.lr_factor = state.get("lr_factor", 1.0)
        self.time_before_resume = float(state.get("train_time_s", 0.0))
        self.epoch_times = [float(t) for t in state.get("epoch_times", [])]  # the epochs before the interruption
        self._epoch_carry = float(state.get("epoch_elapsed_s", 0.0))  # an epoch resumed mid-way: its time so far
        self._epoch_started = time.perf_counter() - self._epoch_carry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- training ----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # (Lightning skips this hook for an epoch resumed in the middle: its sums come from the checkpoint)
        self._epoch_started = time.perf_counter()
        self.train_sums.reset()
        for m in self.eval_modules:
            m.eval()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixer is not None:
            x, target = self.mixer(x, y)  # soft targets (B, C)
        logits = self.model(x)
        ce = F.cross_entropy(logits, target, weight=self.class_weights)
        extra = torch.zeros((), device=ce.device)
        for term in self.loss_terms:
            extra = extra + term(self.model, x, y, logits)
        loss = ce + extra
        if not self.finite_or_stop(loss, {"cross_entropy": ce, "terms": extra}):
            return self.skip_step(loss)
        # accumulate epoch statistics ourselves: one reduction per epoch keeps the framework's overhead low
        with torch.no_grad():
            n = y.shape[0]
            hard = target.argmax(1) if target.ndim == 2 else y
            self.train_sums.update(torch.stack([loss.detach().double() * n, (logits.argmax(1) == hard).sum().double(),
                                                torch.tensor(float(n), dtype=torch.float64, device=loss.device),
                                                extra.detach().double() * n]))
        return ce * self.share_weight(n) + extra

    def on_train_epoch_end(self) -> None:
        loss_n, correct, n, extra_n = self.train_sums.compute().tolist()[:4]  # subclasses may add more sums
        row = {"epoch": float(self.current_epoch), "train_loss": loss_n / max(n, 1), "train_acc": correct / max(n, 1)}
        if self.loss_terms or self.extra_name != "reg_loss":  # the extra terms' share of train_loss
            row[self.extra_name] = extra_n / max(n, 1)
            ce = (loss_n - extra_n) / max(n, 1)
            if self.extra_name == "reg_loss" and ce > 0:  # how strong a regulariser is: its size against the CE
                row["reg_ratio"] = row[self.extra_name] / ce
        if self._trainer is not None and self.trainer.optimizers:  # the head's (largest) rate at the epoch's end
            row["lr"] = max(float(g["lr"]) for g in self.trainer.optimizers[0].param_groups)
        row.update(self._val_row)
        self.history.append(row)
        self.epoch_times.append(time.perf_counter() - self._epoch_started)
        self.log_dict({k: row[k] for k in ("train_loss", "train_acc", self.extra_name, "lr") if k in row},
                      on_epoch=True)

    # -- validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_sums.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.val_sums.update(torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                          (logits.argmax(1) == y).sum().double(),
                                          torch.tensor(float(y.shape[0]), dtype=torch.float64, device=y.device)]))

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, n = self.val_sums.compute().tolist()
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
        # phases (two-phase fine-tuning) scale every group's rate from their epoch on; a resumed run continues
        self.lr_factor = getattr(self, "lr_factor", 1.0)
        total = max(int(self.trainer.estimated_stepping_batches), 1) if self._trainer is not None else 1
        warmup = self.cfg.warmup_steps if self.cfg.warmup_steps is not None else \
            total * self.cfg.warmup_epochs // max(self.cfg.max_epochs, 1)
        shape = lr_multiplier(self.cfg.schedule or "constant", total, warmup)
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
