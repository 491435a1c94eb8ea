"""``report.md`` of a ``transferkit fewshot`` run (SetFit or prototypes): the facts of the run, the pair loss of
SetFit's contrastive stage and the confusion matrix — a function of the run's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.report.markdown import run_report
from transferkit.report.plots import plot_confusion, plot_step_losses


def write_fewshot_report(run_dir: Path, metrics: dict[str, Any], losses: list[float] | None, classes: list[str],
                         source: str, data: str, n_eval: int) -> None:
    images = []
    if losses:
        plot_step_losses(losses, run_dir / "pair_loss.png", "contrastive fine-tuning", "pair loss (MSE of cosine)")
        images.append("pair_loss.png")
    eval_name, method, details = metrics["split"], metrics["method"], metrics["details"]
    plot_confusion(metrics["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                   f"{eval_name}, accuracy {metrics['accuracy']:.3f}")
    images.append("confusion_matrix.png")
    facts = {"job": "fewshot", "method": method, "source": source,
             "data": f"{data} classes {classes}", "labelled examples": f"{metrics['n_train']} "
             f"({metrics['labels_per_class']} per class, seed {metrics['seed']}; all of them fitted the final model)",
             "selection": metrics["labels"]["selection"], "evaluated on": f"{eval_name} ({n_eval})",
             **({"pairs": f"{details['pairs']} ({details['positive_pairs']} positive), {details['steps']} steps",
                 "body training": f"{details['body_train_s']:.1f} s"} if method == "setfit" else {}),
             "total time": f"{metrics['total_time_s']:.1f} s"}
    notes = ["The K examples per class were drawn from the training split; the evaluation examples are "
             "disjoint from them and were not used for any choice."]
    run_report(run_dir / "report.md", f"transferkit few-shot run ({method})", facts, metrics, images, notes)
