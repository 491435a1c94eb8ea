"""The tables of ``transferkit list`` and its aliases (``datasets``, ``backbones``, ``strategies``,
``adapt --list-methods``): rows from :mod:`transferkit.api.listing`, drawn with rich."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

from transferkit.report.tables import comparison_table


def families_table(counts: Mapping[str, int]) -> Table:
    """Each pluggable family and how many entries it holds."""
    table = Table(title="families (transferkit list FAMILY)")
    table.add_column("family")
    table.add_column("entries", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    return table


def family_table(family: str, rows: Iterable[dict[str, Any]]) -> Table:
    """One family's entries: name (and aliases), summary, paper and the file that defines it."""
    table = Table(title=family)
    for col in ("name", "summary", "paper", "file"):
        table.add_column(col, overflow="fold")
    for row in rows:
        name = row["name"] + (f" (alias {', '.join(row['aliases'])})" if row["aliases"] else "")
        table.add_row(name, row["summary"], row["paper"], row["file"])
    return table


def _table(title: str, columns: Sequence[str], cells: Iterable[Sequence[str]],
           right: tuple[str, ...] = ()) -> Table:
    """A listing: ``columns`` (those in ``right`` right-aligned), one row per entry of ``cells``."""
    return comparison_table(columns, cells, title, right=right)


def datasets_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Every dataset: the name to give as --data, its splits and a description."""
    return _table("datasets (use --data NAME)", ("name", "splits", "description"),
                  ([r["usage"], ",".join(r["splits"]), r["description"]] for r in rows))


def backbones_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Every backbone: parameters, feature width, input size, whether pretrained weights are installed."""
    return _table("backbones (use --backbone NAME)",
                  ("name", "parameters", "feature dim", "input size", "pretrained weights", "description"),
                  ([r["name"], f"{r['parameters']:,}", str(r["feature_dim"]), r["input"],
                    "available" if r["weights"] else "none (pretrain it)", r["description"]] for r in rows),
                  right=("parameters", "feature dim"))


def strategies_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Every strategy: aliases, the kind of transfer, its options."""
    return _table("strategies (use --strategy NAME)", ("name", "aliases", "kind of transfer", "options"),
                  ([r["name"], ", ".join(r["aliases"]), r["kind"], ", ".join(r["options"]) or "-"] for r in rows))


def adaptation_methods_table(rows: Iterable[dict[str, Any]]) -> Table:
    """Every domain-adaptation method: what it does, its options with defaults, its paper."""
    return _table("adaptation methods (use --method NAME, combine with '+')",
                  ("name", "what it does", "options", "paper"),
                  ([r["name"], r["summary"], ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "-",
                    r["paper"] or "-"] for r in rows))
