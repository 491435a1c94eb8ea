"""Trainer factory, the generic ``fit`` loop, and ``train``, which runs a strategy's plan.

Lightning owns the loop, devices, early stopping, checkpoints and the CSV log; this module sets it up the
same way for every strategy: seeded and deterministic, early stopping and best-weight selection on the
validation split, a best checkpoint and resume checkpoints (:mod:`transferkit.engine.checkpoints`) in
``<run_dir>/checkpoints/``, metrics in ``<run_dir>/logs/metrics.csv``.

More than one process (``devices`` × ``num_nodes``) trains with Lightning's DDP strategy: our own samplers
shard each global batch (``use_distributed_sampler=False``), BatchNorm is synchronised, the epoch metrics
are reduced over processes, and only rank 0 writes files (Lightning's loggers and checkpoint I/O).
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import os
import re
import signal
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from transferkit import atomic
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, batches_per_epoch
from transferkit.data.augment import MixupCutmix, augmented, infer_num_classes, require_image_batches
from transferkit.data.balance import class_weights
from transferkit.data.prepare import TensorBatches, make_loader
from transferkit.data.sampling import EpochBatchSampler
from transferkit.engine.checkpoints import AtomicCheckpointIO, Interrupted, ResumeCheckpoints
from transferkit.engine.device import check_precision, resolve_accelerator
from transferkit.engine.head_init import init_head_rows
from transferkit.engine.module import DivergenceError, LossTerm, TransferModule
from transferkit.engine.plan import Phase, Planner, TrainingPlan
from transferkit.engine.syncbn import GlobalBatchNorm

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*The number of training batches.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", ".*but have no `val_dataloader`.*")
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")
warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch ended.*")  # ours resume
warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", ".*Experiment logs directory .* exists and is not empty.*")


@dataclass
class FitResult:
    """What training produced besides the weights (which are restored into the model in place)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("nan")
    epochs_run: int = 0
    train_time_s: float = 0.0
    stopped_early: bool = False
    rank: int = 0  # this process's rank (only rank 0 writes results)
    world_size: int = 1
    checkpoints: int = 0  # resume checkpoints written by this process's run (since any resume)
    checkpoint_time_s: float = 0.0  # and the seconds they took (part of train_time_s)
    epoch_times_s: list[float] = field(default_factory=list)  # per epoch of the run, those before a resume too
    solver: dict[str, Any] | None = None  # a solved plan's record (what it chose); None for a stepped one
    steps_run: int = 0  # optimiser steps taken
    recipe: dict[str, Any] | None = None  # the budget, schedule, rates, augmentation and head init a run used

    def to_dict(self) -> dict[str, Any]:
        out = {"best_epoch": self.best_epoch, "best_score": self.best_score, "epochs_run": self.epochs_run,
               "steps_run": self.steps_run, "train_time_s": self.train_time_s, "stopped_early": self.stopped_early,
               "processes": self.world_size, "checkpoints": self.checkpoints,
               "checkpoint_time_s": self.checkpoint_time_s, "epoch_times_s": self.epoch_times_s}
        if self.recipe is not None:
            out["recipe"] = self.recipe
        return {**out, "solver": self.solver} if self.solver is not None else out


class BestWeights(Callback):
    """Keep an in-memory copy of the weights at the best ``monitor`` value on the validation split
    (saved in resume checkpoints, so a resumed run keeps the best epoch from before the interruption)."""

    def __init__(self, monitor: str) -> None:
        self.monitor, self.mode = monitor, ("min" if monitor.endswith("loss") else "max")
        self.best = float("inf") if self.mode == "min" else -float("inf")
        self.best_epoch, self.state = -1, None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        if getattr(pl_module, "diverged", None) is not None:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if (value < self.best) if self.mode == "min" else (value > self.best):
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(pl_module.model.state_dict())


