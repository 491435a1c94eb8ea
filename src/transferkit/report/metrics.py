"""Classification metrics (scikit-learn): accuracy, macro-F1, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of predictions ``y_pred`` against ``y_true`` (both ``(N,)`` class indices).

    Returns a JSON-ready dict: ``accuracy``, ``macro_f1``, ``per_class`` (precision, recall, support per
    class name), ``confusion_matrix`` (rows: true class, columns: predicted class) and ``n``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(len(classes))
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(classes, precision, recall, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def verdict(diff: float, spread: float, seeds: int) -> str:
    """How a mean difference ``diff`` reads against the larger of two stds: ``beats`` / ``loses to`` when it
    exceeds one std, ``is within one std of`` otherwise; no verdict with fewer than two seeds (no spread)."""
    if seeds < 2:
        return "cannot be ranked against (one seed, no spread)"
    return "beats" if diff > spread else "loses to" if -diff > spread else "is within one std of"
