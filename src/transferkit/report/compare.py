"""``report.md`` and ``comparison.png`` of ``transferkit compare``: every strategy at every labelled budget, mean ±
std over seeds — a function of the comparison's summary rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import accuracy_series, summary_rows
from transferkit.report.plots import plot_comparison

COMPARE_COLUMNS = ["strategy", "labels/class", "test accuracy", "macro-F1", "train time (s)"]


def write_compare_report(out: Path, summary: Sequence[dict[str, Any]], notes: list[str], strategies: list[str],
                         budgets: Sequence[int | None], title: str, intro: list[str], chance: float) -> None:
    """``comparison.png`` (bars with ±1 std per budget) and report.md."""
    series = accuracy_series(summary, strategies, budgets)
    plot_comparison([f"{k or 'all'} labels/class" for k in budgets], series, out / "comparison.png", title=title,
                    chance=chance)
    comparison_report(out / "report.md", f"Comparison: {title}", intro, COMPARE_COLUMNS,
                      summary_rows(summary, COMPARE_COLUMNS), ["comparison.png"], notes)
