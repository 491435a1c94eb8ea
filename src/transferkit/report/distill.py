"""``report.md`` of ``transferkit distill``: the teacher and both students on the test split, with size and latency
— a function of the run's metrics and facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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


def distill_facts(metrics: dict[str, Any], teacher: str, student: str, temperature: float, alpha: float,
                  hint: tuple[str, str | None, float] | None) -> dict[str, Any]:
    """The facts at the top of report.md: the models, the transfer set, the KD settings (``hint``: student module,
    teacher module and weight, ``None`` without hints), the kept epoch and the times — from the run's metrics."""
    fit = metrics["fit"]
    return {"job": "distill", "teacher": teacher, "student": student,
            "transfer set": f"{metrics['n_labelled']} labelled + {metrics['n_unlabelled']} unlabelled images",
            "temperature / α": f"{temperature} / {alpha}",
            "hint": f"{hint[0]} → {hint[1]} (weight {hint[2]})" if hint else "none",
            "best epoch (validation)": fit["best_epoch"] + 1, "epochs run": fit["epochs_run"],
            "teacher pass": f"{metrics['teacher_pass_s']:.1f} s", "total time": f"{metrics['total_time_s']:.1f} s"}


def distill_metrics(summary: list[dict[str, Any]], fit: dict[str, Any], baseline_fit: dict[str, Any] | None,
                    labels: np.ndarray, n_val: int, n_test: int, teacher_pass_s: float, seed: int,
                    wall_s: float) -> dict[str, Any]:
    """metrics.json's content: the KD student's test scores (``summary[1]``), every model's summary (without its
    full test metrics), both fits (``baseline_fit``: the labels-only student's, ``None`` without it), the teacher
    pass, the set sizes (``labels``: the transfer set's, ``-1`` where hidden), the seed and the total time."""
    kd_test = summary[1]["test"]
    return {"task": "distill", "split": "test", "accuracy": kd_test["accuracy"], "macro_f1": kd_test["macro_f1"],
            "models": [{k: v for k, v in e.items() if k != "test"} for e in summary], "fit": fit,
            "baseline_fit": baseline_fit, "teacher_pass_s": teacher_pass_s,
            "n_labelled": int((labels >= 0).sum()), "n_unlabelled": int((labels < 0).sum()),
            "n_val": n_val, "n_test": n_test, "seed": seed, "total_time_s": wall_s}
