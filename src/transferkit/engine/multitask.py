"""The loop of multi-task training: one network whose outputs are several tasks' logits side by side.

The model maps a batch to logits ``(B, Σ_t C_t)``; task ``t`` owns the columns ``slices[t]`` (one linear head of
``Σ_t C_t`` outputs *is* ``T`` linear heads, row blocks that never mix, so every strategy's plan works unchanged).
Labels are a matrix ``(B, T)`` with ``-1`` where a row has no label for a task: each task's cross-entropy is the
mean over its labelled rows, and a ``combine`` module (the loss weighting, :mod:`transferkit.multi_task.weighting`)
turns the ``T`` losses into the one that is minimised. The engine knows no weighting scheme: it hands ``combine``
the losses, which tasks the batch had, and the shared representation the heads read.

Validation reports each task's loss and accuracy (``val_loss_<task>``, ``val_acc_<task>``) and their means over
tasks as ``val_loss`` / ``val_acc``, which early stopping and the kept weights follow (``cfg.monitor``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.augment import augmented, require_image_batches
from transferkit.data.prepare import TensorBatches, make_loader
from transferkit.engine.module import EpochSums, TransferModule
from transferkit.engine.plan import Planner
from transferkit.engine.trainer import (
    FitResult,
    PhaseSwitch,
    TrainedModel,
    check_fit_inputs,
    fit_module,
    solve_plan,
)
from transferkit.errors import ConfigError


def task_losses(logits: torch.Tensor, y: torch.Tensor, slices: Sequence[slice],
                reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-task cross-entropy of ``logits`` ``(B, Σ C_t)`` against ``y`` ``(B, T)`` (``-1`` = no label).

    Returns ``(losses (T,), correct (T,), counts (T,))``: the mean (or, with ``reduction="sum"``, summed) loss over
    each task's labelled rows (0 for a task with none), its correct predictions and its number of labelled rows."""
    losses, correct, counts = [], [], []
    for t, sl in enumerate(slices):
        yt = y[:, t]
        mask = yt >= 0
        n = mask.sum()
        if bool(n > 0):
            lt = logits[mask, sl]
            losses.append(F.cross_entropy(lt, yt[mask], reduction=reduction))
            correct.append((lt.argmax(1) == yt[mask]).sum())
        else:
            losses.append(logits.sum() * 0.0)
            correct.append(torch.zeros((), dtype=torch.long, device=logits.device))
        counts.append(n)
    return torch.stack(losses), torch.stack(correct), torch.stack(counts)


