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

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from transferkit.api.compare import BASELINE, findings
from transferkit.api.grid import (  # noqa: F401  (cell_filename, parse_labels_per_class: re-exported)
    CELLS_DIR,
    FORMAT,
    Grid,
    budget_sentence,
    cell_filename,
    check_budgets,
    parse_labels_per_class,
    parse_seeds,
    run_grid,
    weights_digest,
)
from transferkit.api.runs import (
    RunResult,
    check_channels,
    head_init_mapping,
    load_source,
    load_task,
    make_strategy,
    require_one_process,
    set_threads,
    write_json,
)
from transferkit.api.variants import parse_variants
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, check_budget
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class
from transferkit.report.curve import CURVE_COLUMNS, curve_rows, write_curve_report
from transferkit.report.metrics import group_did_not_learn, mean_std
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, open_output_dir

SETTINGS_FILE = "curve.json"
ARTEFACTS = ("metrics.json", "curve.png", "report.md", "config.yaml")
# TrainConfig fields that curve sets itself (per cell, or from its own arguments)
_OWN_FIELDS = ("epochs", "steps", "batch_size", "lr", "patience", "seed", "progress", "checkpoints")
# where a cell runs, not what it computes: a curve may be resumed on another device
_UNCHECKED_OPTIONS = ("accelerator", "devices")
_METRICS = ("accuracy", "macro_f1", "val_accuracy", "train_time_s", "wall_time_s")


