"""``compare``: strategies × labels per class × seeds on one source and target, as mean ± std; and the demo.

Every cell of a comparison uses the same labelled examples for every strategy at a given seed (a paired
design), selects its checkpoint on the validation split and is scored once on the test split.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from transferkit.api.runs import (
    RunResult,
    best_val_accuracy,
    check_channels,
    load_source,
    load_task,
    make_strategy,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.api.variants import parse_variants
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class, labelled_budget_split
from transferkit.engine.trainer import train
from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import mean_std, verdict
from transferkit.report.plots import plot_comparison
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, staged_output

BASELINE = "scratch"


@contextlib.contextmanager
def quiet_cache_log() -> Iterator[None]:
    """One cache line per cell would drown the progress bar; each cell records its hit or miss instead."""
    log = logging.getLogger("transferkit.backbones.cache")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def summarise(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every (strategy, labels_per_class) cell."""
    keys = sorted({(c["strategy"], c["labels_per_class"] or 0) for c in cells}, key=lambda k: (k[1], k[0]))
    out = []
    for strategy, k in keys:
        group = [c for c in cells if c["strategy"] == strategy and (c["labels_per_class"] or 0) == k]
        row: dict[str, Any] = {"strategy": strategy, "labels_per_class": k or None, "seeds": len(group)}
        for metric in ("accuracy", "macro_f1", "train_time_s", "total_time_s"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([c[metric] for c in group])
        out.append(row)
    return out


def findings(summary: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language comparison of each transfer strategy with the scratch baseline, per label budget."""
    lines = []
    for row in summary:
        if row["strategy"] == BASELINE:
            continue
        base = next((r for r in summary if r["strategy"] == BASELINE
                     and r["labels_per_class"] == row["labels_per_class"]), None)
        if base is None:
            continue
        diff = row["accuracy_mean"] - base["accuracy_mean"]
        spread = max(row["accuracy_std"], base["accuracy_std"])
        word = verdict(diff, spread, min(row["seeds"], base["seeds"]))
        k = row["labels_per_class"] or "all"
        lines.append(f"{k} labels/class: {row['strategy']} {word} scratch "
                     f"({row['accuracy_mean']:.3f} vs {base['accuracy_mean']:.3f}, Δ {diff:+.3f}, std ≤ {spread:.3f})")
    return lines


def compare(
    source: str | Path | Backbone, data: str = "fashion_mnist", classes: str | list[int] | None = None,
    strategies: Sequence[str | dict[str, Any]] = ("scratch", "linear_probe", "finetune"),
    labels_per_class: Sequence[int | None] = (5, 10, 50), seeds: Sequence[int] = (0, 1, 2),
    out: str | Path = "runs/compare", epochs: int = 30, batch_size: int | None = None, patience: int | None = 10,
    lr: float | None = None, val_per_class: int | None = None, val_fraction: float = 0.1, title: str = "",
    image_size: int | None = None, test_per_class: int | None = None, convert_channels: bool = False,
    console: Console | None = None,
) -> RunResult:
    """Run every strategy × labels-per-class × seed on one source → target task; write a comparison report.

    Writes ``out/`` with ``config.yaml``, ``metrics.json`` (every cell and the mean ± std summary),
    ``comparison.png`` (bars with ±1 std error bars) and ``report.md``. ``test_per_class`` scores on a fixed
    stratified subset of the test split (seed 0, the same for every cell) to save time with large models;
    ``image_size`` sets the input size of a named pretrained backbone. ``strategies`` may be variant specs
    (``l2sp=finetune:regularizer=l2sp``, see :func:`transferkit.api.variants.parse_variant`); each cell's
    ``strategy`` is the variant's label (the plain name for a plain name).
    """
    console = console or Console()
    config = {"command": "compare", **{k: (str(v) if k == "source" else v) for k, v in locals().items()
                                        if k not in ("console",)}}
    check_output_dir(out, [source, data])  # before anything loads or trains
    set_threads()
    built = {v.label: make_strategy(v.strategy, options=v.options) for v in parse_variants(strategies)}
    model, meta = load_source(source, image_size)
    full = load_task(data, "train", classes)
    check_channels(full, model, convert_channels, f"--data {data}")
    if not has_split(data, "test"):
        raise ValueError(f"compare needs a test split for the final scores; {data} has none")
    test_set = load_task(data, "test", classes)
    if test_per_class:
        test_set = test_set.subset(k_per_class(test_set, test_per_class, seed=0), test_set.name + "[subset]")
    test_b = to_batches(test_set, model.input_spec)
    cells: list[dict[str, Any]] = []
    start = time.perf_counter()
    # one cache line per cell would drown the progress bar; hits and misses are recorded in each cell instead
    cache_log = logging.getLogger("transferkit.backbones.cache")
    cache_level = cache_log.level
    cache_log.setLevel(logging.WARNING)
    total = len(labels_per_class) * len(seeds) * len(strategies)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("comparing", total=total)
        for k in labels_per_class:
            for seed in seeds:
                train_set, val_set = labelled_budget_split(full, k, val_per_class, val_fraction, seed)
                train_b, val_b = to_batches(train_set, model.input_spec), to_batches(val_set, model.input_spec)
                for name, strat in built.items():
                    progress.update(task, description=f"{name} · {k or 'all'}/class · seed {seed}")
                    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                                      progress=False, checkpoints=False)
                    t0 = time.perf_counter()
                    trained = train(strat, model, full.num_classes, train_b, val_b, cfg, None)
                    test_m = score(trained.model, test_b, full.classes)
                    cells.append({
                        "strategy": name, "labels_per_class": k, "seed": seed, "accuracy": test_m["accuracy"],
                        "macro_f1": test_m["macro_f1"], "val_accuracy": best_val_accuracy(trained),
                        "train_time_s": trained.total_time_s,
                        "total_time_s": time.perf_counter() - t0, "epochs_run": trained.fit.epochs_run,
                        "best_epoch": trained.fit.best_epoch, "trainable_params": trained.trainable_params,
                        "feature_cache": trained.feature_cache,
                    })
                    progress.advance(task)
    summary = summarise(cells)
    notes = findings(summary)
    out = Path(out)
    columns = ["strategy", "labels/class", "test accuracy", "macro-F1", "train time (s)"]
    rows = [[r["strategy"], str(r["labels_per_class"] or "all"),
             f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}",
             f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}",
             f"{r['train_time_s_mean']:.2f} ± {r['train_time_s_std']:.2f}"] for r in summary]
    groups = [str(k or "all") for k in labels_per_class]
    series = {s: ([next(r["accuracy_mean"] for r in summary if r["strategy"] == s and r["labels_per_class"] == k)
                   for k in labels_per_class],
                  [next(r["accuracy_std"] for r in summary if r["strategy"] == s and r["labels_per_class"] == k)
                   for k in labels_per_class]) for s in built}
    title = title or f"{meta.get('source', 'source')} → {data} {classes or ''}".strip()
    with staged_output(out, "compare") as tmp:
        write_yaml(tmp / "config.yaml", config)
        write_json(tmp / "metrics.json", {"cells": cells, "summary": summary, "findings": notes,
                                          "wall_time_s": time.perf_counter() - start})
        plot_comparison([f"{g} labels/class" for g in groups], series, tmp / "comparison.png", title=title,
                        chance=1.0 / full.num_classes)
        test_note = (f"a fixed stratified subset of {test_per_class} test images per class" if test_per_class
                     else "the whole test split")
        intro = [f"Source: `{meta.get('source')}` (input {model.input_spec.channels}×"
                 f"{'×'.join(map(str, model.input_spec.size or ('any',)))}). Target: `{data}` classes "
                 f"{classes or 'all'} ({', '.join(full.classes)}). Seeds {list(seeds)}; validation = "
                 f"{val_per_class or 'k'} other training-split images per class (early stopping and checkpoint "
                 f"choice); scored once per cell on {test_note}. Mean ± sample std over seeds."]
        comparison_report(tmp / "report.md", f"Comparison: {title}", intro, columns, rows, ["comparison.png"], notes)
    console.print(comparison_table(columns, rows, title=f"{title} — mean ± std over {len(seeds)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    return RunResult(out, {"cells": cells, "summary": summary, "findings": notes})
