"""A resumable grid of trainings: strategy variants × labels per class × seeds on one source → target task.

``compare`` and ``curve`` are both such a grid; they differ only in what they draw from its cells (a bar chart,
a curve). The design is a paired one: for every (labels per class, seed) one labelled split is drawn from the
*training* split and shared by every variant — K labels per class in total, all of which train each cell's final
model (selection from them: the probe's C by cross-validation; stepped strategies run a fixed recipe), plus a
separate validation set only with ``--val-per-class`` (:func:`budget_sentence`); the test split is touched once per
cell, for the final score.

A grid is many small trainings, so nothing finished may be lost to a later error: the job's ``config.yaml`` is
written before the first cell trains, and each finished cell is written at once, atomically, to
``out/cells/<label>…__k<k>__seed<seed>.json``. Rerunning with the same ``out`` loads those cells instead of
recomputing them, and the grid may grow (more variants, budgets or seeds). The settings that change what a cell
means (source weights, data content, epochs, learning rate, …) are saved in ``out/<kind>.json`` and in every
cell; a rerun with other settings stops with a message naming them, since mixing cells from different settings
would silently corrupt the results. ``restart=True`` deletes the old cells first.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transferkit import terminal
from transferkit.api.runs import best_val_accuracy, score, write_json, write_yaml
from transferkit.api.variants import Variant
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.splits import labelled_budget_split
from transferkit.engine.trainer import train
from transferkit.errors import ConfigError
from transferkit.logs import quiet_logger
from transferkit.report.metrics import describe_selection, did_not_learn, majority_rate
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console

CELLS_DIR = "cells"
FORMAT = 2  # 2: issue 26 — --labels-per-class K is the whole budget (no K extra validation images by default)
SETTING_NAMES = {
    "source_arch": "source architecture (--source)", "source_weights": "source weights (--source)",
    "classes": "target classes (--data/--classes)", "train_data": "training-split content (--data/--classes)",
    "test_data": "test images (--data/--classes/--test-per-class)", "test_per_class": "--test-per-class",
    "epochs": "--epochs", "steps": "--steps", "batch_size": "--batch-size", "lr": "--lr", "patience": "--patience",
    "val_per_class": "--val-per-class", "val_fraction": "--val-fraction", "image_size": "--image-size",
    "train_options": "training options (--schedule, --augment, …)", "format": "cell file format",
    "head_init": "--head-init", "max_length": "--max-length",
}
_CellKey = tuple[str, int | None, int]  # a cell: (variant label, labels per class or None for all, seed)
_ToDo = dict[tuple[int | None, int], list[Variant]]  # cells still to train, by (labels per class, seed)


def quiet_cache_log() -> contextlib.AbstractContextManager[None]:
    """One cache line per cell would drown the progress bar; each cell records its hit or miss instead."""
    return quiet_logger("transferkit.backbones.cache")


def cell_filename(label: str, labels_per_class: int | None, seed: int) -> str:
    """A filesystem-safe, collision-free file name for one cell: readable slug of the label plus its hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:60] or "variant"
    digest = hashlib.sha1(label.encode()).hexdigest()[:8]
    return f"{slug}-{digest}__k{labels_per_class or 'all'}__seed{seed}.json"