class MultiTaskModule(TransferModule):
    """Per-task masked cross-entropy combined by ``combine``; per-task and mean validation figures."""

    extra_name = "weighting_loss"

    def __init__(self, model: nn.Module, param_groups: Sequence[dict[str, Any]], cfg: TrainConfig,
                 slices: Sequence[slice], names: Sequence[str], combine: nn.Module,
                 eval_modules: Sequence[nn.Module] = (), loss_terms: Sequence[Any] = ()) -> None:
        super().__init__(model, param_groups, cfg, eval_modules, loss_terms)
        self.slices, self.names, self.combine = list(slices), list(names), combine
        t = len(self.slices)
        self.train_sums = EpochSums(4 + 2 * t)  # loss·n, correct, n, extra·n, per task: loss sum, labelled rows
        self.val_sums = EpochSums(3 * t)  # per task: loss sum, correct, labelled rows

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shared representation, logits)``: a backbone's features, or the input of a head on cached features."""
        model = self.model
        needs = getattr(self.combine, "needs_rep", False)
        if isinstance(model, Backbone):
            rep = model.forward_features(x)
            if needs and not rep.requires_grad:  # a frozen extractor: balance the gradients at its output
                rep = rep.detach().requires_grad_(True)
            return rep, model.forward_head(rep)
        rep = x.detach().requires_grad_(True) if needs and torch.is_grad_enabled() else x
        return rep, model(rep)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        rep, logits = self._forward(x)
        losses, correct, counts = task_losses(logits, y, self.slices)
        present = counts > 0
        combined, parts = self.combine(losses, present, rep)
        extra = torch.zeros((), device=logits.device)
        for term in self.loss_terms:
            extra = extra + term(self.model, x, y, logits)
        loss = combined + extra
        if not self.finite_or_stop(loss, {**{f"loss_{n}": v for n, v in zip(self.names, losses, strict=True)},
                                          "terms": extra, **parts}):
            return self.skip_step(loss)
        with torch.no_grad():
            n = float(y.shape[0])
            labelled = counts.sum().double().clamp_min(1)
            side = extra.detach().double()
            for v in parts.values():  # the weighting's own terms (GradNorm's gradient-norm loss)
                side = side + v.double()
            self.train_sums.update(torch.cat([
                torch.stack([loss.detach().double() * n, correct.sum().double() * n / labelled,
                             torch.tensor(n, dtype=torch.float64, device=loss.device), side * n]),
                torch.stack([losses.detach().double() * counts.double(), counts.double()], 1).flatten()]))
        return loss

    def on_train_epoch_end(self) -> None:
        sums = self.train_sums.compute()
        per = sums[4:].view(-1, 2)
        mean = (per[:, 0] / per[:, 1]).float()  # NaN for a task with no rows this epoch
        self.combine.epoch_end(mean)
        super().on_train_epoch_end()
        row = self.history[-1]
        weights = self.combine.weights().detach().cpu().tolist()
        for name, m, w in zip(self.names, mean.tolist(), weights, strict=True):
            row[f"train_loss_{name}"] = m
            row[f"weight_{name}"] = w

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        losses, correct, counts = task_losses(logits, y, self.slices, reduction="sum")
        self.val_sums.update(torch.stack([losses.double(), correct.double(), counts.double()], 1).flatten())

    def on_validation_epoch_end(self) -> None:
        per = self.val_sums.compute().view(-1, 3).tolist()
        row: dict[str, float] = {}
        losses, accs = [], []
        for name, (loss_sum, correct, n) in zip(self.names, per, strict=True):
            if n == 0:
                continue
            row[f"val_loss_{name}"], row[f"val_acc_{name}"] = loss_sum / n, correct / n
            losses.append(loss_sum / n)
            accs.append(correct / n)
        if not losses:
            return
        row["val_loss"], row["val_acc"] = sum(losses) / len(losses), sum(accs) / len(accs)
        self._val_row = row
        self.log_dict({"val_loss": row["val_loss"], "val_acc": row["val_acc"]}, on_epoch=True, prog_bar=True)


def check_multitask_inputs(train: TensorBatches, cfg: TrainConfig, slices: Sequence[slice]) -> None:
    """Refuse what multi-task training cannot do (several processes, per-image label options), and labels that are
    not a ``(N, T)`` matrix."""
    check_fit_inputs(train, cfg)
    if cfg.processes > 1:
        raise ValueError("multi-task training runs in one process so far (its per-task sums and learnt task weights "
                         "are not reduced over DDP processes); use devices=1 num_nodes=1")
    for name, off in (("mixup", 0), ("cutmix", 0), ("class_weight", "none"), ("sampler", "random")):
        if getattr(cfg, name) != off:
            raise ConfigError(name, f"{off!r} in multi-task training", getattr(cfg, name), "this option "
                              "assumes one label per image; the spec's 'sampling' balances the tasks")
    require_image_batches(cfg, train)
    if train.y is None or train.y.ndim != 2 or train.y.shape[1] != len(slices):
        raise ValueError(f"multi-task labels must be a matrix (N, {len(slices)}), got "
                         f"{None if train.y is None else tuple(train.y.shape)}")


