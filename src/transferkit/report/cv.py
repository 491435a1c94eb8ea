"""``metrics.json`` and ``report.md`` of ``transfer --cv K`` (and its pictures): per-fold and mean ± std scores, the
pooled out-of-fold predictions — functions of the folds' records and the run's metrics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.splits import labels_record
from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import (
    DID_NOT_LEARN,
    classification_metrics,
    describe_selection,
    did_not_learn,
    flag,
    majority_rate,
    mean_std,
)
from transferkit.report.plots import plot_comparison, plot_confusion

COLUMNS = ["fold", "train", "validation", "held out", "accuracy", "macro-F1", "best epoch"]


def fold_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per fold and the mean ± std row (flagged when the pooled predictions did not learn)."""
    records = metrics["folds"]
    rows = [[str(r["fold"]), str(r["n_train"]), str(r["n_val"]), str(r["n_eval"]), f"{r['accuracy']:.3f}",
             f"{r['macro_f1']:.3f}", str(r["best_epoch"] + 1) if r["n_val"] else "- (fixed recipe)"]
            for r in records]
    rows.append(["mean ± std", "", "", str(metrics["n_pool"]),
                 flag(f"{metrics['accuracy']:.3f} ± {metrics['accuracy_std']:.3f}", metrics["did_not_learn"]),
                 f"{metrics['macro_f1']:.3f} ± {metrics['macro_f1_std']:.3f}", ""])
    return rows


def fold_record(fold_no: int, fold: Any, m: dict[str, Any], trained: Any, val_accuracy: float) -> dict[str, Any]:
    """One fold's entry in metrics.json: the sizes of ``fold``'s parts (train, validation, held out), the held-out
    scores ``m``, and how ``trained`` (the engine's :class:`~transferkit.engine.trainer.TrainedModel`) was selected
    (best epoch, epochs run, the probe's C: ``selection``); ``val_accuracy`` is its best validation accuracy."""
    return {
        "fold": fold_no, "n_train": len(fold.train), "n_val": len(fold.val), "n_eval": len(fold.eval),
        "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "loss": m["loss"],
        "val_accuracy": val_accuracy, "best_epoch": trained.fit.best_epoch,
        "epochs_run": trained.fit.epochs_run, "train_time_s": trained.total_time_s,
        "confusion_matrix": m["confusion_matrix"], "strategy": trained.strategy, "options": trained.options,
        "selection": describe_selection(trained.fit.solver, len(fold.val), trained.fit.best_epoch,
                                        trained.fit.epochs_run, trained.fit.stopped_early),
    }


def cv_notes(metrics: dict[str, Any], num_classes: int) -> list[str]:
    """What the numbers are (and are not): no test split, the pooled out-of-fold scores, no bundle."""
    pooled, chance = metrics["out_of_fold"], 1.0 / num_classes
    return [
        "The test split was not used at all: every number here comes from held-out folds of the training set.",
        f"Pooled out-of-fold accuracy {pooled['accuracy']:.3f}, macro-F1 {pooled['macro_f1']:.3f} "
        f"(each pool image predicted once, by the model that did not train on it); chance {chance:.3f}"
        + (f" — {DID_NOT_LEARN}: not significantly above the majority-class rate." if metrics["did_not_learn"]
           else "."),
        "No bundle was written: the K fold models each saw only part of the pool. Rerun transfer without --cv "
        "to train the model you keep (and score it once on the test split).",
    ]


def cv_intro(source: str | None, data: str, classes: Any, class_names: list[str], metrics: dict[str, Any],
             fold_val: int | None, val_fraction: float) -> list[str]:
    """The report's opening paragraph: source, target (``classes`` as given, ``class_names`` after them), strategy, the
    labelled pool and how it was split, and each fold's validation part (``fold_val`` per class — ``0``: none, the
    fixed recipe — or, when ``None``, a stratified ``val_fraction``)."""
    cv, seed, labels_per_class = metrics["cv"], metrics["seed"], metrics["labels_per_class"]
    val_note = (f"{fold_val} images per class of each fold's training part (early stopping and the kept epoch)"
                if fold_val else "none — each fold trains on all of its training part with the fixed recipe (a "
                "linear probe still chooses its C by cross-validation inside that part)" if fold_val == 0
                else f"a stratified {val_fraction:.0%} (at least one per class) of each fold's training part")
    budget = (f"{labels_per_class} labelled images per class drawn from the training split (seed {seed})"
              if labels_per_class is not None else "the whole training split")
    return [
        f"Source: `{source}`. Target: `{data}` classes {classes or 'all'} ({', '.join(class_names)}). "
        f"Strategy `{metrics['strategy']}` {metrics['options'] or ''}. Pool: {budget}, {metrics['n_pool']} images, "
        f"split by stratified {cv}-fold cross-validation (shuffled, seed {seed}). Each fold trains on the other folds "
        f"and is scored once on its held-out fold. Validation: {val_note}. Mean ± sample std over folds."
    ]