class PhaseSwitch(Callback):
    """Apply a plan's :class:`~transferkit.engine.plan.Phase` changes at the start of their epochs:
    unfreeze parameters, let their modules train, scale the learning rates (gradual unfreezing, two-phase)."""

    def __init__(self, phases: Sequence[Phase]) -> None:
        self.phases = sorted(phases, key=lambda p: p.start_epoch)
        self.applied: list[tuple[int, str]] = []

    def _release(self, phase: Phase, pl_module: L.LightningModule) -> None:
        for p in phase.unfreeze:
            p.requires_grad_(True)
        released = {id(m) for m in phase.train_modules}
        pl_module.eval_modules = [m for m in pl_module.eval_modules if id(m) not in released]
        for m in phase.train_modules:
            m.train()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and any(p.start_epoch > 0 and (p.unfreeze or p.train_modules) for p in self.phases):
            raise ValueError("gradual unfreezing / two-phase fine-tuning changes which parameters train during the "
                             "run, which DDP cannot follow (it registers the trainable parameters once); train "
                             "with devices=1, or with a fixed freeze=…")
        if trainer.ckpt_path is None:
            return
        # a resumed run: the phases that began up to the checkpoint's epoch (their rates come back with the
        # optimiser and module state; Lightning skips on_train_epoch_start for an epoch resumed in the middle)
        for phase in self.phases:
            if phase.start_epoch <= trainer.current_epoch:
                self._release(phase, pl_module)
                self.applied.append((phase.start_epoch, phase.name))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = set(self.applied)
        for phase in self.phases:
            if phase.start_epoch != trainer.current_epoch or (phase.start_epoch, phase.name) in done:
                continue
            self._release(phase, pl_module)
            if phase.lr_factor is not None:
                pl_module.lr_factor = phase.lr_factor
                for sc in trainer.lr_scheduler_configs:  # the new rates apply from this epoch's first step
                    sched = sc.scheduler
                    for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas,
                                               strict=True):
                        group["lr"] = base * fn(sched.last_epoch)
            self.applied.append((trainer.current_epoch, phase.name))


def build_trainer(cfg: TrainConfig, run_dir: Path | None, callbacks: Sequence[Callback], has_val: bool) -> L.Trainer:
    """A ``lightning.Trainer`` configured from ``cfg`` (CPU by default; ``accelerator``/``devices`` passed through)."""
    cbs = list(callbacks)
    if has_val and cfg.patience is not None:
        mode = "min" if cfg.monitor.endswith("loss") else "max"
        cbs.append(EarlyStopping(cfg.monitor, patience=cfg.patience, mode=mode))
    if has_val and cfg.checkpoints and run_dir is not None:
        cbs.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=cfg.monitor,
                                   mode="min" if cfg.monitor.endswith("loss") else "max", save_top_k=1))
    logger = CSVLogger(save_dir=str(run_dir), name="logs", version="") if run_dir is not None else False
    multi = cfg.processes > 1
    accelerator = resolve_accelerator(cfg.accelerator)
    check_precision(cfg.precision, accelerator)
    return L.Trainer(
        max_epochs=cfg.max_epochs,
        max_steps=cfg.steps if cfg.steps is not None else -1,  # a step budget ends part-way through its last epoch
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy="ddp" if multi and cfg.distributed == "auto" else cfg.distributed,
        use_distributed_sampler=False,  # our samplers shard each global batch themselves (data.sampling)
        plugins=[AtomicCheckpointIO(), *([GlobalBatchNorm()] if multi and cfg.sync_batchnorm else [])],
        precision=cfg.precision,
        deterministic=cfg.deterministic if cfg.deterministic is not None else accelerator == "cpu",
        logger=logger,
        callbacks=cbs,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in cbs),
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        limit_val_batches=1.0 if has_val else 0,
    )


def _batch_options(model: nn.Module, train: TensorBatches, cfg: TrainConfig) -> dict[str, Any]:
    """``TransferModule``'s class weights and Mixup/CutMix from ``cfg``; refuses pixel-only options on features."""
    require_image_batches(cfg, train)  # before any training: --augment/--cutmix need image batches
    if cfg.class_weight == "none" and not (cfg.mixup > 0 or cfg.cutmix > 0):
        return {}
    n = infer_num_classes(model, train)
    return {"class_weights": class_weights(train.y, n) if cfg.class_weight == "balanced" else None,
            "mixer": MixupCutmix.from_config(cfg, n)}


def run_fit(trainer: L.Trainer, module: L.LightningModule, train_loader: Any, val_loaders: Any,
            ckpt_path: str | None = None) -> float:
    """``trainer.fit`` (from ``ckpt_path`` when resuming); returns the seconds it took. Ctrl-C surfaces as
    ``KeyboardInterrupt``."""
    start = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loaders, ckpt_path=ckpt_path)
    except SystemExit:
        # Lightning answers Ctrl-C with a graceful shutdown and sys.exit(1), ignoring further SIGINTs.
        # Turn that back into a KeyboardInterrupt so callers (the API in a notebook, the CLI) can clean up.
        if trainer.interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt
    return time.perf_counter() - start


