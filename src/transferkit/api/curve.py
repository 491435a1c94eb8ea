"""``curve``: label-efficiency curves — test accuracy against labelled images per class, per strategy variant.

The design is the paired one of :func:`transferkit.api.compare.compare`: for every (labels per class, seed)
one labelled split is drawn from the *training* split and shared by every variant; its validation part drives
early stopping and checkpoint choice; the test split is touched once per cell, for the final score.

A curve is many small trainings (variants × budgets × seeds), so it is **resumable**: each finished cell is
written at once, atomically, to ``out/cells/<label>…__k<k>__seed<seed>.json``. Rerunning with the same ``out``
loads those cells instead of recomputing them, and the grid may grow (more variants, budgets or seeds). The
settings that change what a cell means (source weights, data content, epochs, learning rate, …) are saved in
``out/curve.json`` and in every cell; a rerun with other settings stops with a message naming them, since
mixing cells from different settings would silently corrupt the curve. ``restart=True`` deletes the old
cells first.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress

from transferkit.api.compare import BASELINE, findings, quiet_cache_log
from transferkit.api.runs import (
    RunResult,
    best_val_accuracy,
    check_channels,
    head_init_mapping,
    load_source,
    load_task,
    make_strategy,
    require_one_process,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.api.variants import Variant, parse_variants
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class, labelled_budget_split
from transferkit.engine.trainer import train
from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import mean_std
from transferkit.report.plots import plot_curve
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, open_output_dir

SETTINGS_FILE = "curve.json"
CELLS_DIR = "cells"
ARTEFACTS = ("metrics.json", "curve.png", "report.md", "config.yaml")
FORMAT = 1
# TrainConfig fields that curve sets itself (per cell, or from its own arguments)
_OWN_FIELDS = ("epochs", "batch_size", "lr", "patience", "seed", "progress", "checkpoints")
# where a cell runs, not what it computes: a curve may be resumed on another device
_UNCHECKED_OPTIONS = ("accelerator", "devices")
_SETTING_NAMES = {
    "source_arch": "source architecture (--source)", "source_weights": "source weights (--source)",
    "classes": "target classes (--data/--classes)", "train_data": "training-split content (--data/--classes)",
    "test_data": "test images (--data/--classes/--test-per-class)", "test_per_class": "--test-per-class",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "patience": "--patience",
    "val_per_class": "--val-per-class", "val_fraction": "--val-fraction", "image_size": "--image-size",
    "train_options": "training options (--schedule, --augment, …)", "format": "curve file format",
    "head_init": "--head-init",
}
_METRICS = ("accuracy", "macro_f1", "val_accuracy", "train_time_s", "wall_time_s")


def parse_labels_per_class(value: int | str | None | Iterable[int | str | None]) -> list[int | None]:
    """``"1,5,10,all"`` / ``[1, 5, None]`` / ``5`` → ``[1, 5, 10, None]``: sorted, ``None`` ("all") last.

    ``None``, ``"all"`` and ``"none"`` mean every labelled training image (minus validation).
    """
    items: Iterable[Any] = str(value).split(",") if isinstance(value, str) else \
        [value] if value is None or isinstance(value, int) else value
    out: list[int | None] = []
    for item in items:
        text = "all" if item is None else str(item).strip().lower()
        if not text:
            continue
        if text in ("all", "none", "null"):
            k: int | None = None
        else:
            try:
                k = int(text)
            except ValueError:
                raise ValueError(f"--labels-per-class: '{item}' is neither a number nor 'all'; "
                                 "expected e.g. 1,5,10,50,all") from None
            if k < 1:
                raise ValueError(f"--labels-per-class: {k} must be at least 1 (or 'all')")
        if k in out:
            raise ValueError(f"--labels-per-class: {k or 'all'} given twice")
        out.append(k)
    if not out:
        raise ValueError("--labels-per-class: no budget given; expected e.g. 1,5,10,all")
    return sorted(out, key=lambda k: (k is None, k or 0))


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


def _settings_diff(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            out.append(f"{_SETTING_NAMES.get(key, key)}: {saved.get(key, '-')!r} then, {now.get(key, '-')!r} now")
    return out


def _clear(out: Path, console: Console) -> None:
    """``restart``: delete the cells and artefacts of an earlier curve in ``out`` (only what curve writes)."""
    cells = out / CELLS_DIR
    n = len(list(cells.glob("*.json"))) if cells.is_dir() else 0
    if cells.is_dir():
        shutil.rmtree(cells)
    for name in (SETTINGS_FILE, *ARTEFACTS):
        (out / name).unlink(missing_ok=True)
    if n:
        console.print(f"restart: deleted {n} finished cells in {cells}")


def _check_resume(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
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
            f"{out} holds a curve computed with other settings ({n} finished cells), so its cells are not "
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
            rows.append(row)
    return rows


def _x_positions(summary: Sequence[dict[str, Any]], budgets: Sequence[int | None]) -> tuple[list[float], list[str]]:
    """x values and tick labels: k itself; "all" at its real mean training size per class when that lies right
    of the largest k (else at twice the largest k), labelled with that size."""
    finite = [k for k in budgets if k is not None]
    xs: list[float] = [float(k) for k in finite]
    ticks = [str(k) for k in finite]
    if None in budgets:
        sizes = [r["train_per_class"] for r in summary if r["labels_per_class"] is None]
        size = sum(sizes) / len(sizes) if sizes else None
        top = max(finite, default=0)
        if size is not None and size > 1.05 * top:
            xs.append(size)
        else:  # unknown, or not right of the largest budget: keep "all" at the right end anyway
            xs.append(2.0 * top if top else 1.0)
        ticks.append(f"all\n(≈{size:.0f})" if size is not None else "all")
    return xs, ticks


def curve(
    source: str | Path | Backbone, data: str = "fashion_mnist", classes: str | list[int] | None = None,
    strategies: Sequence[str | dict[str, Any]] = ("scratch", "linear_probe", "finetune"),
    labels_per_class: Sequence[int | str | None] | str = (1, 5, 10, 50, 100, None),
    seeds: Sequence[int] = (0, 1, 2), out: str | Path = "runs/curve", epochs: int = 30,
    batch_size: int | None = None, lr: float | None = None, patience: int | None = 10,
    val_per_class: int | None = None, val_fraction: float = 0.1, image_size: int | None = None,
    test_per_class: int | None = None, convert_channels: bool = False, strict: bool = False,
    train_options: dict[str, Any] | None = None, restart: bool = False, title: str = "", head_init: bool = False,
    console: Console | None = None,
) -> RunResult:
    """Label-efficiency curve of every strategy variant on one source → target task; resumable.

    ``strategies`` are variant specs (``finetune``, ``l2sp=finetune:regularizer=l2sp:reg_alpha=0.01``, or
    mappings, see :func:`transferkit.api.variants.parse_variant`); ``labels_per_class`` the budgets, ``None``
    or ``"all"`` meaning the whole training split minus a stratified ``val_fraction``; ``train_options`` further
    :class:`~transferkit.config.TrainConfig` fields for every cell (``schedule``, ``augment``, ``mixup``, …).
    ``head_init=True`` starts the head rows of classes shared (by name) with the source from the source head, as
    ``transfer`` does by default; it is off here so that a curve compares the strategies alone (each cell records
    what was matched).

    Writes ``out/cells/*.json`` (one per finished cell, at once), ``out/curve.json`` (the settings a resume
    must match), and at the end ``metrics.json`` (cells, mean ± std summary, findings), ``curve.png``,
    ``report.md`` and ``config.yaml``. Rerunning with the same ``out`` reuses finished cells; other settings
    are an error unless ``restart=True``, which deletes the old cells. Ctrl-C keeps the finished cells.
    """
    console = console or Console()
    start = time.perf_counter()
    variants = parse_variants(strategies)  # validates every variant before anything is loaded
    budgets = parse_labels_per_class(labels_per_class)
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"--seeds: need at least one seed and no duplicates, got {seed_list}")
    topts = _check_train_options(train_options)
    defaults = TrainConfig().to_dict()
    require_one_process(TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, **topts),
                        "curve")  # fail fast
    # config.yaml mirrors the CLI flags, so `transferkit curve --config out/config.yaml` resumes this curve
    config = {"command": "curve", "source": str(source) if not isinstance(source, Backbone) else source.arch,
              "data": data, "classes": classes, "strategy": list(strategies), "labels_per_class": budgets,
              "seeds": seed_list, "out": str(out), "epochs": epochs, "batch_size": batch_size, "lr": lr,
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
    counts = full.class_counts()
    small = int(counts.argmin())
    for k in (k for k in budgets if k is not None):  # check every budget fits before the first cell trains
        need = k + (k if val_per_class is None else val_per_class)
        if counts[small] < need:
            raise ValueError(f"--labels-per-class {k}: needs {need} training-split images per class ({k} to train, "
                             f"{need - k} for validation) but class '{full.classes[small]}' of {full.name} has "
                             f"{counts[small]}; drop {k} or lower --val-per-class")
    if test_per_class:
        test_set = test_set.subset(k_per_class(test_set, test_per_class, seed=0), test_set.name + "[subset]")

    settings = json.loads(json.dumps({
        "format": FORMAT, "source_arch": model.arch, "source_weights": weights_digest(model),
        "classes": list(full.classes), "train_data": full.fingerprint(), "test_data": test_set.fingerprint(),
        "test_per_class": test_per_class, "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
        "val_per_class": val_per_class, "val_fraction": val_fraction, "image_size": image_size,
        "train_options": {k: topts[k] for k in sorted(topts)  # an option at its default is the same setting
                          if k not in _UNCHECKED_OPTIONS and topts[k] != defaults[k]},
        **({"head_init": True} if head_init else {}),  # absent when off: curves from before the option still match
    }, default=str))
    mapping, source_classes = head_init_mapping(full.classes, meta, head_init)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out = open_output_dir(out, "curve")
    if restart:
        _clear(out, console)
    else:
        _check_resume(out, settings)
    write_json(out / SETTINGS_FILE, {"settings": settings, "digest": digest, "source": str(meta.get("source")),
                                     "data": data, "classes": classes})
    cells_dir = out / CELLS_DIR

    cells: dict[tuple[str, int | None, int], dict[str, Any]] = {}
    todo: dict[tuple[int | None, int], list[Variant]] = {}
    for k in budgets:
        for seed in seed_list:
            for v in variants:
                path = cells_dir / cell_filename(v.label, k, seed)
                cell = _load_cell(path, v, digest) if path.is_file() else None
                if cell is None:
                    todo.setdefault((k, seed), []).append(v)
                else:
                    cells[(v.label, k, seed)] = cell
    total = len(budgets) * len(seed_list) * len(variants)
    reused, n_todo = len(cells), sum(len(g) for g in todo.values())
    if reused:
        console.print(f"resuming {out}: reused {reused} finished cells of {total}, computing {n_todo}")

    test_b = to_batches(test_set, model.input_spec) if todo else None
    computed = 0
    try:
        with quiet_cache_log(), Progress(console=console, transient=True) as progress:
            task = progress.add_task("curve", total=n_todo)
            for (k, seed), group in todo.items():
                train_set, val_set = labelled_budget_split(full, k, val_per_class, val_fraction, seed)
                train_b, val_b = to_batches(train_set, model.input_spec), to_batches(val_set, model.input_spec)
                for v in group:
                    progress.update(task, description=f"{v.label} · {k or 'all'}/class · seed {seed}")
                    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                                      progress=False, checkpoints=False, **topts)
                    t0 = time.perf_counter()
                    trained = train(built[v.label], model, full.num_classes, train_b, val_b, cfg, None,
                                    head_init=mapping, class_names=(full.classes, source_classes))
                    test_m = score(trained.model, test_b, full.classes)
                    cell = {
                        "strategy": v.label, "strategy_name": v.strategy, "options": v.options,
                        "labels_per_class": k, "seed": seed, "accuracy": test_m["accuracy"],
                        "macro_f1": test_m["macro_f1"], "val_accuracy": best_val_accuracy(trained),
                        "train_time_s": trained.total_time_s, "wall_time_s": time.perf_counter() - t0,
                        "epochs_run": trained.fit.epochs_run, "best_epoch": trained.fit.best_epoch,
                        "trainable_params": trained.trainable_params, "n_train": len(train_set),
                        "n_val": len(val_set), "n_test": len(test_set), "num_classes": full.num_classes,
                        "feature_cache": trained.feature_cache, "head_init": trained.head_init, "settings": digest,
                        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    }
                    write_json(cells_dir / cell_filename(v.label, k, seed), cell)  # atomic: whole or absent
                    cells[(v.label, k, seed)] = json.loads(json.dumps(cell))
                    computed += 1
                    progress.advance(task)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {reused + computed} of {total} cells are finished and kept in "
                      f"{cells_dir}; rerun the same command to resume")
        raise

    ordered = [cells[(v.label, k, seed)] for k in budgets for seed in seed_list for v in variants]
    labels = [v.label for v in variants]
    summary = summarise_curve(ordered, labels, budgets)
    notes = findings(summary)
    if not any(v.label == BASELINE for v in variants):
        notes.append(f"No '{BASELINE}' variant in this curve, so no baseline comparison; add --strategy scratch.")
    used = {cell_filename(v.label, k, s) for v in variants for k in budgets for s in seed_list}
    extra = sum(1 for p in cells_dir.glob("*.json") if p.name not in used) if cells_dir.is_dir() else 0

    columns = ["strategy", "labels/class", "test accuracy", "macro-F1", "val accuracy", "wall time (s)", "seeds"]
    rows = [[r["strategy"], str(r["labels_per_class"] or "all"),
             f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}",
             f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}",
             f"{r['val_accuracy_mean']:.3f} ± {r['val_accuracy_std']:.3f}",
             f"{r['wall_time_s_mean']:.2f} ± {r['wall_time_s_std']:.2f}", str(r["seeds"])] for r in summary]
    xs, ticks = _x_positions(summary, budgets)
    series = {}
    for label in labels:
        by_k = {r["labels_per_class"]: r for r in summary if r["strategy"] == label}
        series[label] = ([by_k[k]["accuracy_mean"] for k in budgets], [by_k[k]["accuracy_std"] for k in budgets])
    title = title or f"{meta.get('source', 'source')} → {data} {classes or ''}".strip()
    wall = time.perf_counter() - start
    metrics = {"cells": ordered, "summary": summary, "findings": notes, "reused": reused, "computed": computed,
               "cells_outside_grid": extra, "settings": settings, "wall_time_s": wall}
    test_note = (f"a fixed stratified subset of {test_per_class} test images per class" if test_per_class
                 else "the whole test split")
    val_note = (f"{val_per_class if val_per_class is not None else 'k'} other training-split images per class "
                f"(with 'all': a stratified {val_fraction:.0%} of the training split)")
    intro = [
        f"Source: `{meta.get('source')}` (input {model.input_spec.channels}×"
        f"{'×'.join(map(str, model.input_spec.size or ('any',)))}). Target: `{data}` classes {classes or 'all'} "
        f"({', '.join(full.classes)}). Seeds {seed_list}; every variant sees the same labelled images at a given "
        f"budget and seed. Validation = {val_note}, used for early stopping and the kept epoch; each cell is "
        f"scored once on {test_note}. Mean ± sample std over seeds; the x axis of the plot is logarithmic and "
        "'all' sits at its mean training size per class.",
        "",
        f"Cells: {computed} computed in this run, {reused} reused from earlier runs (`{CELLS_DIR}/`)"
        + (f"; {extra} more cells on disk lie outside this grid and are not reported." if extra else "."),
    ]
    write_yaml(out / "config.yaml", config)
    write_json(out / "metrics.json", metrics)
    plot_curve(xs, ticks, series, out / "curve.png", title=title, chance=1.0 / full.num_classes)
    comparison_report(out / "report.md", f"Label-efficiency curve: {title}", intro, columns, rows, ["curve.png"],
                      notes)
    console.print(comparison_table(columns, rows, title=f"{title} — mean ± std over {len(seed_list)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    console.print(f"report: {out / 'report.md'}   plot: {out / 'curve.png'}")
    return RunResult(out, metrics)
