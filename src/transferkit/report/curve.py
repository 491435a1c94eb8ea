"""``report.md`` and ``curve.png`` of ``transferkit curve``: test accuracy against labels per class, one line per
strategy variant, mean ± std over seeds — a function of the curve's summary rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import accuracy_series, summary_rows
from transferkit.report.plots import plot_curve

CURVE_COLUMNS = ["strategy", "labels/class", "test accuracy", "macro-F1", "val accuracy", "wall time (s)", "seeds"]


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


def write_curve_report(out: Path, metrics: dict[str, Any], labels: list[str], budgets: Sequence[int | None],
                       title: str, intro: list[str], chance: float) -> None:
    """``curve.png`` (log x axis, 'all' at its mean training size per class) and report.md."""
    summary = metrics["summary"]
    xs, ticks = _x_positions(summary, budgets)
    series = accuracy_series(summary, labels, budgets)
    plot_curve(xs, ticks, series, out / "curve.png", title=title, chance=chance)
    comparison_report(out / "report.md", f"Label-efficiency curve: {title}", intro, CURVE_COLUMNS,
                      summary_rows(summary, CURVE_COLUMNS), ["curve.png"], metrics["findings"])
