"""Terminal tables (rich) for a run's metrics and for comparisons."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from rich.table import Table

from transferkit.report.metrics import DID_NOT_LEARN


def metrics_table(metrics: dict[str, Any], title: str = "") -> Table:
    """Per-class precision/recall plus overall accuracy and macro-F1; an accuracy at chance level
    (``metrics["did_not_learn"]``, :func:`~transferkit.report.metrics.did_not_learn`) is marked "did not learn"."""
    table = Table(title=title or None)
    for col in ("class", "precision", "recall", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"]))
    table.add_section()
    table.add_row("accuracy", f"{metrics['accuracy']:.4f}", DID_NOT_LEARN if metrics.get("did_not_learn") else "",
                  str(metrics["n"]))
    table.add_row("macro-F1", f"{metrics['macro_f1']:.4f}", "", "")
    return table


def comparison_table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str = "",
                     right: Collection[str] | None = None) -> Table:
    """A plain table with the given header and string cells: the first column left-aligned and the others
    right-aligned (numbers), or, when ``right`` is given, exactly the columns it names right-aligned (listings)."""
    table = Table(title=title or None)
    for i, col in enumerate(columns):
        aligned_right = i > 0 if right is None else col in right
        table.add_column(col, justify="right" if aligned_right else "left")
    for row in rows:
        table.add_row(*row)
    return table

