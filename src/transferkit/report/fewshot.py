"""``report.md`` of a ``transferkit fewshot`` run (SetFit or prototypes): the facts of the run, the pair loss of
SetFit's contrastive stage and the confusion matrix — a function of the run's metrics; and those of an episodic
evaluation and of a ``zeroshot`` run, with the sentences that record how (not) a final model was selected; and the
``metrics.json`` of a few-shot run and of an episodic evaluation, from the job's values."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.data.splits import labels_record
from transferkit.provenance import provenance
from transferkit.report.markdown import run_report
from transferkit.report.metrics import did_not_learn, majority_rate
from transferkit.report.plots import plot_confusion, plot_step_losses

if TYPE_CHECKING:
    from transferkit.data.base import AnyDataset
    from transferkit.options import FewshotConfig

EPISODES_SELECTION = ("no selection and no final model: an evaluation protocol — every episode fits its classifier "
                      "on K support examples per class drawn afresh from the pool")
"""The labels record's ``selection`` of an episodic evaluation."""


def fewshot_selection(method: str, head_c: float, iterations: int) -> str:
    """How a few-shot run's final model was chosen — none was: a fixed recipe (SetFit, Tunstall et al., 2022: its
    head C and iterations; Prototypical networks, Snell et al., 2017: the class means) — for the labels record."""
    how = (f" (head C = {head_c:g}, {iterations} iterations)" if method == "setfit"
           else " (class means of the support features)")
    return (f"no selection (fixed recipe): {method} with its given settings{how}; every one of the K labels per "
            "class fitted the final model")


def fewshot_metrics(c: FewshotConfig, scores: dict[str, Any], eval_name: str, support: AnyDataset,
                    train_idx: np.ndarray, details: dict[str, Any], total_params: int, total_time_s: float,
                    keys: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` of a prototypes or SetFit run: its ``scores`` on the evaluation data (``eval_name``) with
    whether it learnt at all, the K examples per class it fitted (``support``, their positions ``train_idx`` in the
    training split) and how its final model was chosen (:func:`fewshot_selection`), the fit's ``details``, the
    model's size, the time and the provenance of the data (``keys``: the cache keys of the support and evaluation
    batches)."""
    k = c.labels_per_class
    scores["did_not_learn"] = did_not_learn(scores["accuracy"], scores["n"], majority_rate(scores["confusion_matrix"]))
    selection = fewshot_selection(c.method, c.setfit.head_c, c.setfit.iterations)
    return {"task": "fewshot", "method": c.method, "split": eval_name, **scores, "labels_per_class": k,
            "n_train": len(support), "seed": c.seed, "details": details,
            "labels": labels_record(k, None, len(support), 0, selection, support.fingerprint(), train_idx),
            "total_params": total_params, "total_time_s": total_time_s, "provenance": provenance(c.seed, keys)}


def episodes_metrics(c: FewshotConfig, result: dict[str, Any], pool: int, extract_s: float, total_time_s: float,
                     key: Any) -> dict[str, Any]:
    """``metrics.json`` of an episodic evaluation (but every episode's accuracy): the episodes' summary
    (``result``: :meth:`~transferkit.few_shot.episodes.EpisodeResult.to_dict`), the size of the labelled ``pool``,
    the times, the labels record (no final model) and the provenance of the pool (``key``: its cache key)."""
    return {"task": "fewshot", "method": "episodes", "split": "training split (labelled pool)",
            **result, "pool": pool, "seed": c.seed, "feature_extraction_s": extract_s,
            "labels": {**labels_record(c.labels_per_class, None, 0, 0, EPISODES_SELECTION), "train_final_model": None},
            "total_time_s": total_time_s, "provenance": provenance(c.seed, {"pool": key})}


def write_fewshot_report(run_dir: Path, metrics: dict[str, Any], losses: list[float] | None, classes: list[str],
                         source: str, data: str, n_eval: int) -> None:
    """``report.md``, ``confusion_matrix.png`` and (SetFit) ``pair_loss.png`` of a prototypes or SetFit run."""
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


def write_episodes_report(run_dir: Path, metrics: dict[str, Any], source: str, data: str, classifier: str) -> None:
    """``report.md`` of an episodic evaluation (``fewshot --method episodes``): the protocol and the interval."""
    facts = {"job": "fewshot (episodic evaluation)", "source": source, "data": data,
             "episodes": f"{metrics['episodes']} × {metrics['n_way']}-way {metrics['k_shot']}-shot, "
                         f"{metrics['n_query']} queries per class",
             "classifier": classifier, "accuracy": f"{metrics['accuracy']:.4f} ± {metrics['ci95']:.4f} (95 % CI)",
             "features": f"{metrics['pool']} examples in {metrics['feature_extraction_s']:.1f} s",
             "seed": metrics["seed"]}
    run_report(run_dir / "report.md", "transferkit few-shot episodic evaluation", facts, None, (),
               ["Each episode samples its classes, support and query examples afresh from the labelled pool; "
                "the interval is 1.96 · std / √episodes."])


def write_zeroshot_report(run_dir: Path, metrics: dict[str, Any], source: str, data: str | None,
                          notes: list[str]) -> None:
    """``report.md`` (and the confusion matrix when labelled data was scored) of a ``zeroshot`` run."""
    labels, prompts, images = metrics["labels"], metrics["prompts"], []
    if "confusion_matrix" in metrics:
        plot_confusion(metrics["confusion_matrix"], labels, run_dir / "confusion_matrix.png",
                       f"zero-shot, {metrics['split']} split, accuracy {metrics['accuracy']:.3f}")
        images.append("confusion_matrix.png")
    facts = {"job": "zeroshot", "source": source, "labels": ", ".join(labels),
             "prompts": "; ".join(" | ".join(p) for p in prompts), "data": data or "-",
             "total time": f"{metrics['total_time_s']:.1f} s"}
    notes = [*notes, "No labelled example was used: each label is represented by its prompts' embeddings."]
    run_report(run_dir / "report.md", "transferkit zero-shot run", facts,
               metrics if "confusion_matrix" in metrics else None, images, notes)
