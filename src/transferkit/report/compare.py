"""``report.md`` and ``comparison.png`` of ``transferkit compare``: every strategy at every labelled budget, mean ±
std over seeds — a function of the comparison's summary rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import accuracy_series, flag
from transferkit.report.plots import plot_comparison

COMPARE_COLUMNS = ["strategy", "labels/class", "test accuracy", "macro-F1", "train time (s)"]


def compare_rows(summary: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per (strategy, budget): means ± std, a 'did not learn' row flagged."""
    return [[r["strategy"], str(r["labels_per_class"] or "all"),
             flag(f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}", r["did_not_learn"]),
             f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}",
             f"{r['train_time_s_mean']:.2f} ± {r['train_time_s_std']:.2f}"] for r in summary]


def write_compare_report(out: Path, summary: Sequence[dict[str, Any]], notes: list[str], strategies: list[str],
                         budgets: Sequence[int | None], title: str, intro: list[str], chance: float) -> None:
    """``comparison.png`` (bars with ±1 std per budget) and report.md."""
    series = accuracy_series(summary, strategies, budgets)
    plot_comparison([f"{k or 'all'} labels/class" for k in budgets], series, out / "comparison.png", title=title,
                    chance=chance)
    comparison_report(out / "report.md", f"Comparison: {title}", intro, COMPARE_COLUMNS, compare_rows(summary),
                      ["comparison.png"], notes)
