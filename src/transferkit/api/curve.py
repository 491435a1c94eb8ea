"""``curve``: label-efficiency curves — test accuracy against labelled images per class, per strategy variant.

The design is the paired one of :func:`transferkit.api.compare.compare`: for every (labels per class, seed)
one labelled split is drawn from the *training* split and shared by every variant; its validation part drives
early stopping and checkpoint choice; the test split is touched once per cell, for the final score.

A curve is a resumable grid (:mod:`transferkit.api.grid`): ``config.yaml`` is written before the first cell
trains and each finished cell at once, atomically, to ``out/cells/<label>…__k<k>__seed<seed>.json``. Rerunning
with the same ``out`` loads those cells instead of recomputing them, and the grid may grow (more variants, budgets
or seeds). The settings that change what a cell means (source weights, data content, epochs, learning rate, …)
are saved in ``out/curve.json`` and in every cell; a rerun with other settings stops with a message naming them,
since mixing cells from different settings would silently corrupt the curve. ``restart=True`` deletes the old
cells first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from transferkit import terminal
from transferkit.api.compare import BASELINE, findings
from transferkit.api.grid_job import run_grid_job
from transferkit.api.runs import RunResult, write_json
from transferkit.options import CurveConfig
from transferkit.report.curve import CURVE_COLUMNS, write_curve_report
from transferkit.report.metrics import group_did_not_learn, mean_std, summary_rows
from transferkit.report.tables import comparison_table
from transferkit.terminal import Console

SETTINGS_FILE = "curve.json"
ARTEFACTS = ("metrics.json", "curve.png", "report.md", "config.yaml")
_METRICS = ("accuracy", "macro_f1", "val_accuracy", "train_time_s", "wall_time_s")


def summarise_curve(cells: Sequence[dict[str, Any]], labels: Sequence[str],
                    budgets: Sequence[int | None]) -> list[dict[str, Any]]:
    """Mean ± sample std over seeds per (variant label, labels per class), in the given orders; also the mean
    number of training images per class (where "all" sits on the curve's x axis)."""
    rows = []
    for label in labels:
        for k in budgets:
            group = [c for c in cells if c["strategy"] == label and c["labels_per_class"] == k]
            if not group:
                continue
            row: dict[str, Any] = {"strategy": label, "labels_per_class": k, "seeds": len(group),
                                   "train_per_class": sum(c["n_train"] / c["num_classes"] for c in group) / len(group)}
            for metric in _METRICS:
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([c[metric] for c in group])
            row["did_not_learn"] = group_did_not_learn(group)
            rows.append(row)
    return rows


def curve(*args: Any, config: CurveConfig | None = None, console: Console | None = None,
          **options: Any) -> RunResult:
    """Label-efficiency curve of every strategy variant on one source → target task; resumable.

    ``curve(source, data, classes, **options)`` or ``curve(config=CurveConfig(...))``: the options are the flat
    names of :class:`~transferkit.options.CurveConfig` — ``strategies`` (variant specs: ``finetune``,
    ``l2sp=finetune:regularizer=l2sp:reg_alpha=0.01``, or mappings, see
    :func:`transferkit.api.variants.parse_variant`), ``labels_per_class`` (the budgets; ``None`` or ``"all"``
    meaning the whole training split minus a stratified ``val_fraction``), ``seeds``, ``out``, ``restart``, and
    every training option for every cell (``steps``/``epochs``, ``lr``, ``schedule``, ``augment``, ``mixup``, …).
    ``head_init=True`` starts the head rows of classes shared (by name) with the source from the source head, as
    ``transfer`` does by default; it is off here so that a curve compares the strategies alone (each cell records
    what was matched).

    Writes ``out/config.yaml`` and ``out/curve.json`` (the settings a resume must match) before the first cell
    trains, ``out/cells/*.json`` (one per finished cell, at once), and at the end ``metrics.json`` (cells, mean ±
    std summary, findings), ``curve.png`` and ``report.md``. Rerunning with the same ``out`` reuses finished cells;
    other settings are an error unless ``restart=True``, which deletes the old cells. Ctrl-C keeps the finished
    cells.
    """
    console = terminal.resolve(console)
    run = run_grid_job("curve", CurveConfig.given(config, args, options), console, ARTEFACTS)
    done, labels = run.done, [v.label for v in run.variants]
    summary = summarise_curve(done.cells, labels, run.budgets)
    notes = findings(summary)
    if BASELINE not in labels:
        notes.append(f"No '{BASELINE}' variant in this curve, so no baseline comparison; add --strategy scratch.")
    metrics = {"cells": done.cells, "summary": summary, "findings": notes, "reused": done.reused,
               "computed": done.computed, "cells_outside_grid": done.outside, "settings": run.settings,
               "wall_time_s": time.perf_counter() - run.start}
    intro = run.intro("; every variant sees the same labelled images at a given budget and seed",
                      " The x axis of the plot is logarithmic and 'all' sits at its mean training size per class.")
    write_json(run.out / "metrics.json", metrics)
    write_curve_report(run.out, metrics, labels, run.budgets, run.title, intro, 1.0 / run.full.num_classes)
    console.print(comparison_table(CURVE_COLUMNS, summary_rows(summary, CURVE_COLUMNS),
                                   title=f"{run.title} — mean ± std over {len(run.seeds)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    console.print(f"report: {run.out / 'report.md'}   plot: {run.out / 'curve.png'}")
    return RunResult(run.out, metrics)