def weights_digest(model: Backbone) -> str:
    """A content hash of the model's weights (names, shapes, dtypes, values): same weights ⇔ same digest."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def budget_sentence(val_per_class: int | None) -> str:
    """How a grid's labelled budgets were used, for its report: K labels per class in total (the final model of every
    cell trains on all K; the probe's C by cross-validation on them, stepped strategies a fixed recipe), or K plus a
    separate validation set of ``val_per_class`` per class."""
    if val_per_class:
        return (f"Each budget K means K labelled training-split images per class to train on plus {val_per_class} "
                f"other images per class as a fixed validation set (kept epoch / early stopping): a budget of "
                f"K + {val_per_class} per class.")
    return ("Each budget K means K labelled training-split images per class in total, and every cell's final model "
            "trains on all K: linear_probe chooses its C by stratified cross-validation on those K; stepped "
            "strategies (scratch, finetune, …) run a fixed recipe with no validation set and keep their final weights. "
            "'all' is the whole training split minus a stratified validation part.")


def check_budgets(full: Any, budgets: Sequence[int | None], val_per_class: int | None) -> None:
    """Refuse, before the first cell trains, a budget the smallest class of ``full`` cannot hold: ``k`` labels per
    class, plus ``val_per_class`` for a separate validation set when given (none by default: K is the budget)."""
    counts = full.class_counts()
    small = int(counts.argmin())
    for k in (k for k in budgets if k is not None):
        need = k + (val_per_class or 0)
        if counts[small] < need:
            parts = (f"{k} to train, {need - k} for validation" if need > k else "K is the whole budget")
            raise ConfigError("labels_per_class", f"budgets of at most {int(counts[small]) - (need - k)} per class",
                              k, f"needs {need} training-split images per class ({parts}) but class "
                              f"'{full.classes[small]}' of {full.name} has {counts[small]}; drop {k}"
                              + (" or lower val_per_class" if need > k else ""))


@dataclass
class Grid:
    """What a grid trains: ``variants`` (with their built ``strategies`` by label) × ``budgets`` × ``seeds`` from
    ``model`` on the training split ``full``, scored on ``test_set``. ``train_options`` are the
    :class:`~transferkit.config.TrainConfig` fields every cell shares (epochs, lr, …; the seed is per cell)."""

    variants: list[Variant]
    strategies: dict[str, Strategy]
    budgets: list[int | None]
    seeds: list[int]
    model: Backbone
    full: Any
    test_set: Any
    train_options: dict[str, Any]
    val_per_class: int | None = None
    val_fraction: float = 0.1
    head_init: dict[int, int] | None = None
    source_classes: list[str] = field(default_factory=list)


@dataclass
class GridResult:
    """The cells in grid order (budget, seed, variant), how many were reused or computed, the settings digest and
    how many cell files on disk lie outside this grid."""

    cells: list[dict[str, Any]]
    reused: int
    computed: int
    digest: str
    outside: int


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
    cells, todo = _finished_cells(grid, cells_dir, digest)
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
    ordered = [cells[(v.label, k, seed)] for k in grid.budgets for seed in grid.seeds for v in grid.variants]
    used = {cell_filename(v.label, k, s) for v in grid.variants for k in grid.budgets for s in grid.seeds}
    outside = sum(1 for p in cells_dir.glob("*.json") if p.name not in used) if cells_dir.is_dir() else 0
    return GridResult(ordered, reused, computed, digest, outside)


def _open_grid(out: Path, kind: str, settings: dict[str, Any], config: dict[str, Any], artefacts: Sequence[str],
               restart: bool, console: Console, source: str, data: str, classes: Any) -> str:
    """Prepare ``out`` before any cell trains and return the settings digest: ``restart`` clears the old cells,
    otherwise saved settings must match ``settings``; then ``config.yaml`` and ``<kind>.json`` (the settings, their
    digest and the job's ``source``, ``data`` and ``classes``) are written — an error later can no longer lose
    them — and the stale ``artefacts`` of an earlier run (redrawn from every cell at the end) are removed."""
    settings_file = f"{kind}.json"
    settings = json.loads(json.dumps(settings, default=str))
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if restart:
        _clear(out, settings_file, artefacts, console)
    else:
        _check_resume(out, settings_file, settings, kind)
    # the configuration and the settings before any work: an error later can no longer lose them
    write_yaml(out / "config.yaml", config)
    write_json(out / settings_file, {"settings": settings, "digest": digest, "source": source, "data": data,
                                     "classes": classes})
    for name in artefacts:  # results of an earlier run; redrawn from every cell (old and new) at the end
        if name != "config.yaml":
            (out / name).unlink(missing_ok=True)
    return digest


def _finished_cells(grid: Grid, cells_dir: Path, digest: str) -> tuple[dict[_CellKey, dict[str, Any]], _ToDo]:
    """Split the grid's cells, in grid order (budget, seed, variant), into those finished in ``cells_dir`` by an
    earlier run (loaded, keyed by (label, budget, seed); :func:`_load_cell` checks they match ``digest``) and those
    still to train, grouped by (budget, seed) so that each labelled split is drawn once for all its variants."""
    cells: dict[_CellKey, dict[str, Any]] = {}
    todo: _ToDo = {}
    for k in grid.budgets:
        for seed in grid.seeds:
            for v in grid.variants:
                path = cells_dir / cell_filename(v.label, k, seed)
                cell = _load_cell(path, v, digest) if path.is_file() else None
                if cell is None:
                    todo.setdefault((k, seed), []).append(v)
                else:
                    cells[(v.label, k, seed)] = cell
    return cells, todo


def _train_cell(grid: Grid, v: Variant, k: int | None, seed: int, train_part: tuple[Any, Any],
                val_part: tuple[Any, Any], test_b: Any, digest: str) -> dict[str, Any]:
    """Train variant ``v`` on the (dataset, batches) pair ``train_part`` (validation ``val_part``) of budget ``k`` and
    ``seed``, score it once on the test batches: the cell's record."""
    full, (train_set, train_b), (val_set, val_b) = grid.full, train_part, val_part
    cfg = TrainConfig(seed=seed, progress=False, checkpoints=False, **grid.train_options)
    t0 = time.perf_counter()
    trained = train(grid.strategies[v.label], grid.model, full.num_classes, train_b, val_b, cfg, None,
                    head_init=grid.head_init, class_names=(full.classes, grid.source_classes))
    test_m = score(trained.model, test_b, full.classes)
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


def _settings_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            out.append(f"{SETTING_NAMES.get(key, key)}: {saved.get(key, '-')!r} then, {now.get(key, '-')!r} now")
    return out


def _clear(out: Path, settings_file: str, artefacts: Sequence[str], console: Console) -> None:
    """``restart``: delete the cells and artefacts of an earlier run in ``out`` (only what the grid job writes)."""
    cells = out / CELLS_DIR
    n = len(list(cells.glob("*.json"))) if cells.is_dir() else 0
    if cells.is_dir():
        shutil.rmtree(cells)
    for name in (settings_file, *artefacts):
        (out / name).unlink(missing_ok=True)
    if n:
        console.print(f"restart: deleted {n} finished cells in {cells}")


def _check_resume(out: Path, settings_file: str, settings: dict[str, Any], kind: str) -> None:
    path = out / settings_file
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is unreadable; use a new --out, or --restart (restart=True) to start over") from None
    diff = _settings_diff(saved, settings)
    if diff:
        n = len(list((out / CELLS_DIR).glob("*.json"))) if (out / CELLS_DIR).is_dir() else 0
        raise ValueError(
            f"{out} holds a {kind} run computed with other settings ({n} finished cells), so its cells are not "
            f"comparable with this run's: " + "; ".join(diff) + ". Use a new --out, or --restart "
            "(restart=True) to delete the old cells and start over."
        )


def _load_cell(path: Path, variant: Variant, digest: str) -> dict[str, Any] | None:
    """A finished cell, or ``None`` when the file is unreadable (it is then recomputed)."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if cell.get("settings") != digest:
        raise ValueError(f"{path} was computed with other settings than this run; use a new --out, or --restart "
                         "(restart=True) to delete the old cells and start over")
    if cell.get("strategy_name") != variant.strategy or cell.get("options") != json.loads(json.dumps(variant.options)):
        raise ValueError(
            f"{path}: label '{variant.label}' was {cell.get('strategy_name')} {cell.get('options') or ''} in the "
            f"earlier run but is {variant.strategy} {variant.options or ''} now; give the variant another label "
            "(LABEL=STRATEGY:…), or --restart"
        )
    return cell
