"""``multitask``: one pretrained backbone, one head per task, trained together — and did sharing help?

The job reads a spec (``tasks.yaml``, :mod:`transferkit.multi_task.spec`), draws every task's labelled budget from
the training split(s) (:func:`~transferkit.multi_task.data.budget_split`) and hands over to
:mod:`transferkit.multi_task.train`: the source, transferred with any strategy (``finetune``, ``linear_probe``,
``lora``, …), learns all tasks at once — one head per task (their logits side by side), each task's cross-entropy
over the rows labelled for it, combined by the chosen loss weighting, with the chosen task sampling — and each
trained task also gets a **single-task model** with the **same number of optimiser steps**; a ``holdout`` task is
trained by neither, only probed on every model's features. Early stopping uses the validation rows (mean of the
tasks' validation losses); the test split is scored once. The report puts multi-task and single-task side by side
(one table, one chart); the bundle holds all trained heads (``tasks`` in its JSON: names, classes, which logits),
and ``predict`` returns every task's prediction.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import RunResult, make_strategy, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.bundle import save_bundle
from transferkit.config import TrainConfig
from transferkit.data.registry import has_split
from transferkit.errors import ConfigError
from transferkit.multi_task import train as mtl
from transferkit.multi_task.data import budget_split, load_multitask
from transferkit.multi_task.spec import MultiTaskSpec, load_spec, parse_spec
from transferkit.options import MultitaskConfig
from transferkit.report.metrics import classification_metrics
from transferkit.report.multitask import multitask_metrics, tasks_table, write_multitask_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.source_loading import check_channels, load_source
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console

task_slices = mtl.task_slices  # re-exported: it was defined here before it moved

TRAIN_DEFAULTS = {"epochs": 30, "patience": 10, "seed": 0}


def multitask(*args: Any, config: MultitaskConfig | None = None, console: Console | None = None,
              **options: Any) -> RunResult:
    """Train several tasks on one transferred backbone and compare each with its single-task model.

    ``multitask(spec, source, **options)`` or ``multitask(config=MultitaskConfig(...))``. ``spec`` is a
    ``tasks.yaml`` path or the same mapping (``tasks``, ``data``, ``source``, ``strategy``, ``options``,
    ``weighting`` = fixed/uncertainty/gradnorm/dwa, ``sampling`` = proportional/uniform/temperature,
    ``temperature``, training settings; :mod:`transferkit.multi_task.spec`); ``source`` (a run or bundle directory,
    a backbone name or a :class:`~transferkit.backbones.base.Backbone` object) and the other options — the flat names
    of :class:`~transferkit.options.MultitaskConfig` — override the spec's values. Writes ``out`` (default
    ``runs/multitask``): config.yaml, metrics.json, report.md (one table, one chart), learning_curves.png and
    bundle/ (every task's head).
    """
    if config is not None and not isinstance(config, MultitaskConfig):
        raise TypeError(f"multitask: config= takes a MultitaskConfig, got {type(config).__name__}; give the task "
                        "spec (a tasks.yaml path or a mapping) as the first argument or as spec=")
    c = MultitaskConfig.given(config, args, options)
    console = terminal.resolve(console)
    spec, strat, cfg, config_record, out_dir, inputs = _configure(c)
    set_threads()
    start = time.perf_counter()
    d = _load(spec, c.source, c.strict, cfg.seed)
    plan = mtl.plan_tasks(spec, d)
    with run_session(out_dir, c.resume, c.overwrite, config_record, inputs) as session:
        write_yaml(session.path / "config.yaml", config_record)
        res = mtl.train_and_compare(spec, strat, cfg, session, d, plan,
                                    lambda: make_strategy(spec.strategy, options=spec.options),
                                    classification_metrics, console.print)
        metrics = multitask_metrics(spec, d, plan, res, cfg.seed, time.perf_counter() - start)
        tasks_meta = _save_bundle(session.path, spec, config_record, d, plan, res, cfg.seed)
        write_json(session.path / "metrics.json", metrics)
        write_multitask_report(session.path, metrics, res.trained.fit.history, res.trained.fit.solver)
    console.print(comparison_table(*tasks_table(metrics), f"multitask → {out_dir}  ({plan.split} accuracy)"))
    console.print(f"report: {out_dir / 'report.md'}   bundle: {out_dir / 'bundle'}")
    return RunResult(out_dir, metrics, res.trained.model, {"classes": plan.head_classes, "tasks": tasks_meta})


def _configure(c: MultitaskConfig) -> tuple[MultiTaskSpec, Strategy, TrainConfig, dict[str, Any], Path, list[Any]]:
    """The spec with the options given (those not ``None``) applied over its values, checked before any data is
    read: ``(spec, strategy, training config, config record, output directory, inputs — never written over)``."""
    if c.spec is None:
        raise ConfigError("spec", "a tasks.yaml path or a mapping (tasks, data, source, …)", None)
    spec_arg: Any = c.spec
    source = c.source
    src_override = None if source is None or isinstance(source, Backbone) else str(source)
    where = str(spec_arg) if isinstance(spec_arg, (str, Path)) else "multitask"
    raw = load_spec(spec_arg) if isinstance(spec_arg, (str, Path)) else dict(spec_arg)
    given = {"source": src_override, "out": None if c.out is None else str(c.out), "seed": c.seed,
             "epochs": c.epochs, "strategy": c.strategy, "weighting": c.weighting, "sampling": c.sampling,
             "baselines": c.baselines}
    raw.update({k: v for k, v in given.items() if v is not None})
    spec = parse_spec(raw, where)
    if source is None and spec.source is None:
        raise ConfigError("source", "a run directory, bundle or pretrained backbone name (or 'source:' in the spec)",
                          None)
    strat = make_strategy(spec.strategy, options=spec.options)  # option errors before any data is read
    train_opts = {**TRAIN_DEFAULTS, **spec.train}
    cfg = TrainConfig(progress=c.progress, **train_opts)
    config_record = {"command": "multitask", **raw}
    if isinstance(source, Backbone):
        config_record["source"] = f"<{source.arch} model object>"
    out_dir = Path(spec.out or "runs/multitask") if c.out is None else check_output_dir(c.out)  # out="": refused
    inputs = [None if isinstance(spec_arg, Mapping) else spec_arg, spec.source, spec.data,
              *(t.data for t in spec.tasks)]  # the spec file, source and data: never written over
    check_output_dir(out_dir, inputs)  # before anything loads or trains (run_session checks again)
    return spec, strat, cfg, config_record, out_dir, inputs


def _load(spec: MultiTaskSpec, source: str | Path | Backbone | None, strict: bool, seed: int) -> mtl.MultiTaskData:
    """The data, every task's labelled budget drawn from it, the test split when every dataset has one, and the
    source model (checked against the data's channels); refused when nothing could be scored."""
    full = load_multitask(spec, "train", strict=strict)
    train_set, val_set = budget_split(full, spec, seed)
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
    return mtl.MultiTaskData(full, train_set, val_set, test_set, model_src, source_meta)


def _save_bundle(tmp: Path, spec: MultiTaskSpec, config_record: dict[str, Any], d: mtl.MultiTaskData,
                 plan: mtl.MultiTaskPlan, res: mtl.MultiTaskResult, seed: int) -> list[dict[str, Any]]:
    """``tmp/bundle``: the multi-task model with every trained head (``tasks``: names, classes, logit columns), its
    lineage and the per-task accuracies; returns the ``tasks`` record."""
    tasks_meta = [{"name": n, "classes": c, "start": s.start, "stop": s.stop}
                  for n, c, s in zip(plan.names, plan.classes, plan.slices, strict=True)]
    lineage = {"kind": "multitask", "source": d.source_meta.get("source", "scratch"),
               "source_lineage": d.source_meta.get("lineage"), "data": spec.data,
               "tasks": [dataclasses.asdict(task) for task in spec.tasks], "strategy": res.trained.strategy,
               "options": res.trained.options, "weighting": spec.weighting, "sampling": spec.sampling, "seed": seed}
    scores = {"split": plan.split, **{n: {"accuracy": res.scores[n]["accuracy"]} for n in plan.names}}
    save_bundle(res.trained.model, {"classes": plan.head_classes, "tasks": tasks_meta, "lineage": lineage,
                                    "config": config_record, "metrics": scores}, tmp / "bundle")
    return tasks_meta