@torch.no_grad()
def task_scores(model: nn.Module, data: TensorBatches, slices: Sequence[slice],
                names: Sequence[str]) -> dict[str, float]:
    """Per-task ``loss_<task>``/``acc_<task>`` of ``model`` on the rows of ``data`` labelled for each task, and their
    means over tasks with labelled rows as ``loss``/``acc`` (the figures :class:`MultiTaskModule` validates with)."""
    losses, correct, counts = task_losses(model(data.x), data.y, slices, reduction="sum")
    out: dict[str, float] = {}
    for name, loss, c, n in zip(names, losses.tolist(), correct.tolist(), counts.tolist(), strict=True):
        if n:
            out[f"loss_{name}"], out[f"acc_{name}"] = loss / n, c / n
    per = [out[f"loss_{n}"] for n in names if f"loss_{n}" in out]
    if per:
        out["loss"] = sum(per) / len(per)
        out["acc"] = sum(out[f"acc_{n}"] for n in names if f"acc_{n}" in out) / len(per)
    return out


def fit_multitask(
    model: nn.Module, param_groups: Sequence[dict[str, Any]], train: TensorBatches, val: TensorBatches | None,
    cfg: TrainConfig, slices: Sequence[slice], names: Sequence[str], combine: nn.Module,
    sample_weights: torch.Tensor | None = None, run_dir: Any = None, eval_modules: Sequence[nn.Module] = (),
    loss_terms: Sequence[Any] = (), phases: Sequence[Any] = (),
) -> FitResult:
    """Train ``model`` in place on a label matrix (one column per task); it ends with the best validation epoch's
    weights. ``combine``'s own parameters (learnt task weights) train too, at ``cfg.lr`` without weight decay.
    ``sample_weights`` (one per row) draws each epoch's rows with replacement in proportion to them (task sampling);
    ``None`` shuffles every row once per epoch."""
    check_multitask_inputs(train, cfg, slices)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    groups = list(param_groups)
    own = [p for p in combine.parameters() if p.requires_grad]
    if own:
        groups.append({"params": own, "lr": cfg.lr, "name": "task weights", "weight_decay": 0.0})
    module = MultiTaskModule(model, groups, cfg, slices, names, combine, eval_modules, loss_terms)
    loader = make_loader(augmented(train, cfg.augment), cfg.batch_size, shuffle=True, seed=cfg.seed,
                         weights=sample_weights)
    return fit_module(module, loader, val, cfg, run_dir, [PhaseSwitch(phases)])


def train_multitask(
    strategy: Planner, source: Backbone, slices: Sequence[slice], names: Sequence[str], train: TensorBatches,
    val: TensorBatches | None, cfg: TrainConfig, combine: nn.Module, sample_weights: torch.Tensor | None = None,
    run_dir: Any = None,
) -> TrainedModel:
    """Transfer ``source`` to several tasks at once with ``strategy`` (frozen, fine-tuned, LoRA, …): its plan for a
    ``Σ_t C_t``-way head, trained with the tasks' masked losses combined by ``combine``. ``source`` is untouched."""
    total = max(sl.stop for sl in slices)
    plan = strategy.plan(source, total, train, val, cfg)
    trainable = plan.trainable_params + sum(p.numel() for p in combine.parameters() if p.requires_grad)
    if plan.solve is not None:  # a solved head: each task's block on its own labelled rows (no loss weighting)
        check_multitask_inputs(plan.train, plan.cfg, slices)
        result = solve_plan(plan, slices, lambda m, d: task_scores(m, d, slices, names))
        result.solver["tasks"] = dict(zip(names, result.solver["tasks"], strict=True))
    else:
        result = fit_multitask(plan.model, plan.param_groups, plan.train, plan.val, plan.cfg, slices, names, combine,
                               sample_weights, run_dir, plan.eval_modules, plan.loss_terms, plan.phases)
    model = plan.finalize() if plan.finalize is not None else plan.model
    return TrainedModel(model, result, plan.strategy, plan.options, trainable, plan.extra_time_s, plan.feature_cache)
