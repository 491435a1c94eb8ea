"""``report.md`` for a run and for a comparison: what was done, the numbers, the pictures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.report.metrics import DID_NOT_LEARN


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_report(path: Path, title: str, facts: dict[str, Any], metrics: dict[str, Any] | None,
               images: Sequence[str] = (), notes: Sequence[str] = ()) -> Path:
    """Write a single run's report: facts (what ran), metrics on the evaluated split (flagged "did not learn" when
    ``metrics["did_not_learn"]``), per-class table, plots."""
    parts = [f"# {title}", "", markdown_table(["", ""], [(k, v) for k, v in facts.items()]), ""]
    if metrics and metrics.get("split") != "none":  # "none": no test split and no validation set, nothing scored
        split = metrics.get("split", "test")
        parts += [f"## Metrics on the {split} split", "",
                  f"Accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}** "
                  f"({metrics['n']} examples)." + (
                      f" **{DID_NOT_LEARN.capitalize()}**: this accuracy is not significantly above always "
                      "predicting the most frequent class (one-sided binomial test at 1 %)."
                      if metrics.get("did_not_learn") else ""), "",
                  markdown_table(["class", "precision", "recall", "support"],
                                 [(c, f"{r['precision']:.3f}", f"{r['recall']:.3f}", r["support"])
                                  for c, r in metrics["per_class"].items()]), ""]
    parts += [f"- {n}" for n in notes]
    if notes:
        parts.append("")
    parts += [f"![{Path(img).stem}]({img})" for img in images]
    atomic.write_text(path, "\n".join(parts) + "\n")
    return path


def comparison_report(path: Path, title: str, intro: Sequence[str], columns: Sequence[str],
                      rows: Sequence[Sequence[Any]], images: Sequence[str] = (),
                      findings: Sequence[str] = ()) -> Path:
    """Write a comparison's report: setup, the mean ± std table, findings, the bar chart."""
    parts = [f"# {title}", "", *intro, "", markdown_table(columns, rows), ""]
    if findings:
        parts += ["## Findings", "", *[f"- {f}" for f in findings], ""]
    parts += [f"![{Path(img).stem}]({img})" for img in images]
    atomic.write_text(path, "\n".join(parts) + "\n")
    return path
