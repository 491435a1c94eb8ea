"""``multitask``: one pretrained backbone, one head per task, trained together — and did sharing help?

The job reads a spec (``tasks.yaml``, :mod:`transferkit.multi_task.spec`), draws every task's labelled budget from
the training split(s) (:func:`~transferkit.multi_task.data.budget_split`), and transfers the source with any strategy
(``finetune``, ``linear_probe``, ``lora``, …) to all tasks at once: one head per task (their logits side by side),
each task's cross-entropy over the rows labelled for it, combined by the chosen loss weighting
(:mod:`transferkit.multi_task.weighting`), with the chosen task sampling.

Then it answers the user's question: each trained task also gets a **single-task model** — same source, strategy,
options and labelled rows, trained on that task alone with the **same number of optimiser steps** (its epochs and
patience scaled by the ratio of steps per epoch) — and the report puts the two side by side on the test split
(one table, one chart). A ``holdout`` task is trained by neither: a logistic-regression probe on each model's
features (and the source's) measures how well what the tasks learnt transfers to a task none of them saw.
Early stopping uses the validation rows (mean of the tasks' validation losses); the test split is scored once.

The bundle holds all trained heads (``tasks`` in its JSON: names, classes, which logits); ``predict`` returns every
task's prediction.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from transferkit.api.runs import (
    RunResult,
    check_channels,
    load_source,
    make_strategy,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features, predict_logits
from transferkit.bundle import save_bundle
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import labels_record
from transferkit.engine.multitask import train_multitask
from transferkit.engine.trainer import TrainedModel
from transferkit.few_shot.setfit import fit_logistic_head
from transferkit.multi_task.data import MISSING, MultiTaskSet, budget_split, load_multitask, task_sampling_weights
from transferkit.multi_task.spec import MultiTaskSpec, load_spec, parse_spec
from transferkit.multi_task.weighting import FixedWeighting, make_weighting
from transferkit.provenance import provenance
from transferkit.report.metrics import classification_metrics, describe_selection
from transferkit.report.multitask import write_multitask_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, run_session

TRAIN_DEFAULTS = {"epochs": 30, "patience": 10, "seed": 0}


def task_slices(sizes: list[int]) -> list[slice]:
    """Consecutive logit columns per task: sizes ``[10, 4]`` → ``[0:10, 10:14]``."""
    ends = np.cumsum([0, *sizes]).tolist()
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _batches(data: MultiTaskSet, model: Backbone, columns: list[int], rows: np.ndarray | None = None) -> TensorBatches:
    """``data`` (or its ``rows``) prepared for ``model``, labels = the ``columns`` of the label matrix."""
    if rows is not None:
        data = data.subset(rows)
    out = to_batches(data.inputs, model.input_spec)
    out.y = torch.from_numpy(np.ascontiguousarray(data.labels[:, columns]))
    return out


def _column(data: TensorBatches, k: int) -> TensorBatches:
    """``data`` with only label column ``k`` (the same tensors: nothing is prepared again)."""
    out = copy.copy(data)
    out.y = data.y[:, k:k + 1]
    return out


def _score_tasks(model: Backbone, data: TensorBatches, names: list[str], classes: list[list[str]],
                 slices: list[slice]) -> dict[str, dict[str, Any]]:
    """Per-task metrics of ``model`` on the rows of ``data`` labelled for each task."""
    logits = predict_logits(model, data)
    out = {}
    for t, (name, cls, sl) in enumerate(zip(names, classes, slices, strict=True)):
        y = data.y[:, t].numpy()
        rows = y != MISSING
        m = classification_metrics(y[rows], logits[rows][:, sl].argmax(1).numpy(), cls)
        out[name] = m
    return out


def _single_task_cfg(cfg: TrainConfig, steps_mt: int, rows: int, batch_size: int) -> TrainConfig:
    """``cfg`` for a single-task model with as many optimiser steps as the multi-task run (epochs and patience
    scaled by the ratio of steps per epoch)."""
    factor = steps_mt / max(math.ceil(rows / batch_size), 1)
    return dataclasses.replace(cfg, epochs=max(1, round(cfg.epochs * factor)),
                               patience=None if cfg.patience is None else max(1, math.ceil(cfg.patience * factor)),
                               checkpoints=False)


def _probe(model: Backbone, train: TensorBatches, test: TensorBatches, classes: list[str], seed: int) -> float:
    """Test accuracy of a logistic-regression probe on ``model``'s features (holdout tasks)."""
    f_train, f_test = extract_features(model, train), extract_features(model, test)
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    weight, bias = fit_logistic_head((f_train - mean) / std, train.y[:, 0], len(classes), seed)
    pred = (((f_test - mean) / std) @ weight.T + bias).argmax(1)
    return float((pred == test.y[:, 0]).float().mean())


