"""A resumable grid of trainings: strategy variants × labels per class × seeds on one source → target task.

``compare`` and ``curve`` are both such a grid; they differ only in what they draw from its cells (a bar chart, a
curve). The design is a paired one: for every (labels per class, seed) one labelled split is drawn from the *training*
split and shared by every variant — K labels per class in total, all of which train each cell's final model (selection
from them: the probe's C by cross-validation; stepped strategies run a fixed recipe), plus a separate validation set
only with ``--val-per-class`` (:func:`~transferkit.report.grid.budget_sentence`); the test split is touched once per
cell, for the final score.

A grid is many small trainings, so nothing finished may be lost to a later error: the job's ``config.yaml`` is
written before the first cell trains, and each finished cell is written at once, atomically, to
``out/cells/<label>…__k<k>__seed<seed>.json``. Rerunning with the same ``out`` loads those cells instead of
recomputing them, and the grid may grow (more variants, budgets or seeds). The settings that change what a cell means
(source weights, data content, epochs, learning rate, …) are saved in ``out/<kind>.json`` and in every cell; a rerun
with other settings stops with a message naming them, since mixing cells from different settings would silently
corrupt the results. ``restart=True`` deletes the old cells first. What the grid trains, its settings and its cell
files are bookkeeping in :mod:`transferkit.tuning.grid_plan`; this module trains the missing cells.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import best_val_accuracy, score, write_json, write_yaml
from transferkit.api.variants import Variant
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.splits import labelled_budget_split
from transferkit.engine.trainer import train
from transferkit.logs import quiet_logger
from transferkit.report.metrics import describe_selection, did_not_learn, majority_rate
from transferkit.terminal import Console
from transferkit.tuning.grid_plan import (
    CELLS_DIR,
    Grid,
    GridResult,
    cell_filename,
    finished_cells,
    grid_order,
    open_cells,
)


def quiet_cache_log() -> contextlib.AbstractContextManager[None]:
    """One cache line per cell would drown the progress bar; each cell records its hit or miss instead."""
    return quiet_logger("transferkit.backbones.cache")


def run_grid(grid: Grid, out: Path, kind: str, settings: dict[str, Any], config: dict[str, Any],
             artefacts: Sequence[str], restart: bool = False, console: Console | None = None,
             source: str = "", data: str = "", classes: Any = None, progress: bool = True) -> GridResult:
    """Train every cell of ``grid`` not yet finished in ``out`` (a directory the caller checked and opened).

    ``settings`` are what a resume must match (saved in ``out/<kind>.json``); a mismatch is an error naming the
    differences unless ``restart``, which deletes the old cells and ``artefacts``. Before the first cell trains,
    ``config`` is written to ``out/config.yaml`` and the stale ``artefacts`` of an earlier run (its results, redrawn
    from the cells at the end) are removed; each finished cell is written at once. Ctrl-C keeps the finished
    cells and says how to resume.
    """
    console = terminal.resolve(console)
    digest = _open_grid(out, kind, settings, config, artefacts, restart, console, source, data, classes)
    cells_dir = out / CELLS_DIR
    cells, todo = finished_cells(grid, cells_dir, digest)
    total = len(grid.budgets) * len(grid.seeds) * len(grid.variants)
    reused, n_todo = len(cells), sum(len(g) for g in todo.values())
    if reused:
        console.print(f"resuming {out}: reused {reused} finished cells of {total}, computing {n_todo}")

    model, full = grid.model, grid.full
    test_b = to_batches(grid.test_set, model.input_spec) if todo else None
    computed = 0
    try:
        with quiet_cache_log(), terminal.progress_bar(console, progress) as bar:
            task = bar.add_task(kind, total=n_todo)
            for (k, seed), group in todo.items():
                train_set, val_set = labelled_budget_split(full, k, grid.val_per_class, grid.val_fraction, seed)
                train_b, val_b = to_batches(train_set, model.input_spec), to_batches(val_set, model.input_spec)
                for v in group:
                    bar.update(task, description=f"{v.label} · {k or 'all'}/class · seed {seed}")
                    cell = _train_cell(grid, v, k, seed, (train_set, train_b), (val_set, val_b), test_b, digest)
                    write_json(cells_dir / cell_filename(v.label, k, seed), cell)  # atomic: whole or absent
                    cells[(v.label, k, seed)] = json.loads(json.dumps(cell))
                    computed += 1
                    bar.advance(task)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {reused + computed} of {total} cells are finished and kept in "
                      f"{cells_dir}; rerun the same command to resume")
        raise
    ordered, outside = grid_order(grid, cells, cells_dir)
    return GridResult(ordered, reused, computed, digest, outside)


def _open_grid(out: Path, kind: str, settings: dict[str, Any], config: dict[str, Any], artefacts: Sequence[str],
               restart: bool, console: Console, source: str, data: str, classes: Any) -> str:
    """Prepare ``out`` before any cell trains and return the settings digest: ``restart`` clears the old cells,
    otherwise saved settings must match ``settings``; then ``config.yaml`` and ``<kind>.json`` (the settings, their
    digest and the job's ``source``, ``data`` and ``classes``) are written — an error later can no longer lose
    them — and the stale ``artefacts`` of an earlier run (redrawn from every cell at the end) are removed."""
    settings, digest = open_cells(out, kind, settings, artefacts, restart, console)
    # the configuration and the settings before any work: an error later can no longer lose them
    write_yaml(out / "config.yaml", config)
    write_json(out / f"{kind}.json", {"settings": settings, "digest": digest, "source": source, "data": data,
                                      "classes": classes})
    for name in artefacts:  # results of an earlier run; redrawn from every cell (old and new) at the end
        if name != "config.yaml":
            (out / name).unlink(missing_ok=True)
    return digest


def _train_cell(grid: Grid, v: Variant, k: int | None, seed: int, train_part: tuple[Any, Any],
                val_part: tuple[Any, Any], test_b: Any, digest: str) -> dict[str, Any]:
    """Train variant ``v`` on the (dataset, batches) pair ``train_part`` (validation ``val_part``) of budget ``k`` and
    ``seed``, score it once on the test batches: the cell's record."""
    full, (train_set, train_b), (val_set, val_b) = grid.full, train_part, val_part
    cfg = TrainConfig(seed=seed, progress=False, checkpoints=False, **grid.train_options)
    t0 = time.perf_counter()
    trained = train(grid.strategies[v.label], grid.model, full.num_classes, train_b, val_b, cfg, None,
                    head_init=grid.head_init, class_names=(full.classes, grid.source_classes))
    test_m = score(trained.model, test_b, full.classes, cfg.accelerator)
    majority = majority_rate(grid.test_set.labels)
    fit = trained.fit
    return {
        "strategy": v.label, "strategy_name": v.strategy, "options": v.options, "labels_per_class": k, "seed": seed,
        "accuracy": test_m["accuracy"], "macro_f1": test_m["macro_f1"], "val_accuracy": best_val_accuracy(trained),
        "train_time_s": trained.total_time_s, "wall_time_s": time.perf_counter() - t0, "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch, "trainable_params": trained.trainable_params, "n_train": len(train_set),
        "n_val": len(val_set), "n_test": len(grid.test_set), "num_classes": full.num_classes,
        "majority_rate": majority, "did_not_learn": did_not_learn(test_m["accuracy"], test_m["n"], majority),
        "selection": describe_selection(fit.solver, len(val_set), fit.best_epoch, fit.epochs_run, fit.stopped_early),
        "feature_cache": trained.feature_cache, "head_init": trained.head_init, "settings": digest,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
