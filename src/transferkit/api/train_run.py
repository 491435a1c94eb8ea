"""The training run ``pretrain`` and ``transfer`` share once their options are checked and the source is loaded:
load (:mod:`transferkit.api.train_data`) → engine (:func:`~transferkit.engine.trainer.train`) → scores → metrics.json,
bundle and report (:mod:`transferkit.report.train`), written in a run session (:mod:`transferkit.rundir`) so an
interrupted run leaves the previous run directory exactly as it was. ``train`` is looked up in this module.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from transferkit import terminal
from transferkit.api.runs import RunResult, score, set_threads, write_json, write_yaml
from transferkit.api.train_data import JobData, job_data
from transferkit.backbones.base import Backbone
from transferkit.bundle import save_bundle
from transferkit.config import TrainConfig
from transferkit.data.prepare import data_loading
from transferkit.data.splits import LABELS_RULE, parse_classes
from transferkit.engine.device import describe
from transferkit.engine.trainer import TrainedModel, train
from transferkit.options import RunOptions, TaskOptions
from transferkit.provenance import provenance
from transferkit.report.tables import metrics_table
from transferkit.report.train import run_labels, train_metrics, write_train_report
from transferkit.rundir import check_output_dir, run_session
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console


def write_run(
    run_dir: Path, kind: str, trained: TrainedModel, classes: list[str], lineage: dict[str, Any],
    config: dict[str, Any], val: dict[str, Any], test: dict[str, Any] | None, data_sizes: dict[str, int],
    wall_s: float, provenance: dict[str, Any] | None = None, labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write metrics.json (:func:`~transferkit.report.train.train_metrics`: what ``provenance``, ``labels`` and the
    scores ``val``/``test`` give), plots, bundle/ and report.md of a finished run into ``run_dir``; return the
    metrics."""
    metrics = train_metrics(kind, trained, config, val, test, data_sizes, wall_s, provenance, labels)
    save_bundle(trained.model, {"classes": classes, "lineage": lineage, "metrics": {
        k: metrics[k] for k in ("split", "accuracy", "macro_f1", "n")}, "config": config}, run_dir / "bundle")
    write_json(run_dir / "metrics.json", metrics)
    write_train_report(run_dir, kind, metrics, classes, lineage)
    return metrics


def _train_job(
    kind: str, source_model: Backbone, source_meta: dict[str, Any], strategy: Strategy, task: TaskOptions,
    cfg: TrainConfig, run: RunOptions, config: dict[str, Any], console: Console | None,
    class_map: dict[str, str] | None = None, head_init: bool = False, callbacks: Sequence[Callback] = (),
    evaluate_test: bool = True, split_indices: tuple[Any, Any] | None = None,
) -> RunResult:
    """Train ``strategy`` from ``source_model`` on ``task`` and write the run directory ``run.out`` (``config`` is what
    its config.yaml records): what ``pretrain`` and ``transfer`` (without ``cv``) run once their options are checked
    and the source is loaded. ``evaluate_test``/``split_indices`` act as in
    :func:`~transferkit.api.train.transfer`. A DDP process other
    than rank 0 trains, then returns without writing (``run_dir`` ``None``)."""
    console = terminal.resolve(console)
    inputs = [task.data, *(config.get(k) for k in ("source", "weights", "class_map"))]  # never written over
    check_output_dir(run.out, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    d = job_data(source_model, source_meta, task, cfg.seed, class_map, head_init, evaluate_test, split_indices)
    out = Path(run.out)
    with run_session(out, run.resume, run.overwrite, config, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config)
        if session.resume_from is not None:
            cfg = dataclasses.replace(cfg, resume_from=str(session.resume_from))
            for reason in session.skipped:
                console.print(f"[yellow]skipped[/]: {reason}")
            console.print(f"resuming {out} from {session.resume_from.name}")
        trained = train(strategy, source_model, d.full.num_classes, d.train_b, d.val_b, cfg, tmp, head_init=d.mapping,
                        class_names=(d.full.classes, d.source_classes), callbacks=callbacks)
        if session.worker:  # a DDP process other than rank 0: rank 0 scores and writes
            return RunResult(None, {}, trained.model, {"classes": d.full.classes, "rank": trained.fit.rank})
        metrics, lineage = _finish_run(tmp, kind, trained, d, source_meta, task, cfg, config, class_map, start)
    console.print(metrics_table(metrics, f"{kind} → {out}  ({metrics['split']} split)"))
    console.print(f"report: {out / 'report.md'}   bundle: {out / 'bundle'}")
    return RunResult(out, metrics, trained.model, {"classes": d.full.classes, "lineage": lineage})


def _finish_run(tmp: Path, kind: str, trained: TrainedModel, d: JobData, source_meta: dict[str, Any],
                task: TaskOptions, cfg: TrainConfig, config: dict[str, Any], class_map: dict[str, str] | None,
                start: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a finished training (validation, then test) and write its metrics.json, plots, bundle and report into
    ``tmp`` (:func:`write_run`); return ``(metrics, lineage)``. ``total_time_s`` runs from ``start``."""
    val_m = score(trained.model, d.val_b, d.full.classes, cfg.accelerator)
    test_m = score(trained.model, d.test_b, d.full.classes, cfg.accelerator) if d.test_b is not None else None
    lineage = {
        "kind": kind, "source": source_meta.get("source", "scratch"),
        "source_lineage": source_meta.get("lineage"), "data": task.data, "classes": parse_classes(task.classes),
        "labels_per_class": task.labels_per_class, "val_per_class": task.val_per_class,
        "val_fraction": task.val_fraction,
        "labels_rule": LABELS_RULE,  # what val_per_class=None means (fuse rebuilds a member's draw from it)
        "strategy": trained.strategy, "options": trained.options,
        "seed": cfg.seed, "class_map": class_map or None,
    }
    sizes = {"n_train": len(d.train_set), "n_val": len(d.val_set), "n_test": len(d.test_b) if d.test_b else 0}
    prov = provenance(cfg.seed, {"train": d.train_b.key, "validation": d.val_b.key,
                                 "test": d.test_b.key if d.test_b is not None else None},
                      describe(cfg.accelerator, cfg.precision), data_loading(d.train_b))
    labels = _job_labels(trained, d, task)
    metrics = write_run(tmp, kind, trained, d.full.classes, lineage, config, val_m, test_m, sizes,
                        time.perf_counter() - start, prov, labels)
    return metrics, lineage


def _job_labels(trained: TrainedModel, d: JobData, task: TaskOptions) -> dict[str, Any]:
    """metrics.json's ``labels`` of a training job (:func:`~transferkit.report.train.run_labels`) with the positions of
    the examples that trained the final model; for a split given by a calling job, also what that split was (its
    record says so, since the job's own draw was not used)."""
    k, n_train, n_val = task.labels_per_class, len(d.train_set), len(d.val_set)
    tr_idx = d.train_idx  # the labelled-budget draw that made the training set (job_split), not a second one
    labels = run_labels(trained, k, task.val_per_class, n_train, n_val, d.train_set.fingerprint(), tr_idx)
    if d.given and tr_idx is not None:
        labels.update(train_final_model=n_train, validation=n_val, validation_per_class=None,
                      indices=[int(i) for i in tr_idx], split="given by the calling job (an inner split of its "
                      f"{k} labels per class: {n_train} fit, {n_val} selection)")
    return labels
