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
from typing import Any

from transferkit import terminal
from transferkit.api.grid_job import run_grid_job
from transferkit.api.runs import RunResult, write_json
from transferkit.options import CompareConfig
from transferkit.report.compare import COMPARE_COLUMNS, write_compare_report
from transferkit.report.metrics import comparison_sentence, group_did_not_learn, mean_std, summary_rows
from transferkit.report.tables import comparison_table
from transferkit.terminal import Console

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


def compare(*args: Any, config: CompareConfig | None = None, console: Console | None = None,
            **options: Any) -> RunResult:
    """Run every strategy × labels-per-class × seed on one source → target task; write a comparison report.

    ``compare(source, data, classes, **options)`` or ``compare(config=CompareConfig(...))``: the options are the
    flat names of :class:`~transferkit.options.CompareConfig` (``strategies``, ``labels_per_class``, ``seeds``,
    ``out``, ``restart``, ``test_per_class``, ``title``, ``image_size``, ``head_init`` and every training option:
    ``steps``/``epochs``, ``lr``, ``augment``, …). Writes ``out/`` with ``config.yaml`` (before the first cell
    trains), ``cells/*.json`` (each cell as it finishes), ``compare.json`` (the settings a rerun must match), and at
    the end ``metrics.json`` (every cell and the mean ± std summary), ``comparison.png`` (bars with ±1 std error
    bars) and ``report.md``. Rerunning with the same ``out`` reuses the finished cells (the grid may grow: more
    strategies, budgets or seeds); other settings are an error naming them unless ``restart=True``, which deletes
    the old cells. ``test_per_class`` scores on a fixed stratified subset of the test split (seed 0, the same for
    every cell) to save time with large models. ``strategies`` may be variant specs
    (``l2sp=finetune:regularizer=l2sp``, see :func:`transferkit.api.variants.parse_variant`); each cell's
    ``strategy`` is the variant's label (the plain name for a plain name). ``labels_per_class`` may hold ``None``
    or ``"all"`` (the whole training split minus a stratified ``val_fraction``).
    """
    console = terminal.resolve(console)
    run = run_grid_job("compare", CompareConfig.given(config, args, options), console, ARTEFACTS)
    done, labels = run.done, [v.label for v in run.variants]
    cells = [{**c, "total_time_s": c["wall_time_s"]} for c in done.cells]  # the name compare has always used
    summary = summarise(cells)
    notes = findings(summary)
    write_json(run.out / "metrics.json", {"cells": cells, "summary": summary, "findings": notes,
                                          "reused": done.reused, "computed": done.computed,
                                          "cells_outside_grid": done.outside,
                                          "wall_time_s": time.perf_counter() - run.start})
    write_compare_report(run.out, summary, notes, labels, run.budgets, run.title, run.intro(""),
                         1.0 / run.full.num_classes)
    console.print(comparison_table(COMPARE_COLUMNS, summary_rows(summary, COMPARE_COLUMNS),
                                   title=f"{run.title} — mean ± std over {len(run.seeds)} seeds"))
    for line in notes:
        console.print(f"  • {line}")
    return RunResult(run.out, {"cells": cells, "summary": summary, "findings": notes})
