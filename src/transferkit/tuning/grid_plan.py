"""The plan of a ``compare`` / ``curve`` grid (:func:`transferkit.api.grid.run_grid`): what it trains, the settings a
resume must match, and which of its cells an earlier run already finished — pure bookkeeping, no training.

* :class:`Grid` (variants × budgets × seeds on one model and task) and :class:`GridResult` (its finished cells);
* the training options every cell shares (:func:`train_options`) and the settings that change what a cell means
  (:func:`grid_settings`, with the source's :func:`weights_digest`), saved in ``out/<kind>.json``;
* the cell files ``out/cells/<label>…__k<k>__seed<seed>.json`` (:func:`cell_filename`): :func:`open_cells` checks a
  resume against the saved settings (or clears the old cells on ``restart``), :func:`finished_cells` loads the
  finished ones and lists those still to train.

A grid's variants are :class:`~transferkit.api.variants.Variant` tuples ``(label, strategy, options)``, built by the
job that runs it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from transferkit.backbones.base import Backbone
from transferkit.config import TrainOptions
from transferkit.options import GridConfig
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console

CELLS_DIR = "cells"
FORMAT = 2  # 2: issue 26 — --labels-per-class K is the whole budget (no K extra validation images by default)
SETTING_NAMES = {
    "source_arch": "source architecture (source)", "source_weights": "source weights (source)",
    "classes": "target classes (data, classes)", "train_data": "training-split content (data, classes)",
    "test_data": "test images (data, classes, test_per_class)", "train_options": "training options (schedule, "
    "augment, …)", "format": "cell file format",
}
CellKey = tuple[str, int | None, int]  # a cell: (variant label, labels per class or None for all, seed)
ToDo = dict[tuple[int | None, int], list[Any]]  # cells still to train, by (labels per class, seed)
# training options a grid sets per cell (seed) or for itself (progress)
_PER_CELL = ("seed", "progress")
# where a cell runs, not what it computes: a grid may be resumed on another machine with other values
_WHERE = ("accelerator", "devices", "progress", "checkpoint_every", "num_nodes", "distributed")


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


@dataclass
class Grid:
    """What a grid trains: ``variants`` (with their built ``strategies`` by label) × ``budgets`` × ``seeds`` from
    ``model`` on the training split ``full``, scored on ``test_set``. ``train_options`` are the
    :class:`~transferkit.config.TrainConfig` fields every cell shares (epochs, lr, …; the seed is per cell)."""

    variants: list[Any]
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


def train_options(cfg: GridConfig) -> dict[str, Any]:
    """The :class:`~transferkit.config.TrainConfig` fields every cell shares (its seed is the cell's)."""
    return {f.name: getattr(cfg.train, f.name) for f in fields(TrainOptions) if f.name not in _PER_CELL}


def grid_settings(kind: str, cfg: GridConfig, model: Backbone, full: Any, test_set: Any,
                  shared: dict[str, Any]) -> dict[str, Any]:
    """What changes the meaning of a cell, saved with the grid: a resume with other settings is refused. Options at
    their default are left out (grids from before an option existed still match)."""
    train, defaults = cfg.train, TrainOptions()
    other = {k: v for k, v in sorted(shared.items()) if k not in _WHERE
             and k not in ("epochs", "steps", "batch_size", "lr", "patience") and v != getattr(defaults, k)}
    return {
        "format": FORMAT, "source_arch": model.arch, "source_weights": weights_digest(model),
        "classes": list(full.classes), "train_data": full.fingerprint(), "test_data": test_set.fingerprint(),
        "test_per_class": cfg.grid.test_per_class, "epochs": train.epochs, "batch_size": train.batch_size,
        "lr": train.lr, "patience": train.patience, "val_per_class": cfg.task.val_per_class,
        "val_fraction": cfg.task.val_fraction, "image_size": cfg.source.image_size,
        **({"train_options": other} if other or kind == "curve" else {}),  # as each job has always saved it
        **({"head_init": True} if cfg.head_init else {}),
        **({"steps": train.steps} if train.steps is not None else {}),
        **({"max_length": cfg.source.max_length} if cfg.source.max_length is not None else {}),
    }


def open_cells(out: Path, kind: str, settings: dict[str, Any], artefacts: Sequence[str], restart: bool,
               console: Console) -> tuple[dict[str, Any], str]:
    """The grid's ``settings`` as JSON values and their digest, once ``out`` is ready for its cells: ``restart`` deletes
    the cells, the saved settings and the ``artefacts`` of an earlier run; otherwise the settings an earlier run saved
    in ``out/<kind>.json`` must match (a ``ValueError`` names the differences)."""
    settings_file = f"{kind}.json"
    settings = json.loads(json.dumps(settings, default=str))
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    if restart:
        _clear(out, settings_file, artefacts, console)
    else:
        _check_resume(out, settings_file, settings, kind)
    return settings, digest


def finished_cells(grid: Grid, cells_dir: Path, digest: str) -> tuple[dict[CellKey, dict[str, Any]], ToDo]:
    """Split the grid's cells, in grid order (budget, seed, variant), into those finished in ``cells_dir`` by an
    earlier run (loaded, keyed by (label, budget, seed); :func:`_load_cell` checks they match ``digest``) and those
    still to train, grouped by (budget, seed) so that each labelled split is drawn once for all its variants."""
    cells: dict[CellKey, dict[str, Any]] = {}
    todo: ToDo = {}
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


def grid_order(grid: Grid, cells: dict[CellKey, dict[str, Any]], cells_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """The grid's ``cells`` in grid order (budget, seed, variant), and how many cell files in ``cells_dir`` lie
    outside this grid (an earlier, larger grid's; kept on disk, not reported)."""
    ordered = [cells[(v.label, k, seed)] for k in grid.budgets for seed in grid.seeds for v in grid.variants]
    used = {cell_filename(v.label, k, s) for v in grid.variants for k in grid.budgets for s in grid.seeds}
    outside = sum(1 for p in cells_dir.glob("*.json") if p.name not in used) if cells_dir.is_dir() else 0
    return ordered, outside


def _settings_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One "name: old then, new now" line per setting that differs."""
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
    """Refuse to resume ``out`` when the settings an earlier run saved there differ from ``settings``."""
    path = out / settings_file
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is unreadable; use a new out=…, or restart=True to start over") from None
    diff = _settings_diff(saved, settings)
    if diff:
        n = len(list((out / CELLS_DIR).glob("*.json"))) if (out / CELLS_DIR).is_dir() else 0
        raise ValueError(
            f"{out} holds a {kind} run computed with other settings ({n} finished cells), so its cells are not "
            f"comparable with this run's: " + "; ".join(diff) + ". Use a new out=…, or restart=True to delete "
            "the old cells and start over."
        )


def _load_cell(path: Path, variant: Any, digest: str) -> dict[str, Any] | None:
    """A finished cell, or ``None`` when the file is unreadable (it is then recomputed)."""
    try:
        cell = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if cell.get("settings") != digest:
        raise ValueError(f"{path} was computed with other settings than this run; use a new out=…, or "
                         "restart=True to delete the old cells and start over")
    if cell.get("strategy_name") != variant.strategy or cell.get("options") != json.loads(json.dumps(variant.options)):
        raise ValueError(
            f"{path}: label '{variant.label}' was {cell.get('strategy_name')} {cell.get('options') or ''} in the "
            f"earlier run but is {variant.strategy} {variant.options or ''} now; give the variant another label "
            "(LABEL=STRATEGY:…), or restart=True"
        )
    return cell
