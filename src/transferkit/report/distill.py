"""``report.md`` of ``transferkit distill``: the teacher and both students on the test split, with size and latency
— a function of the run's metrics and facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.report.markdown import markdown_table, run_report
from transferkit.report.plots import plot_learning_curves

COLUMNS = ["model", "test accuracy", "macro-F1", "parameters", "input", "latency b=1 (ms)", "latency b=64 (ms)"]


def models_table(models: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(columns, rows)`` of the teacher and students (``metrics["models"]``); latency ``-`` when not measured."""
    rows = [[e["model"], f"{e['accuracy']:.4f}", f"{e['macro_f1']:.4f}", f"{e['params']:,}",
             "×".join(map(str, e["input"])) or "-",
             f"{e['latency']['batch_1']['median_ms']:.2f}" if "latency" in e else "-",
             f"{e['latency']['batch_64']['median_ms']:.1f}" if "latency" in e else "-"] for e in models]
    return COLUMNS, rows


def write_distill_report(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, float]],
                         facts: dict[str, Any], kd_test: dict[str, Any], threads: int) -> None:
    """The KD student's learning curves (when it has a history) and report.md."""
    images = []
    if history:
        plot_learning_curves(history, run_dir / "learning_curves.png", "KD student")
        images.append("learning_curves.png")
    columns, rows = models_table(metrics["models"])
    notes = ["Each model is scored once on the test split; the students' epochs were chosen on the labelled "
             "validation split. Latency: median of repeated CPU calls on random inputs at each model's own "
             f"input size ({threads} threads).",
             "Teacher and students on the test split:\n\n" + markdown_table(columns, rows) + "\n"]
    run_report(run_dir / "report.md", "transferkit distill", facts, {**kd_test, "split": "test (KD student)"},
               images, notes)