def write_cv_report(run_dir: Path, metrics: dict[str, Any], classes: list[str], intro: list[str]) -> None:
    """``folds.png`` (every fold and the mean), ``confusion_matrix.png`` (out-of-fold) and report.md."""
    records, cv = metrics["folds"], metrics["cv"]
    acc_mean, acc_std, f1_mean, f1_std = (metrics[k] for k in ("accuracy", "accuracy_std", "macro_f1",
                                                               "macro_f1_std"))
    pooled = metrics["out_of_fold"]
    plot_comparison([f"fold {r['fold']}" for r in records] + ["mean"],
                    {"accuracy": ([r["accuracy"] for r in records] + [acc_mean], [0.0] * cv + [acc_std]),
                     "macro-F1": ([r["macro_f1"] for r in records] + [f1_mean], [0.0] * cv + [f1_std])},
                    run_dir / "folds.png", ylabel="held-out fold score", title=f"{cv}-fold cross-validation",
                    chance=1.0 / len(classes))
    plot_confusion(pooled["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                   f"out-of-fold predictions, accuracy {pooled['accuracy']:.3f}")
    comparison_report(run_dir / "report.md", f"transferkit transfer: {cv}-fold cross-validation", intro, COLUMNS,
                      fold_rows(metrics), ["folds.png", "confusion_matrix.png"], cv_notes(metrics, len(classes)))


def cv_metrics(records: list[dict[str, Any]], classes: list[str], pool: Any, pool_idx: np.ndarray, cv: int,
               seed: int, labels_per_class: int | None, val_per_class: int | None, start: float) -> dict[str, Any]:
    """metrics.json of a cross-validation: per fold (``records``), mean ± sample std over folds, the pooled
    out-of-fold metrics and the ``labels`` record of the pool (``val_per_class`` as recorded: the per-fold validation
    size with a budget, the option as given without one); ``total_time_s`` runs from ``start``."""
    num_classes, last = len(classes), records[-1]
    # every pool image is held out exactly once, so the summed confusion matrices are the out-of-fold predictions
    pooled_cm = np.sum([np.asarray(r["confusion_matrix"]) for r in records], axis=0)
    true_pooled = np.repeat(np.arange(num_classes), pooled_cm.sum(1))
    pred_pooled = np.concatenate([np.repeat(np.arange(num_classes), row) for row in pooled_cm])
    pooled = classification_metrics(true_pooled, pred_pooled, classes)
    acc_mean, acc_std = mean_std([r["accuracy"] for r in records])
    f1_mean, f1_std = mean_std([r["macro_f1"] for r in records])
    return {
        "task": "transfer", "mode": "cross-validation", "split": f"{cv}-fold cross-validation", "cv": cv,
        "accuracy": acc_mean, "accuracy_std": acc_std, "macro_f1": f1_mean, "macro_f1_std": f1_std,
        "accuracy_mean": acc_mean, "macro_f1_mean": f1_mean,
        "folds": records, "out_of_fold": pooled, "strategy": last["strategy"], "options": last["options"],
        "seed": seed, "labels_per_class": labels_per_class, "n_pool": len(pool),
        "test_split_used": False, "bundle": None, "total_time_s": time.perf_counter() - start,
        "did_not_learn": did_not_learn(pooled["accuracy"], pooled["n"], majority_rate(pooled["confusion_matrix"])),
        "labels": {**labels_record(labels_per_class, val_per_class, len(pool), 0, "per fold: " + last["selection"],
                                   pool.fingerprint(), pool_idx),
                   "train_final_model": None,
                   "note": "cross-validation trains no final model: each fold model fits the pool minus its "
                           "held-out fold (minus any per-fold validation part); 'indices' is the pool"},
    }