def _check_train_options(train_options: dict[str, Any] | None) -> dict[str, Any]:
    opts = dict(train_options or {})
    own = sorted(set(opts) & set(_OWN_FIELDS))
    if own:
        raise ValueError(f"train_options: {own} are set by curve itself (its own arguments, or per cell for seed); "
                         "pass them as curve arguments instead")
    valid = set(TrainConfig.__dataclass_fields__) - set(_OWN_FIELDS)
    unknown = sorted(set(opts) - valid)
    if unknown:
        raise ValueError(f"train_options: unknown option(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return opts


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


def curve(
    source: str | Path | Backbone, data: str = "fashion_mnist", classes: str | list[int] | None = None,
    strategies: Sequence[str | dict[str, Any]] = ("scratch", "linear_probe", "finetune"),
    labels_per_class: Sequence[int | str | None] | str = (1, 5, 10, 50, 100, None),
    seeds: Sequence[int] = (0, 1, 2), out: str | Path = "runs/curve", epochs: int | None = None,
    batch_size: int | None = None, lr: float | None = None, patience: int | None = None,
    val_per_class: int | None = None, val_fraction: float = 0.1, image_size: int | None = None,
    test_per_class: int | None = None, convert_channels: bool = False, strict: bool = False,
    train_options: dict[str, Any] | None = None, restart: bool = False, title: str = "", head_init: bool = False,
    console: Console | None = None, steps: int | None = None,
) -> RunResult:
    """Label-efficiency curve of every strategy variant on one source → target task; resumable.

    ``strategies`` are variant specs (``finetune``, ``l2sp=finetune:regularizer=l2sp:reg_alpha=0.01``, or
    mappings, see :func:`transferkit.api.variants.parse_variant`); ``labels_per_class`` the budgets, ``None``
    or ``"all"`` meaning the whole training split minus a stratified ``val_fraction``; ``train_options`` further
    :class:`~transferkit.config.TrainConfig` fields for every cell (``schedule``, ``augment``, ``mixup``, …).
    ``head_init=True`` starts the head rows of classes shared (by name) with the source from the source head, as
    ``transfer`` does by default; it is off here so that a curve compares the strategies alone (each cell records
    what was matched).

    Writes ``out/config.yaml`` and ``out/curve.json`` (the settings a resume must match) before the first cell
    trains, ``out/cells/*.json`` (one per finished cell, at once), and at the end ``metrics.json`` (cells, mean ±
    std summary, findings), ``curve.png`` and ``report.md``. Rerunning with the same ``out`` reuses finished cells;
    other settings are an error unless ``restart=True``, which deletes the old cells. Ctrl-C keeps the finished
    cells.
    """
    console = console or Console()
    start = time.perf_counter()
    variants = parse_variants(strategies)  # validates every variant before anything is loaded
    budgets = parse_labels_per_class(labels_per_class)
    seed_list = parse_seeds(seeds)
    topts = _check_train_options(train_options)
    defaults = TrainConfig().to_dict()
    check_budget(epochs, steps)  # --steps or --epochs (neither: each strategy's recipe)
    require_one_process(TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, patience=patience,
                                    **topts),
                        "curve")  # fail fast
    # config.yaml mirrors the CLI flags, so `transferkit curve --config out/config.yaml` resumes this curve
    config = {"command": "curve", "source": str(source) if not isinstance(source, Backbone) else source.arch,
              "data": data, "classes": classes, "strategy": list(strategies), "labels_per_class": budgets,
              "seeds": seed_list, "out": str(out), "epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr,
              "patience": patience, "val_per_class": val_per_class, "val_fraction": val_fraction,
              "image_size": image_size, "test_per_class": test_per_class, "convert_channels": convert_channels,
              "strict": strict, "title": title, "head_init": head_init, **topts}
    built = {v.label: make_strategy(v.strategy, options=v.options) for v in variants}
    check_output_dir(out, [source, data], kind="curve")  # it writes into out (finished cells are reused)
    set_threads()
    model, meta = load_source(source, image_size)
    full = load_task(data, "train", classes, strict)
    check_channels(full, model, convert_channels, f"--data {data}")
    if not has_split(data, "test"):
        raise ValueError(f"curve needs a test split for the final scores; {data} has none")
    test_set = load_task(data, "test", classes, strict)
    check_budgets(full, budgets, val_per_class)  # every budget fits, before the first cell trains
    if test_per_class:
        test_set = test_set.subset(k_per_class(test_set, test_per_class, seed=0, option="test_per_class"),
                                   test_set.name + "[subset]")

    settings = json.loads(json.dumps({
        "format": FORMAT, "source_arch": model.arch, "source_weights": weights_digest(model),
        "classes": list(full.classes), "train_data": full.fingerprint(), "test_data": test_set.fingerprint(),
        "test_per_class": test_per_class, "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
        "val_per_class": val_per_class, "val_fraction": val_fraction, "image_size": image_size,
        "train_options": {k: topts[k] for k in sorted(topts)  # an option at its default is the same setting
                          if k not in _UNCHECKED_OPTIONS and topts[k] != defaults[k]},
        **({"head_init": True} if head_init else {}),  # absent when off: curves from before the option still match
        **({"steps": steps} if steps is not None else {}),
    }, default=str))
    mapping, source_classes = head_init_mapping(full.classes, meta, head_init)
    grid = Grid(variants, built, budgets, seed_list, model, full, test_set,
                {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "patience": patience, **topts},
                val_per_class, val_fraction, mapping, source_classes)
    out = open_output_dir(out, "curve")
    done = run_grid(grid, out, "curve", settings, config, ARTEFACTS, restart, console,
                    source=str(meta.get("source")), data=data, classes=classes)
    ordered, reused, computed, extra = done.cells, done.reused, done.computed, done.outside
    summary = summarise_curve(ordered, [v.label for v in variants], budgets)
    notes = findings(summary)
    if not any(v.label == BASELINE for v in variants):
        notes.append(f"No '{BASELINE}' variant in this curve, so no baseline comparison; add --strategy scratch.")

    title = title or f"{meta.get('source', 'source')} → {data} {classes or ''}".strip()
    metrics = {"cells": ordered, "summary": summary, "findings": notes, "reused": reused, "computed": computed,
               "cells_outside_grid": extra, "settings": settings, "wall_time_s": time.perf_counter() - start}
    test_note = (f"a fixed stratified subset of {test_per_class} test images per class" if test_per_class
                 else "the whole test split")
    intro = [
        f"Source: `{meta.get('source')}` (input {model.input_spec.channels}×"
        f"{'×'.join(map(str, model.input_spec.size or ('any',)))}). Target: `{data}` classes {classes or 'all'} "
        f"({', '.join(full.classes)}). Seeds {seed_list}; every variant sees the same labelled images at a given "
        f"budget and seed. {budget_sentence(val_per_class)} "
        f"Each cell is scored once on {test_note}. Mean ± sample std over seeds; a row marked 'did not learn' is "
        "not significantly above the majority-class rate (one-sided binomial test at 1 %) and is ranked against "
        "nothing. The x axis of the plot is logarithmic and 'all' sits at its mean training size per class.",
        "",
        f"Cells: {computed} computed in this run, {reused} reused from earlier runs (`{CELLS_DIR}/`)"
        + (f"; {extra} more cells on disk lie outside this grid and are not reported." if extra else "."),
    ]
    write_json(out / "metrics.json", metrics)
    write_curve_report(out, metrics, [v.label for v in variants], budgets, title, intro, 1.0 / full.num_classes)
    console.print(comparison_table(CURVE_COLUMNS, curve_rows(summary),
                                   title=f"{title} — mean ± std over {len(seed_list)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    console.print(f"report: {out / 'report.md'}   plot: {out / 'curve.png'}")
    return RunResult(out, metrics)
