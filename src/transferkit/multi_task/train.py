"""Multi-task transfer and the answer to "did sharing help?": the method of the ``multitask`` job, without its files.

:func:`plan_tasks` prepares the trained tasks (one logit slice each, :func:`task_slices`), the loss weighting —
fixed, uncertainty (Kendall, Gal & Cipolla, 2018), GradNorm (Chen et al., 2018) or dynamic weight averaging (Liu,
Johns & Davison, 2019), :mod:`~transferkit.multi_task.weighting` — and the task sampling weights.
:func:`train_and_compare` trains the shared model (:func:`~transferkit.engine.multitask.train_multitask`), then:

* a **single-task model** per task (:func:`single_task_baselines`): same source, strategy, options and labelled
  rows, trained on that task alone for the **same number of optimiser steps** (:func:`single_task_cfg`), so the
  comparison is not one of training budgets;
* a **holdout probe** per holdout task (:func:`holdout_probes`): a logistic-regression probe on each model's
  features (and the source's) — how well what the tasks learnt transfers to a task none of them saw.

What the job owns and hands in: the strategy factory (``new_strategy``), the metrics function (``metrics``) and where
progress goes (``log``). Nothing here reads a spec file or writes a run directory.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features, predict_logits
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.multitask import train_multitask
from transferkit.engine.trainer import TrainedModel
from transferkit.few_shot.setfit import fit_logistic_head
from transferkit.multi_task.data import (
    MISSING,
    MultiTaskSet,
    label_column,
    labelled_rows,
    task_batches,
    task_sampling_weights,
)
from transferkit.multi_task.spec import MultiTaskSpec
from transferkit.multi_task.weighting import FixedWeighting, TaskWeighting, make_weighting

if TYPE_CHECKING:
    from transferkit.engine.plan import Planner
    from transferkit.rundir import RunSession
    from transferkit.strategies.base import Strategy

Metrics = Callable[[np.ndarray, np.ndarray, Sequence[str]], dict[str, Any]]
"""``metrics(y_true, y_pred, classes) -> classification metrics`` (with ``accuracy``), given by the job."""


def task_slices(sizes: list[int]) -> list[slice]:
    """Consecutive logit columns per task: sizes ``[10, 4]`` → ``[0:10, 10:14]`` — one linear head of ``Σ C_t``
    outputs is ``T`` heads side by side, so every strategy's plan serves several tasks unchanged."""
    ends = np.cumsum([0, *sizes]).tolist()
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def score_tasks(model: Backbone, data: TensorBatches, names: list[str], classes: list[list[str]],
                slices: list[slice], metrics: Metrics) -> dict[str, dict[str, Any]]:
    """Per-task ``metrics`` of ``model`` on the rows of ``data`` labelled for each task (a task's prediction is the
    argmax of its own logit slice; rows without its label are left out)."""
    logits = predict_logits(model, data)
    out = {}
    for t, (name, cls, sl) in enumerate(zip(names, classes, slices, strict=True)):
        y = data.y[:, t].numpy()
        rows = y != MISSING
        m = metrics(y[rows], logits[rows][:, sl].argmax(1).numpy(), cls)
        out[name] = m
    return out


def single_task_cfg(cfg: TrainConfig, steps_mt: int, rows: int, batch_size: int) -> TrainConfig:
    """``cfg`` for a single-task model with as many optimiser steps as the multi-task run (epochs and patience
    scaled by the ratio of steps per epoch): a task alone has fewer rows, and fewer steps would flatter sharing."""
    factor = steps_mt / max(math.ceil(rows / batch_size), 1)
    return dataclasses.replace(cfg, epochs=max(1, round(cfg.epochs * factor)),
                               patience=None if cfg.patience is None else max(1, math.ceil(cfg.patience * factor)),
                               checkpoints=False)


def probe_accuracy(model: Backbone, train: TensorBatches, test: TensorBatches, classes: list[str],
                   seed: int) -> float:
    """Test accuracy of a logistic-regression probe on ``model``'s standardised features (a holdout task's measure
    of how well a representation transfers to a task it was not trained on)."""
    f_train, f_test = extract_features(model, train), extract_features(model, test)
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    weight, bias = fit_logistic_head((f_train - mean) / std, train.y[:, 0], len(classes), seed)
    pred = (((f_test - mean) / std) @ weight.T + bias).argmax(1)
    return float((pred == test.y[:, 0]).float().mean())