def fit(
    model: nn.Module,
    param_groups: Sequence[dict[str, Any]],
    train: TensorBatches,
    val: TensorBatches | None,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    eval_modules: Sequence[nn.Module] = (),
    loss_terms: Sequence[LossTerm] = (),
    phases: Sequence[Phase] = (),
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` in place; afterwards it holds the weights of the best validation epoch.

    ``param_groups`` lists what trains and at which learning rate; everything else should have
    ``requires_grad=False``. With no validation data the last epoch's weights are kept.
    """
    check_fit_inputs(train, cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = TransferModule(model, param_groups, cfg, eval_modules, loss_terms, **_batch_options(model, train, cfg))
    train_loader = make_loader(augmented(train, cfg.augment), cfg.batch_size, shuffle=True, seed=cfg.seed,
                               sampler=cfg.sampler, pin_memory=resolve_accelerator(cfg.accelerator) == "gpu")
    return fit_module(module, train_loader, val, cfg, run_dir, [PhaseSwitch(phases), *callbacks])


def check_fit_inputs(train: TensorBatches, cfg: TrainConfig) -> None:
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if cfg.batch_size is None or cfg.lr is None:
        raise ValueError("fit() needs a concrete batch_size and lr (Strategy.resolve fills in defaults)")


def train_samplers(loader: Any) -> list[EpochBatchSampler]:
    """The :class:`EpochBatchSampler` objects behind a training loader (one, or one per loader combined)."""
    loaders = getattr(loader, "flattened", None) or [loader]
    return [dl.batch_sampler for dl in loaders if isinstance(getattr(dl, "batch_sampler", None), EpochBatchSampler)]


def resume_callback(cfg: TrainConfig, run_dir: Path | None, train_loader: Any) -> ResumeCheckpoints | None:
    """The resume-checkpoint callback for a run that writes a run directory (``None`` otherwise)."""
    if run_dir is None or not cfg.checkpoints:
        return None
    return ResumeCheckpoints(Path(run_dir) / "checkpoints", cfg.checkpoint_every, samplers=train_samplers(train_loader))


def keep_log_before_resume(cfg: TrainConfig, run_dir: Path | None) -> None:
    """Lightning's CSV logger starts ``logs/metrics.csv`` afresh; a resumed run keeps the earlier rows beside it
    until it finishes, when :func:`merge_log_after_resume` puts them back in front (the run's history, in
    metrics.json and the plots, is restored from the checkpoint in full)."""
    if cfg.resume_from is None or run_dir is None:
        return
    log = Path(run_dir) / "logs" / "metrics.csv"
    if log.is_file():
        n = len(list(log.parent.glob("metrics.before-resume-*.csv"))) + 1
        log.rename(log.with_name(f"metrics.before-resume-{n}.csv"))


def _epoch_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or "nan")
    except ValueError:
        return float("nan")


def merge_log_after_resume(log_dir: str | Path) -> None:
    """Make ``logs/metrics.csv`` of a finished resumed run hold every epoch of the whole run: the rows of the
    ``metrics.before-resume-N.csv`` files (oldest first) of the epochs before the ones logged after each resume
    (an epoch redone after the interruption keeps only its new rows), then the rows since; the old files go."""
    log = Path(log_dir) / "metrics.csv"
    before = sorted(log.parent.glob("metrics.before-resume-*.csv"),
                    key=lambda p: int(m.group(1)) if (m := re.search(r"-(\d+)\.csv$", p.name)) else 0)
    if not before or not log.is_file():
        return
    parts: list[list[dict[str, str]]] = []
    fields: list[str] = []
    cutoff = float("inf")
    for path in [*before, log][::-1]:  # newest first: each older file contributes the epochs before the newer ones
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = [r for r in reader if not _epoch_of(r) >= cutoff]
            fields = [*fields, *(f for f in reader.fieldnames or [] if f not in fields)]
        parts.append(rows)
        cutoff = min([cutoff, *(e for r in rows if not math.isnan(e := _epoch_of(r)))])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rows in parts[::-1]:
        writer.writerows(rows)
    atomic.write_text(log, buf.getvalue())
    for path in before:
        path.unlink()


def set_process_threads(cfg: TrainConfig) -> None:
    """Several CPU processes on one machine share its cores: each takes its part (no oversubscription)."""
    if cfg.processes > 1 and resolve_accelerator(cfg.accelerator) == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // max(cfg.processes // max(cfg.num_nodes, 1), 1)))


def guarded_fit(trainer: L.Trainer, module: TransferModule, train_loader: Any, val_loaders: Any, cfg: TrainConfig,
                saver: ResumeCheckpoints | None) -> float:
    """:func:`run_fit` with the fault handling every training loop shares: a signal-triggered stop re-raised as
    :class:`~transferkit.engine.checkpoints.Interrupted` naming the checkpoint it saved."""
    set_process_threads(cfg)
    try:
        elapsed = run_fit(trainer, module, train_loader, val_loaders, cfg.resume_from)
    except KeyboardInterrupt:
        if saver is not None and saver._requested is not None:  # noqa: SLF001
            raise Interrupted(saver._requested, saver.last_path) from None  # noqa: SLF001
        raise
    if cfg.resume_from is not None and trainer.global_rank == 0 and isinstance(trainer.logger, CSVLogger):
        merge_log_after_resume(trainer.logger.log_dir)
    return elapsed


def divergence_message(diverged: dict[str, Any], saver: ResumeCheckpoints | None, cfg: TrainConfig) -> str:
    where = (f"the last good checkpoint is {saver.last_path}" if saver is not None and saver.last_path is not None
             else "no checkpoint was written before it")
    return (f"training diverged at step {diverged['step']} (epoch {diverged['epoch'] + 1}): {diverged['what']}; "
            f"{where}. Try a lower learning rate (now lr={cfg.lr:g})")


def fit_module(module: TransferModule, train_loader: Any, val: TensorBatches | None, cfg: TrainConfig,
               run_dir: Path | None = None, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Run a built module: early stopping and the kept weights follow ``cfg.monitor`` on ``val``; afterwards
    ``module.model`` holds the best validation epoch's weights (the last epoch's without validation data).

    With a ``run_dir``, resume checkpoints are written there (``cfg.checkpoint_every`` steps and epoch ends)
    and ``cfg.resume_from`` continues from one. A non-finite loss or gradient raises
    :class:`~transferkit.engine.module.DivergenceError`; SIGINT/SIGTERM saves a checkpoint and raises
    :class:`~transferkit.engine.checkpoints.Interrupted`.
    """
    has_val = val is not None and len(val) > 0
    best = BestWeights(cfg.monitor)
    keep_log_before_resume(cfg, run_dir)
    saver = resume_callback(cfg, run_dir, train_loader)
    trainer = build_trainer(cfg, run_dir, [best, *callbacks, *([saver] if saver else [])], has_val)
    val_loader = make_loader(val, max(cfg.batch_size, 256), shuffle=False,  # type: ignore[arg-type]
                             pin_memory=resolve_accelerator(cfg.accelerator) == "gpu") if has_val else None
    elapsed = guarded_fit(trainer, module, train_loader, val_loader, cfg, saver)
    if module.diverged is not None:
        raise DivergenceError(divergence_message(module.diverged, saver, cfg))
    model = module.model
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    return FitResult(
        history=module.history,
        best_epoch=best.best_epoch,
        best_score=best.best if best.state is not None else float("nan"),
        epochs_run=trainer.current_epoch,
        train_time_s=module.time_before_resume + elapsed,
        stopped_early=_stopped_early(trainer, cfg),
        rank=trainer.global_rank,
        world_size=trainer.world_size,
        checkpoints=saver.saves if saver else 0,
        checkpoint_time_s=saver.save_seconds if saver else 0.0,
        epoch_times_s=list(module.epoch_times),
        steps_run=int(trainer.global_step),
    )


def _stopped_early(trainer: L.Trainer, cfg: TrainConfig) -> bool:
    """Whether the loop ended before its budget: the step budget, or (an epoch budget) the epochs."""
    if cfg.steps is not None:
        return int(trainer.global_step) < cfg.steps
    return trainer.current_epoch < cfg.max_epochs


def recipe_record(cfg: TrainConfig, n_train: int, plan_recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a stepped run was trained with (``FitResult.recipe``, in metrics.json): the budget (``steps``, or
    ``None`` for an epoch budget, and the ``epochs`` — derived from the steps and the ``batches_per_epoch`` when the
    budget is in steps), ``warmup_steps``, ``schedule``, ``lr``, ``batch_size``, ``augment``, early stopping
    (``patience``), and what the strategy adds (``plan_recipe``: the head init and its C, the BatchNorm policy, the
    backbone's rate)."""
    per_epoch = batches_per_epoch(n_train, cfg.batch_size or 1)
    total = cfg.steps if cfg.steps is not None else cfg.max_epochs * per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else total * cfg.warmup_epochs // max(cfg.max_epochs, 1)
    return {"budget": "steps" if cfg.steps is not None else "epochs", "steps": total, "epochs": cfg.max_epochs,
            "batches_per_epoch": per_epoch, "warmup_steps": int(warmup), "schedule": cfg.schedule or "constant",
            "lr": cfg.lr, "batch_size": cfg.batch_size, "augment": cfg.augment or "none",
            "early_stopping": cfg.patience is not None, **(plan_recipe or {})}


Scores = Callable[[nn.Module, TensorBatches], dict[str, float]]


@torch.no_grad()
def head_scores(model: nn.Module, data: TensorBatches) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "acc": accuracy}`` of ``model`` on every item of ``data`` at once (cached
    features: one matrix multiply)."""
    logits = model(data.x)
    return {"loss": float(F.cross_entropy(logits, data.y)), "acc": float((logits.argmax(1) == data.y).float().mean())}


def solve_plan(plan: TrainingPlan, slices: Sequence[slice] | None = None, scores: Scores = head_scores) -> FitResult:
    """Run a plan that is solved, not stepped (``plan.solve``: the L-BFGS linear probe) — no Lightning loop, epochs,
    checkpoints or processes. ``plan.model`` ends with the solution. The history is one row (``epoch`` 0): training
    and, with validation data, validation ``scores`` of the solution (validation data never fit it); ``best_epoch`` 0,
    ``epochs_run`` 0, ``best_score`` the validation ``cfg.monitor``; ``solver`` the plan's record plus ``solve_s``."""
    start = time.perf_counter()
    record = plan.solve(slices)
    elapsed = time.perf_counter() - start
    plan.model.eval()
    row = {"epoch": 0.0, **{f"train_{k}": v for k, v in scores(plan.model, plan.train).items()}}
    if plan.val is not None and len(plan.val):
        row.update({f"val_{k}": v for k, v in scores(plan.model, plan.val).items()})
    return FitResult(history=[row], best_epoch=0, best_score=row.get(plan.cfg.monitor, float("nan")), epochs_run=0,
                     train_time_s=elapsed, solver={**record, "solve_s": elapsed})


@dataclass
class TrainedModel:
    """The target model (weights of the best validation epoch) and how it got there."""

    model: Backbone
    fit: FitResult
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    trainable_params: int = 0
    extra_time_s: float = 0.0  # time before the training loop (feature extraction)
    feature_cache: str | None = None
    head_init: dict[str, Any] | None = None  # which head rows started from the source head's

    @property
    def total_time_s(self) -> float:
        return self.fit.train_time_s + self.extra_time_s


def train(
    strategy: Planner, source: Backbone, num_classes: int, train_data: TensorBatches, val_data: TensorBatches | None,
    cfg: TrainConfig, run_dir: Path | None = None, head_init: Mapping[int, int] | None = None,
    class_names: tuple[list[str], list[str]] | None = None, callbacks: Sequence[Callback] = (),
) -> TrainedModel:
    """Transfer ``source`` to a ``num_classes``-way task with ``strategy``: plan, fit, assemble.

    ``source`` is never modified. Early stopping and the kept weights follow the validation data only.
    ``head_init`` (``{target class: source class}``, e.g. from
    :func:`transferkit.data.class_map.match_classes`) starts those rows of the new head from the source
    head's (strategies that build a new head on the source's features: finetune, linear_probe, lora);
    ``class_names`` = ``(target classes, source classes)`` only label the report; ``callbacks`` are further
    Lightning callbacks (e.g. a hyper-parameter search's pruning hook).
    """
    plan = strategy.plan(source, num_classes, train_data, val_data, cfg)
    head_report = None
    if head_init is not None and plan.head is not None and plan.recipe.get("head_init") != "probe":
        tnames, snames = class_names or (None, None)
        head_report = init_head_rows(plan.head, getattr(source, "head", None), head_init, snames, tnames)
        if plan.solve is not None and head_report["applied"]:  # the solve overwrites the rows: say so
            head_report = {**head_report, "applied": False,
                           "reason": "a solved head reaches the same optimum from any start"}
    elif head_init is not None and plan.recipe.get("head_init") == "probe" and plan.head is not None:
        tnames, snames = class_names or (None, None)  # LP-FT: the solved probe is the better start; keep it
        head_report = init_head_rows(None, None, head_init, snames, tnames)  # names the matches, copies nothing
        if head_report["matched"]:
            head_report["reason"] = "the head starts from the linear probe solved on the training images (LP-FT)"
    trainable = plan.trainable_params
    if plan.solve is not None:
        result = solve_plan(plan)
    else:
        result = fit(plan.model, plan.param_groups, plan.train, plan.val, plan.cfg, run_dir, plan.eval_modules,
                     plan.loss_terms, plan.phases, callbacks)
    if plan.solve is None:
        result.recipe = recipe_record(plan.cfg, len(plan.train), plan.recipe)
    model = plan.finalize() if plan.finalize is not None else plan.model
    return TrainedModel(model, result, plan.strategy, plan.options, trainable, plan.extra_time_s, plan.feature_cache,
                        head_report)
