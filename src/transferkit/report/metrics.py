"""Classification metrics (scikit-learn): accuracy, macro-F1, per-class precision/recall, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of predictions ``y_pred`` against ``y_true`` (both ``(N,)`` class indices).

    Returns a JSON-ready dict: ``accuracy``, ``macro_f1``, ``per_class`` (precision, recall, support per
    class name), ``confusion_matrix`` (rows: true class, columns: predicted class) and ``n``. No examples: ``n`` 0,
    ``nan`` scores and a zero confusion matrix.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.arange(len(classes))
    if not len(y_true):  # an empty set (a run without a validation set): nothing scored, the shape kept
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan"),
                "per_class": {name: {"precision": float("nan"), "recall": float("nan"), "support": 0}
                              for name in classes},
                "confusion_matrix": np.zeros((len(classes), len(classes)), dtype=int).tolist()}
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


def accuracy_series(summary: Sequence[dict[str, Any]], labels: Sequence[str],
                    budgets: Sequence[int | None]) -> dict[str, tuple[list[float], list[float]]]:
    """``{label: (mean accuracies, their stds)}`` in ``budgets`` order, from a grid's summary rows (``strategy``,
    ``labels_per_class``, ``accuracy_mean``, ``accuracy_std``): what ``compare``'s bars and ``curve``'s lines plot."""
    series = {}
    for label in labels:
        by_k = {r["labels_per_class"]: r for r in summary if r["strategy"] == label}
        series[label] = ([by_k[k]["accuracy_mean"] for k in budgets], [by_k[k]["accuracy_std"] for k in budgets])
    return series


def verdict(diff: float, spread: float, seeds: int) -> str:
    """How a mean difference ``diff`` reads against the larger of two stds: ``beats`` / ``loses to`` when it
    exceeds one std, ``is within one std of`` otherwise; no verdict with fewer than two seeds (no spread)."""
    if seeds < 2:
        return "cannot be ranked against (one seed, no spread)"
    return "beats" if diff > spread else "loses to" if -diff > spread else "is within one std of"


CHANCE_ALPHA = 0.01  # the significance level of :func:`did_not_learn`
DID_NOT_LEARN = "did not learn"


def majority_rate(labels: Sequence[int] | np.ndarray | Sequence[Sequence[int]]) -> float:
    """The accuracy of always predicting the most frequent class: from the evaluated ``labels`` (``(N,)`` class
    indices), or from a confusion matrix (rows: true class) when given one. ``nan`` for no examples."""
    arr = np.asarray(labels)
    counts = arr.sum(1) if arr.ndim == 2 else np.bincount(arr.astype(np.int64)) if arr.size else np.zeros(0)
    total = float(np.sum(counts))
    return float(np.max(counts)) / total if total else float("nan")


def did_not_learn(accuracy: float, n: int, majority: float, alpha: float = CHANCE_ALPHA) -> bool:
    """Whether ``accuracy`` on ``n`` evaluated examples is at chance level — the model "did not learn".

    The rule: the number of correct predictions, ``round(accuracy · n)``, is **not** significantly above what
    always predicting the majority class of the evaluated labels scores (rate ``majority``), by a one-sided exact
    binomial test (``scipy.stats.binomtest``, alternative "greater") at level ``alpha`` (1 %). The majority rate,
    not ``1/classes``, is the bar because a model that collapses onto the largest class reaches it without learning
    anything. A mean over seeds is tested as if it were one evaluation of ``n`` examples. ``nan`` accuracy or no
    examples: ``True`` (nothing shows it learnt). Why a test and not ``accuracy > majority``: on 20 test images one
    lucky image more than the majority is noise, and a comparison table must not rank noise.
    """
    from scipy.stats import binomtest

    if n is None or n <= 0 or accuracy is None or not np.isfinite(accuracy) or not np.isfinite(majority):
        return True
    if majority >= 1.0:
        return True
    k = int(round(float(accuracy) * n))
    return bool(binomtest(k, int(n), float(majority), alternative="greater").pvalue >= alpha)


def flag(accuracy_text: str, at_chance: bool) -> str:
    """``accuracy_text`` with the :data:`DID_NOT_LEARN` mark appended when ``at_chance`` (every table's cell)."""
    return f"{accuracy_text} ({DID_NOT_LEARN})" if at_chance else accuracy_text


def num(x: Any, digits: int = 4) -> str:
    """A number for a report: ``digits`` decimals, or "n/a" for a missing value (``None``, NaN, not a number)."""
    ok = isinstance(x, int | float) and not isinstance(x, bool) and x == x
    return f"{x:.{digits}f}" if ok else "n/a"


def _mean_std(row: dict[str, Any], metric: str, digits: int = 3) -> str:
    return f"{row[metric + '_mean']:.{digits}f} ± {row[metric + '_std']:.{digits}f}"


# the columns a grid's summary table may show (compare, curve), each a function of one summary row
SUMMARY_CELLS: dict[str, Any] = {
    "strategy": lambda r: r["strategy"],
    "labels/class": lambda r: str(r["labels_per_class"] or "all"),
    "test accuracy": lambda r: flag(_mean_std(r, "accuracy"), r["did_not_learn"]),
    "macro-F1": lambda r: _mean_std(r, "macro_f1"),
    "val accuracy": lambda r: _mean_std(r, "val_accuracy") if r["val_accuracy_mean"] == r["val_accuracy_mean"]
    else "- (no validation set)",
    "train time (s)": lambda r: _mean_std(r, "train_time_s", 2),
    "wall time (s)": lambda r: _mean_std(r, "wall_time_s", 2),
    "seeds": lambda r: str(r["seeds"]),
}


def summary_rows(summary: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[list[str]]:
    """One table row per summary row (a strategy at a budget: means ± std over seeds) with ``columns``
    (:data:`SUMMARY_CELLS`); a row that did not learn is flagged in its accuracy cell."""
    return [[SUMMARY_CELLS[c](r) for c in columns] for r in summary]


def comparison_sentence(name: str, other: str, diff: float, spread: float, seeds: int,
                        name_at_chance: bool, other_at_chance: bool) -> str:
    """"``name`` <verdict> ``other``" for a findings list, or — when either did not learn — "``name`` vs ``other``:
    not compared — ``X`` did not learn": no sentence claims to beat (or lose to) a model at chance level."""
    failed = [m for m, bad in ((other, other_at_chance), (name, name_at_chance)) if bad]
    if failed:
        return f"{name} vs {other}: not compared — {' and '.join(failed)} did not learn"
    return f"{name} {verdict(diff, spread, seeds)} {other}"


def describe_selection(solver: dict[str, Any] | None, n_val: int, best_epoch: int = -1, epochs_run: int = 0,
                       stopped_early: bool = False) -> str:
    """How a trained model's settings were selected, in words (metrics.json's ``labels.selection``, the reports).

    A solved head (``solver``: the probe's record) chose its L2 strength C by cross-validation on the training labels
    and was refit on all of them — or used the default C with "no selection" when no fold was possible (K = 1). A
    stepped model with a separate validation set (``n_val`` > 0) kept the weights of its best validation epoch
    (early stopping when it stopped before the last epoch). Without one: "no selection" — a fixed recipe whose final
    weights are kept, every training label fitting them."""
    if solver is not None:
        if not solver.get("folds"):
            return (f"no selection: {solver.get('chosen_by', 'the default C')}; the head was fitted on every "
                    "training label")
        return (f"C = {solver['C']:.3g} chosen by {solver.get('chosen_by', 'cross-validation')} on the training "
                "labels only; the head was then refit on all of them")
    if n_val > 0:
        stop = f", early stopping after {epochs_run} epochs" if stopped_early else ""
        return (f"the kept weights (epoch {best_epoch + 1} of {epochs_run}{stop}) were chosen on the separate "
                f"validation set ({n_val} examples); the training labels alone fitted them")
    return ("no selection (fixed recipe): no validation set, every training label fitted the model and the final "
            "weights were kept")


def group_did_not_learn(cells: Sequence[dict[str, Any]], accuracy_key: str = "accuracy",
                        n_key: str = "n_test") -> bool:
    """Whether a table row — the mean over seeds of ``cells`` — is at chance level (:func:`did_not_learn` of the
    mean accuracy on one cell's ``n_key`` evaluated examples, against the cells' ``majority_rate``; cells written
    before that was recorded fall back to ``1/num_classes``). No cells or no evaluated examples: ``False`` (nothing
    to flag)."""
    if not cells:
        return False
    n = int(cells[0].get(n_key) or 0)
    if n <= 0:
        return False
    maj = cells[0].get("majority_rate")
    if maj is None:
        maj = 1.0 / max(int(cells[0].get("num_classes") or 1), 1)
    mean = float(np.mean([float(c[accuracy_key]) for c in cells]))
    return did_not_learn(mean, n, float(maj))
