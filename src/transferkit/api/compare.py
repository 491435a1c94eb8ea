"""``compare``: strategies × labels per class × seeds on one source and target, as mean ± std; and the demo.

Every cell of a comparison uses the same labelled examples for every strategy at a given seed (a paired
design) — K per class in total unless ``--val-per-class`` adds a fixed validation set — and is scored once on the
test split; a row at chance level is flagged "did not learn" and never ranked. A comparison is
a resumable grid (:mod:`transferkit.api.grid`): ``config.yaml`` is written before the first cell trains and
every cell as it finishes (``out/cells/``), so an error or Ctrl-C loses no finished cell and rerunning the same
command reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from transferkit.api.grid import (
    FORMAT,
    Grid,
    budget_sentence,
    check_budgets,
    parse_labels_per_class,
    parse_seeds,
    quiet_cache_log,  # noqa: F401  (re-exported: tune_job imports it from here)
    run_grid,
    weights_digest,
)
from transferkit.api.runs import (
    RunResult,
    check_channels,
    load_source,
    load_task,
    make_strategy,
    set_threads,
    write_json,
)
from transferkit.api.variants import parse_variants
from transferkit.backbones.base import Backbone
from transferkit.config import check_budget
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class
from transferkit.report.compare import COMPARE_COLUMNS, compare_rows, write_compare_report
from transferkit.report.metrics import comparison_sentence, group_did_not_learn, mean_std
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, open_output_dir

BASELINE = "scratch"
ARTEFACTS = ("metrics.json", "comparison.png", "report.md", "config.yaml")


def summarise(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every (strategy, labels_per_class) cell, and whether that mean is at chance level
    (``did_not_learn``, :func:`~transferkit.report.metrics.group_did_not_learn`)."""
    keys = sorted({(c["strategy"], c["labels_per_class"] or 0) for c in cells}, key=lambda k: (k[1], k[0]))
    out = []
    for strategy, k in keys:
        group = [c for c in cells if c["strategy"] == strategy and (c["labels_per_class"] or 0) == k]
        row: dict[str, Any] = {"strategy": strategy, "labels_per_class": k or None, "seeds": len(group)}
        for metric in ("accuracy", "macro_f1", "train_time_s", "total_time_s"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([c[metric] for c in group])
        row["did_not_learn"] = group_did_not_learn(group)
        out.append(row)
    return out


def findings(summary: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language comparison of each transfer strategy with the scratch baseline, per label budget; no sentence
    ranks a row that did not learn ("… vs scratch: not compared — scratch did not learn")."""
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
        said = comparison_sentence(row["strategy"], BASELINE, diff, spread, min(row["seeds"], base["seeds"]),
                                   bool(row.get("did_not_learn")), bool(base.get("did_not_learn")))
        k = row["labels_per_class"] or "all"
        lines.append(f"{k} labels/class: {said} "
                     f"({row['accuracy_mean']:.3f} vs {base['accuracy_mean']:.3f}, Δ {diff:+.3f}, std ≤ {spread:.3f})")
    return lines


def compare(
    source: str | Path | Backbone, data: str = "fashion_mnist", classes: str | list[int] | None = None,
    strategies: Sequence[str | dict[str, Any]] = ("scratch", "linear_probe", "finetune"),
    labels_per_class: Sequence[int | str | None] | str = (5, 10, 50), seeds: Sequence[int] = (0, 1, 2),
    out: str | Path = "runs/compare", epochs: int | None = None, batch_size: int | None = None,
    patience: int | None = None,
    lr: float | None = None, val_per_class: int | None = None, val_fraction: float = 0.1, title: str = "",
    image_size: int | None = None, test_per_class: int | None = None, convert_channels: bool = False,
    restart: bool = False, console: Console | None = None, steps: int | None = None,
) -> RunResult:
    """Run every strategy × labels-per-class × seed on one source → target task; write a comparison report.

    Writes ``out/`` with ``config.yaml`` (before the first cell trains), ``cells/*.json`` (each cell as it
    finishes), ``compare.json`` (the settings a rerun must match), and at the end ``metrics.json`` (every cell and
    the mean ± std summary), ``comparison.png`` (bars with ±1 std error bars) and ``report.md``. Rerunning with
    the same ``out`` reuses the finished cells (the grid may grow: more strategies, budgets or seeds); other
    settings are an error naming them unless ``restart=True``, which deletes the old cells. ``test_per_class``
    scores on a fixed stratified subset of the test split (seed 0, the same for every cell) to save time with
    large models; ``image_size`` sets the input size of a named pretrained backbone. ``strategies`` may be variant
    specs (``l2sp=finetune:regularizer=l2sp``, see :func:`transferkit.api.variants.parse_variant`); each cell's
    ``strategy`` is the variant's label (the plain name for a plain name). ``labels_per_class`` may hold ``None``
    or ``"all"`` (the whole training split minus a stratified ``val_fraction``).
    """
    console = console or Console()
    start = time.perf_counter()
    variants = parse_variants(strategies)  # validates every variant before anything is loaded
    check_budget(epochs, steps)  # --steps or --epochs (neither: each strategy's recipe)
    budgets = parse_labels_per_class(labels_per_class)
    seed_list = parse_seeds(seeds)  # a list, whatever was given (a range once crashed the YAML writer at the end)
    # config.yaml mirrors the CLI flags, so `transferkit compare --config out/config.yaml` repeats (resumes) it
    config = {"command": "compare", "source": str(source) if not isinstance(source, Backbone) else source.arch,
              "data": data, "classes": classes, "strategies": list(strategies),
              "labels_per_class": budgets, "seeds": seed_list, "out": str(out),
              "epochs": epochs, "steps": steps, "batch_size": batch_size, "patience": patience, "lr": lr,
              "val_per_class": val_per_class, "val_fraction": val_fraction, "title": title, "image_size": image_size,
              "test_per_class": test_per_class, "convert_channels": convert_channels}
    built = {v.label: make_strategy(v.strategy, options=v.options) for v in variants}
    check_output_dir(out, [source, data], kind="compare")  # before anything loads; it writes into out (resumable)
    set_threads()
    model, meta = load_source(source, image_size)
    full = load_task(data, "train", classes)
    check_channels(full, model, convert_channels, f"--data {data}")
    if not has_split(data, "test"):
        raise ValueError(f"compare needs a test split for the final scores; {data} has none")
    test_set = load_task(data, "test", classes)
    check_budgets(full, budgets, val_per_class)  # every budget fits, before the first cell trains
    if test_per_class:
        test_set = test_set.subset(k_per_class(test_set, test_per_class, seed=0, option="test_per_class"),
                                   test_set.name + "[subset]")
    settings = {
        "format": FORMAT, "source_arch": model.arch, "source_weights": weights_digest(model),
        "classes": list(full.classes), "train_data": full.fingerprint(), "test_data": test_set.fingerprint(),
        "test_per_class": test_per_class, "epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience,
        "val_per_class": val_per_class, "val_fraction": val_fraction, "image_size": image_size,
        **({"steps": steps} if steps is not None else {}),
    }
    grid = Grid(variants, built, budgets, seed_list, model, full, test_set,
                {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "patience": patience},
                val_per_class, val_fraction)
    out = open_output_dir(out, "compare")
    done = run_grid(grid, out, "compare", settings, config, ARTEFACTS, restart, console,
                    source=str(meta.get("source")), data=data, classes=classes)
    cells = [{**c, "total_time_s": c["wall_time_s"]} for c in done.cells]  # the name compare has always used
    summary = summarise(cells)
    notes = findings(summary)
    title = title or f"{meta.get('source', 'source')} → {data} {classes or ''}".strip()
    write_json(out / "metrics.json", {"cells": cells, "summary": summary, "findings": notes,
                                      "reused": done.reused, "computed": done.computed,
                                      "cells_outside_grid": done.outside, "wall_time_s": time.perf_counter() - start})
    test_note = (f"a fixed stratified subset of {test_per_class} test images per class" if test_per_class
                 else "the whole test split")
    intro = [f"Source: `{meta.get('source')}` (input {model.input_spec.channels}×"
             f"{'×'.join(map(str, model.input_spec.size or ('any',)))}). Target: `{data}` classes "
             f"{classes or 'all'} ({', '.join(full.classes)}). Seeds {seed_list}. {budget_sentence(val_per_class)} "
             f"Scored once per cell on {test_note}. Mean ± sample std over seeds; a row marked 'did not learn' is "
             "not significantly above the majority-class rate (one-sided binomial test at 1 %) and is ranked "
             "against nothing.",
             "",
             f"Cells: {done.computed} computed in this run, {done.reused} reused from earlier runs (`cells/`)"
             + (f"; {done.outside} more cells on disk lie outside this grid and are not reported."
                if done.outside else ".")]
    write_compare_report(out, summary, notes, list(built), budgets, title, intro, 1.0 / full.num_classes)
    console.print(comparison_table(COMPARE_COLUMNS, compare_rows(summary),
                                   title=f"{title} — mean ± std over {len(seed_list)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    return RunResult(out, {"cells": cells, "summary": summary, "findings": notes})