@dataclasses.dataclass(frozen=True)
class MultiTaskData:
    """What a run reads: the spec's training data, its labelled budget (training and validation rows), the test
    split (``None`` when a dataset has none) and the source model with its bundle metadata."""

    full: MultiTaskSet
    train_set: MultiTaskSet
    val_set: MultiTaskSet
    test_set: MultiTaskSet | None
    source: Backbone
    source_meta: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MultiTaskPlan:
    """The trained (non-holdout) tasks — label columns, names, classes, logit slices — their data prepared for the
    source, the split scored (``eval_b``: the test split, else the validation rows), the loss weighting and the
    task sampling weights."""

    cols: list[int]
    names: list[str]
    classes: list[list[str]]
    slices: list[slice]
    train_b: TensorBatches
    val_b: TensorBatches
    eval_b: TensorBatches
    split: str
    combine: TaskWeighting
    weights: torch.Tensor | None

    @property
    def head_classes(self) -> list[str]:
        """The class names of all heads side by side, ``task:class`` (a bundle's ``classes``)."""
        return [f"{n}:{c}" for n, cs in zip(self.names, self.classes, strict=True) for c in cs]


@dataclasses.dataclass(frozen=True)
class MultiTaskResult:
    """The multi-task model and its scores, its steps per epoch, the single-task baselines (scores, epochs,
    seconds), the holdout probes and the loss weighting's final task weights."""

    trained: TrainedModel
    scores: dict[str, dict[str, Any]]
    steps_per_epoch: int
    single_scores: dict[str, dict[str, Any]]
    single_epochs: dict[str, int]
    baseline_s: float
    holdout: dict[str, dict[str, Any]]
    final_weights: dict[str, float]


def plan_tasks(spec: MultiTaskSpec, d: MultiTaskData) -> MultiTaskPlan:
    """The trained tasks (the holdout ones are only probed), their logit slices, the data prepared once for the
    source, the loss weighting (Kendall et al. 2018, Chen et al. 2018, Liu et al. 2019, or fixed) and the task
    sampling weights."""
    cols = [i for i, t in enumerate(spec.tasks) if not t.holdout]
    names = [spec.tasks[i].name for i in cols]
    classes = [d.full.classes[i] for i in cols]
    slices = task_slices([len(c) for c in classes])
    # the rows the shared model trains on: those with a label of a trained task (not rows drawn for a holdout only)
    mt_rows = labelled_rows(d.train_set, cols)
    spec_in = d.source.input_spec
    train_b, val_b = task_batches(d.train_set, spec_in, cols, mt_rows), task_batches(d.val_set, spec_in, cols)
    eval_b = task_batches(d.test_set, spec_in, cols) if d.test_set is not None else val_b
    split = "test" if d.test_set is not None else "validation"
    combine = make_weighting(spec.weighting, len(cols), [spec.tasks[i].weight for i in cols], spec.gradnorm_alpha,
                             spec.dwa_temperature)
    weights = task_sampling_weights(d.train_set.labels[mt_rows][:, cols], spec.sampling, spec.temperature)
    return MultiTaskPlan(cols, names, classes, slices, train_b, val_b, eval_b, split, combine, weights)


def train_and_compare(spec: MultiTaskSpec, strat: Strategy, cfg: TrainConfig, session: RunSession, d: MultiTaskData,
                      plan: MultiTaskPlan, new_strategy: Callable[[], Planner], metrics: Metrics,
                      log: Callable[[str], object]) -> MultiTaskResult:
    """The multi-task model (continued from the session's checkpoint when resuming), scored once; then the
    single-task baselines with as many optimiser steps (each with a fresh ``new_strategy()``), and the holdout
    probes on every model's features."""
    run_cfg = cfg if session.resume_from is None else dataclasses.replace(cfg, resume_from=str(session.resume_from))
    log(f"multitask: {len(plan.names)} task(s) {plan.names} on {len(plan.train_b)} training rows, "
        f"{spec.weighting} weighting, {spec.sampling} sampling")
    trained = train_multitask(strat, d.source, plan.slices, plan.names, plan.train_b, plan.val_b, run_cfg,
                              plan.combine, plan.weights, session.path)
    mt_scores = score_tasks(trained.model, plan.eval_b, plan.names, plan.classes, plan.slices, metrics)
    batch_size = strat.resolve(cfg).batch_size or 1
    steps_mt = math.ceil(len(plan.train_b) / batch_size)
    singles, single_scores, single_epochs, baseline_s = single_task_baselines(
        spec, plan, d, cfg, steps_mt, batch_size, new_strategy, metrics, log)
    holdout = holdout_probes(spec, d, trained.model, singles, cfg.seed)
    final_weights = dict(zip(plan.names, plan.combine.weights().detach().cpu().tolist(), strict=True))
    return MultiTaskResult(trained, mt_scores, steps_mt, single_scores, single_epochs, baseline_s, holdout,
                           final_weights)