def _resolve_spec(config: str | Path | Mapping[str, Any], overrides: dict[str, Any]) -> tuple[MultiTaskSpec, dict]:
    where = f"--config {config}" if isinstance(config, (str, Path)) else "multitask"
    raw = load_spec(config) if isinstance(config, (str, Path)) else dict(config)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return parse_spec(raw, where), raw


def multitask(
    config: str | Path | Mapping[str, Any], source: str | Path | Backbone | None = None,
    out: str | Path | None = None, seed: int | None = None, epochs: int | None = None,
    strategy: str | None = None, weighting: str | None = None, sampling: str | None = None,
    baselines: bool | None = None, strict: bool = False, resume: bool = False, overwrite: bool = False,
    progress: bool = False, console: Console | None = None,
) -> RunResult:
    """Train several tasks on one transferred backbone and compare each with its single-task model.

    ``config`` is a ``tasks.yaml`` path or the same mapping (``tasks``, ``data``, ``source``, ``strategy``,
    ``options``, ``weighting`` = fixed/uncertainty/gradnorm/dwa, ``sampling`` = proportional/uniform/temperature,
    ``temperature``, training settings; :mod:`transferkit.multi_task.spec`). The keyword arguments override the
    spec's values. Writes ``out`` (default ``runs/multitask``): config.yaml, metrics.json, report.md (one table, one
    chart), learning_curves.png and bundle/ (every task's head).
    """
    console = console or Console()
    src_override = None if source is None or isinstance(source, Backbone) else str(source)
    spec, raw = _resolve_spec(config, {"source": src_override, "out": None if out is None else str(out),
                                       "seed": seed, "epochs": epochs, "strategy": strategy, "weighting": weighting,
                                       "sampling": sampling, "baselines": baselines})
    if source is None and spec.source is None:
        raise ValueError("multitask: no source model; give 'source:' in the spec or --source (a run directory, "
                         "bundle or pretrained backbone name)")
    strat = make_strategy(spec.strategy, options=spec.options)  # option errors before any data is read
    train_opts = {**TRAIN_DEFAULTS, **spec.train}
    cfg = TrainConfig(progress=progress, **train_opts)
    config_record = {"command": "multitask", **raw}
    if isinstance(source, Backbone):
        config_record["source"] = f"<{source.arch} model object>"
    out_dir = Path(spec.out or "runs/multitask") if out is None else check_output_dir(out)  # --out "": refused
    inputs = [None if isinstance(config, Mapping) else config, spec.source, spec.data,
              *(t.data for t in spec.tasks)]  # the spec file, source and data: never written over
    check_output_dir(out_dir, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    full = load_multitask(spec, "train", strict=strict)
    train_set, val_set = budget_split(full, spec, cfg.seed)
    datas = [d for d in [spec.data, *(t.data for t in spec.tasks)] if d is not None]
    test_set = load_multitask(spec, "test", full.classes, strict) if all(has_split(d, "test") for d in datas) \
        else None
    if test_set is None and len(val_set) == 0:  # K is the whole budget (issue 26): then nothing would be scored
        raise ValueError("multitask: the data has no test split and no task has validation rows (a task with "
                         "labels_per_class uses its K labels for training only); give a task val_per_class for a "
                         "separate validation set to score on")
    model_src, source_meta = load_source(source if isinstance(source, Backbone) else spec.source, spec.image_size,
                                         None, spec.max_length)
    check_channels(full.inputs, model_src, False, "multitask")
    cols = [i for i, t in enumerate(spec.tasks) if not t.holdout]
    names = [spec.tasks[i].name for i in cols]
    classes = [full.classes[i] for i in cols]
    slices = task_slices([len(c) for c in classes])
    # the rows the shared model trains on: those with a label of a trained task (not rows drawn for a holdout only)
    mt_rows = np.flatnonzero((train_set.labels[:, cols] != MISSING).any(1))
    train_b, val_b = _batches(train_set, model_src, cols, mt_rows), _batches(val_set, model_src, cols)
    eval_b = _batches(test_set, model_src, cols) if test_set is not None else val_b
    split = "test" if test_set is not None else "validation"
    combine = make_weighting(spec.weighting, len(cols), [spec.tasks[i].weight for i in cols], spec.gradnorm_alpha,
                             spec.dwa_temperature)
    weights = task_sampling_weights(train_set.labels[mt_rows][:, cols], spec.sampling, spec.temperature)
    with run_session(out_dir, resume, overwrite, config_record, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config_record)
        run_cfg = cfg if session.resume_from is None else dataclasses.replace(cfg, resume_from=str(session.resume_from))
        console.print(f"multitask: {len(names)} task(s) {names} on {len(train_b)} training rows, {spec.weighting} "
                      f"weighting, {spec.sampling} sampling")
        trained = train_multitask(strat, model_src, slices, names, train_b, val_b, run_cfg, combine, weights, tmp)
        mt_scores = _score_tasks(trained.model, eval_b, names, classes, slices)
        batch_size = strat.resolve(cfg).batch_size or 1
        steps_mt = math.ceil(len(train_b) / batch_size)
        singles, single_scores, single_epochs, baseline_s = _single_task_baselines(
            spec, cols, names, classes, train_set, val_set, eval_b if test_set is not None else None, model_src,
            cfg, steps_mt, batch_size, console)
        holdout = _holdout_probes(spec, full, train_set, test_set if test_set is not None else val_set, model_src,
                                  trained.model, singles, cfg.seed)
        metrics = _metrics(spec, full, train_set, val_set, names, cols, classes, mt_scores, single_scores, holdout,
                           trained, combine, split, baseline_s, time.perf_counter() - start, strat)
        metrics["seed"] = cfg.seed
        for name, epochs_t in single_epochs.items():
            metrics["tasks"][name]["single_task_epochs"] = epochs_t
        metrics["steps_per_epoch"] = steps_mt
        metrics["provenance"] = provenance(cfg.seed, {"train": train_b.key, "validation": val_b.key,
                                                      split: eval_b.key if test_set is not None else None})
        tasks_meta = [{"name": n, "classes": c, "start": s.start, "stop": s.stop}
                      for n, c, s in zip(names, classes, slices, strict=True)]
        lineage = {"kind": "multitask", "source": source_meta.get("source", "scratch"),
                   "source_lineage": source_meta.get("lineage"), "data": spec.data,
                   "tasks": [dataclasses.asdict(t) for t in spec.tasks], "strategy": trained.strategy,
                   "options": trained.options, "weighting": spec.weighting, "sampling": spec.sampling,
                   "seed": cfg.seed}
        save_bundle(trained.model, {"classes": [f"{n}:{c}" for n, cs in zip(names, classes, strict=True) for c in cs],
                                    "tasks": tasks_meta, "lineage": lineage, "config": config_record,
                                    "metrics": {"split": split, **{n: {"accuracy": mt_scores[n]["accuracy"]}
                                                                   for n in names}}},
                    tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_multitask_report(tmp, metrics, trained.fit.history, trained.fit.solver)
    rows = [[n, f"{r['multitask']['accuracy']:.4f}",
             f"{r['single_task']['accuracy']:.4f}" if r.get("single_task") else "-",
             f"{r['delta']:+.4f}" if r.get("delta") is not None else "-"] for n, r in metrics["tasks"].items()]
    console.print(comparison_table(["task", "multi-task", "single-task", "Δ"], rows,
                                   f"multitask → {out_dir}  ({split} accuracy)"))
    console.print(f"report: {out_dir / 'report.md'}   bundle: {out_dir / 'bundle'}")
    return RunResult(out_dir, metrics, trained.model, {"classes": [f"{n}:{c}" for n, cs in zip(names, classes,
                                                                                               strict=True)
                                                                   for c in cs], "tasks": tasks_meta})


def _single_task_baselines(spec: MultiTaskSpec, cols: list[int], names: list[str], classes: list[list[str]],
                           train_set: MultiTaskSet, val_set: MultiTaskSet, eval_b: Any, model_src: Backbone,
                           cfg: TrainConfig, steps_mt: int, batch_size: int, console: Console,
                           ) -> tuple[dict[str, TrainedModel], dict[str, dict[str, Any]], dict[str, int], float]:
    """With ``spec.baselines`` and several tasks: one single-task model per task, trained for as many optimiser
    steps as the multi-task run, scored on the same images (``eval_b``: the test split; ``None``: each task's
    validation rows). Returns the models, their scores, their epochs and the seconds they took."""
    singles: dict[str, TrainedModel] = {}
    single_scores: dict[str, dict[str, Any]] = {}
    single_epochs: dict[str, int] = {}
    baseline_s = 0.0
    if not (spec.baselines and len(cols) > 1):
        return singles, single_scores, single_epochs, baseline_s
    for k, (i, name) in enumerate(zip(cols, names, strict=True)):
        t0 = time.perf_counter()
        tr_rows = np.flatnonzero(train_set.labels[:, i] != MISSING)
        va_rows = np.flatnonzero(val_set.labels[:, i] != MISSING)
        tr, va = _batches(train_set, model_src, [i], tr_rows), _batches(val_set, model_src, [i], va_rows)
        one = task_slices([len(classes[k])])
        c1 = _single_task_cfg(cfg, steps_mt, len(tr_rows), batch_size)
        console.print(f"  single-task baseline '{name}': {len(tr_rows)} rows, {c1.epochs} epochs "
                      f"(as many steps as the multi-task run)")
        single_epochs[name] = c1.epochs
        singles[name] = train_multitask(make_strategy(spec.strategy, options=spec.options), model_src, one,
                                        [name], tr, va, c1, FixedWeighting(1))
        ev = va if eval_b is None else _column(eval_b, k)  # the test images prepared once, by the caller
        single_scores[name] = _score_tasks(singles[name].model, ev, [name], [classes[k]], one)[name]
        baseline_s += time.perf_counter() - t0
    return singles, single_scores, single_epochs, baseline_s


def _holdout_probes(spec: MultiTaskSpec, full: MultiTaskSet, train_set: MultiTaskSet, eval_set: MultiTaskSet,
                    source: Backbone, mt: Backbone, singles: dict[str, TrainedModel],
                    seed: int) -> dict[str, dict[str, Any]]:
    """Probe accuracy of every holdout task on the source's, the multi-task model's and each single-task model's
    features (training labels from the task's budget, scored on the evaluation split)."""
    out: dict[str, dict[str, Any]] = {}
    for i, task in enumerate(spec.tasks):
        if not task.holdout:
            continue
        tr_rows = np.flatnonzero(train_set.labels[:, i] != MISSING)
        ev_rows = np.flatnonzero(eval_set.labels[:, i] != MISSING)
        if len(ev_rows) == 0:
            out[task.name] = {"error": "no labelled evaluation rows"}
            continue
        tr, ev = _batches(train_set, source, [i], tr_rows), _batches(eval_set, source, [i], ev_rows)
        models = {"source": source, "multi-task": mt, **{f"single-task {n}": m.model for n, m in singles.items()}}
        out[task.name] = {"classes": full.classes[i], "train_labels": len(tr_rows), "n": len(ev_rows),
                          "accuracy": {k: _probe(m, tr, ev, full.classes[i], seed) for k, m in models.items()}}
    return out


def _metrics(spec: MultiTaskSpec, full: MultiTaskSet, train_set: MultiTaskSet, val_set: MultiTaskSet,
             names: list[str], cols: list[int], classes: list[list[str]], mt: dict, single: dict, holdout: dict,
             trained: TrainedModel, combine: Any, split: str, baseline_s: float, wall_s: float,
             strat: Any) -> dict[str, Any]:
    tasks = {}
    missing = full.missing()
    fit = trained.fit
    selection = ("per task: the probe's C by cross-validation on that task's training labels, then refit on all of "
                 "them" if fit.solver is not None else
                 describe_selection(None, len(val_set), fit.best_epoch, fit.epochs_run, fit.stopped_early))
    for name, i, cls in zip(names, cols, classes, strict=True):
        s = single.get(name)
        tasks[name] = {
            "classes": cls, "train_labels": int((train_set.labels[:, i] != MISSING).sum()),
            "val_labels": int((val_set.labels[:, i] != MISSING).sum()),
            "missing_in_data": missing[name], "rows_in_data": len(full),
            "labels_per_class": spec.tasks[i].labels_per_class,
            "labels": labels_record(spec.tasks[i].labels_per_class, spec.tasks[i].val_per_class,
                                    int((train_set.labels[:, i] != MISSING).sum()),
                                    int((val_set.labels[:, i] != MISSING).sum()), selection),
            "multitask": mt[name], "single_task": s,
            "delta": None if s is None else mt[name]["accuracy"] - s["accuracy"],
        }
    return {
        "task": "multitask", "split": split, "tasks": tasks, "holdout": holdout,
        "strategy": trained.strategy, "options": trained.options, "weighting": spec.weighting,
        "sampling": spec.sampling, "temperature": spec.temperature if spec.sampling == "temperature" else None,
        "final_weights": dict(zip(names, combine.weights().detach().cpu().tolist(), strict=True)),
        "n_train_rows": int((train_set.labels[:, cols] != MISSING).any(1).sum()), "n_val_rows": len(val_set),
        "trainable_params": trained.trainable_params, "total_params": trained.model.num_parameters(),
        "train_time_s": trained.fit.train_time_s, "baseline_time_s": baseline_s, "total_time_s": wall_s,
        "fit": trained.fit.to_dict(), "history": trained.fit.history,
    }