def single_task_baselines(spec: MultiTaskSpec, plan: MultiTaskPlan, d: MultiTaskData, cfg: TrainConfig, steps_mt: int,
                          batch_size: int, new_strategy: Callable[[], Planner], metrics: Metrics,
                          log: Callable[[str], object],
                          ) -> tuple[dict[str, TrainedModel], dict[str, dict[str, Any]], dict[str, int], float]:
    """With ``spec.baselines`` and several tasks: one single-task model per trained task, trained for as many
    optimiser steps as the multi-task run, scored on the same images (the test split; without one, each task's
    validation rows). Returns the models, their scores, their epochs and the seconds they took."""
    singles: dict[str, TrainedModel] = {}
    single_scores: dict[str, dict[str, Any]] = {}
    single_epochs: dict[str, int] = {}
    baseline_s = 0.0
    if not (spec.baselines and len(plan.cols) > 1):
        return singles, single_scores, single_epochs, baseline_s
    eval_b = plan.eval_b if d.test_set is not None else None
    spec_in = d.source.input_spec
    for k, (i, name) in enumerate(zip(plan.cols, plan.names, strict=True)):
        t0 = time.perf_counter()
        tr_rows, va_rows = labelled_rows(d.train_set, i), labelled_rows(d.val_set, i)
        tr = task_batches(d.train_set, spec_in, [i], tr_rows)
        va = task_batches(d.val_set, spec_in, [i], va_rows)
        one = task_slices([len(plan.classes[k])])
        c1 = single_task_cfg(cfg, steps_mt, len(tr_rows), batch_size)
        log(f"  single-task baseline '{name}': {len(tr_rows)} rows, {c1.epochs} epochs "
            f"(as many steps as the multi-task run)")
        single_epochs[name] = c1.epochs
        singles[name] = train_multitask(new_strategy(), d.source, one, [name], tr, va, c1, FixedWeighting(1))
        ev = va if eval_b is None else label_column(eval_b, k)  # the test images prepared once, by plan_tasks
        single_scores[name] = score_tasks(singles[name].model, ev, [name], [plan.classes[k]], one, metrics)[name]
        baseline_s += time.perf_counter() - t0
    return singles, single_scores, single_epochs, baseline_s


def holdout_probes(spec: MultiTaskSpec, d: MultiTaskData, mt: Backbone, singles: dict[str, TrainedModel],
                   seed: int) -> dict[str, dict[str, Any]]:
    """Probe accuracy of every holdout task on the source's, the multi-task model's and each single-task model's
    features (training labels from the task's budget, scored on the test split, else the validation rows)."""
    out: dict[str, dict[str, Any]] = {}
    eval_set = d.test_set if d.test_set is not None else d.val_set
    source, spec_in = d.source, d.source.input_spec
    for i, task in enumerate(spec.tasks):
        if not task.holdout:
            continue
        tr_rows, ev_rows = labelled_rows(d.train_set, i), labelled_rows(eval_set, i)
        if len(ev_rows) == 0:
            out[task.name] = {"error": "no labelled evaluation rows"}
            continue
        tr, ev = task_batches(d.train_set, spec_in, [i], tr_rows), task_batches(eval_set, spec_in, [i], ev_rows)
        models = {"source": source, "multi-task": mt, **{f"single-task {n}": m.model for n, m in singles.items()}}
        out[task.name] = {"classes": d.full.classes[i], "train_labels": len(tr_rows), "n": len(ev_rows),
                          "accuracy": {k: probe_accuracy(m, tr, ev, d.full.classes[i], seed)
                                       for k, m in models.items()}}
    return out
