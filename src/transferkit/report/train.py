"""``metrics.json`` and ``report.md`` (and its pictures) of a ``pretrain``/``transfer`` run — functions of the run's
values: what trained on which labels, how selection was done, the solved head or the epochs, and which split the
scores come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.data.splits import labels_record
from transferkit.report.markdown import run_report
from transferkit.report.metrics import describe_selection, did_not_learn, majority_rate
from transferkit.report.plots import plot_confusion, plot_learning_curves

if TYPE_CHECKING:
    from transferkit.engine.trainer import TrainedModel


def train_metrics(
    kind: str, trained: TrainedModel, config: dict[str, Any], val: dict[str, Any], test: dict[str, Any] | None,
    data_sizes: dict[str, int], wall_s: float, provenance: dict[str, Any] | None = None,
    labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` content of a finished ``pretrain``/``transfer`` run, from its scores (``val``, ``test``).

    ``provenance`` (:func:`transferkit.provenance.provenance`: seed, data fingerprints, library versions, git
    commits) goes in as it is; so does ``labels`` (:func:`run_labels`: which labels trained the final model and how
    selection was done). An empty validation set (a labelled budget without ``--val-per-class``: the K labels are the
    whole budget) gives ``"validation": null``; with no test split either, ``split`` is ``"none"`` and nothing is
    scored. ``did_not_learn`` flags an accuracy at chance level (:func:`~transferkit.report.metrics.did_not_learn`)."""
    has_val = bool(val) and val.get("n", 0) > 0
    final = test if test is not None else val
    return {
        "task": kind,
        "split": "test" if test is not None else "validation" if has_val else "none",
        **{k: final[k] for k in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "n")},
        "did_not_learn": did_not_learn(final["accuracy"], final["n"], majority_rate(final["confusion_matrix"]))
        if final["n"] else None,  # None: nothing was evaluated (no test split, no validation set)
        "validation": {"accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "loss": val["loss"], "n": val["n"]}
        if has_val else None,
        "labels": labels,
        "strategy": trained.strategy,
        "options": trained.options,
        "seed": config.get("seed"),
        **data_sizes,
        "trainable_params": trained.trainable_params,
        "total_params": trained.model.num_parameters(),
        "train_time_s": trained.fit.train_time_s,
        "feature_extraction_s": trained.extra_time_s,
        "feature_cache": trained.feature_cache,
        "head_init": trained.head_init,
        "total_time_s": wall_s,
        "fit": trained.fit.to_dict(),
        "history": trained.fit.history,  # per epoch: losses, accuracies, rate, and a regulariser's reg_ratio
        "provenance": provenance,
    }


def run_labels(trained: TrainedModel, labels_per_class: int | None, val_per_class: int | None, n_train: int,
               n_val: int, fingerprint: str | None, indices: Any = None) -> dict[str, Any]:
    """metrics.json's ``labels`` entry of a trained run (:func:`~transferkit.data.splits.labels_record`), with how
    selection was done (:func:`~transferkit.report.metrics.describe_selection`) and, for a probe whose C was
    cross-validated, that cross-validation's accuracy at the chosen C as ``selection_estimate`` (a held-out estimate
    from the training labels alone)."""
    fit = trained.fit
    record = labels_record(labels_per_class, val_per_class, n_train, n_val,
                           describe_selection(fit.solver, n_val, fit.best_epoch, fit.epochs_run, fit.stopped_early),
                           fingerprint, indices)
    solver = fit.solver or {}
    if solver.get("grid") and solver.get("cv_accuracy"):
        best = solver["grid"].index(solver["C"]) if solver["C"] in solver["grid"] else None
        if best is not None:
            record["selection_estimate"] = {"accuracy": float(solver["cv_accuracy"][best]),
                                            "log_loss": float(solver["cv_log_loss"][best]),
                                            "how": f"mean held-out accuracy of {solver.get('cv', 'cross-validation')}"
                                                   " at the chosen C"}
    return record


def write_train_report(run_dir: Path, kind: str, metrics: dict[str, Any], classes: list[str],
                       lineage: dict[str, Any]) -> None:
    """Write ``report.md``, ``confusion_matrix.png`` and (for stepped training) ``learning_curves.png`` of the run
    whose ``metrics.json`` content is ``metrics`` into ``run_dir``."""
    fit, history = metrics["fit"], metrics["history"]
    solver, has_val = fit.get("solver"), metrics["validation"] is not None
    images = []
    if history and solver is None:  # a solved head has no epochs to plot
        plot_learning_curves(history, run_dir / "learning_curves.png", f"{kind}: {metrics['strategy']}")
        images.append("learning_curves.png")
    plot_confusion(metrics["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                   f"{metrics['split']} split, accuracy {metrics['accuracy']:.3f}")
    images.append("confusion_matrix.png")
    facts = {
        "job": kind, "strategy": f"{metrics['strategy']} {metrics['options'] or ''}".strip(),
        "source": lineage.get("source", "-"), "data": f"{lineage.get('data')} classes {classes}",
        "labelled training examples": metrics["n_train"], "validation examples": metrics["n_val"],
        **label_facts(metrics["labels"]),
        "seed": metrics["seed"], "best epoch (validation)": fit["best_epoch"] + 1,
        "epochs run": fit["epochs_run"], "trainable / total parameters":
            f"{metrics['trainable_params']:,} / {metrics['total_params']:,}",
        "train time": f"{metrics['train_time_s']:.1f} s", "total time": f"{metrics['total_time_s']:.1f} s",
    }
    if solver is not None:
        del facts["best epoch (validation)"], facts["epochs run"]
        facts.update(solver_facts(solver))
    elif not has_val:  # no validation set: no epoch was chosen, the final weights are kept
        del facts["best epoch (validation)"]
    if metrics["head_init"] is not None:
        h = metrics["head_init"]
        pairs = ", ".join(f"{t} ← {s}" for t, s in h["matched"].items())
        facts["head rows from the source head"] = (f"{len(h['matched'])} of {len(classes)} classes"
                                                   + (f" ({pairs})" if pairs else "")
                                                   + ("" if h["applied"] else f" — not applied: {h['reason']}"))
    if metrics["feature_cache"]:
        facts["features"] = (f"extracted in {metrics['feature_extraction_s']:.1f} s (feature cache "
                             f"{metrics['feature_cache']})")
    ratio = reg_ratio_fact(history)
    if ratio:
        facts["regulariser / cross-entropy"] = ratio
    notes = run_notes(solver is not None, has_val, metrics["split"] == "test")
    run_report(run_dir / "report.md", f"transferkit {kind} run", facts, metrics, images, notes)


def label_facts(labels: dict[str, Any] | None) -> dict[str, str]:
    """Report lines of a run's ``labels`` record: which labels trained the final model, and how selection was done."""
    if not labels:
        return {}
    k, v = labels.get("per_class"), labels.get("validation_per_class")
    if k is None:
        which = f"the training split minus its validation part: {labels['train_final_model']} examples"
    else:
        which = f"all {k} labelled examples per class ({labels['train_final_model']} in total)"
        which += (f"; budget {k} + {v} per class (a separate validation set of {v} per class)" if v
                  else f"; budget {k} per class in total (no separate validation set)")
    out = {"labels that trained the final model": which, "selection": labels.get("selection", "-")}
    est = labels.get("selection_estimate")
    if est:
        out["held-out estimate (selection)"] = (f"accuracy {est['accuracy']:.3f} ({est['how']}; an estimate from "
                                                "the training labels, not a test score)")
    return out


def run_notes(solved: bool, has_val: bool, has_test: bool) -> list[str]:
    """The report's closing notes: what selection used (``solved``: a linear head solved by the probe solver), and
    which split the metrics come from (never claiming an early stop or a validation choice that did not happen)."""
    if solved:
        chose = ("The linear head was solved on the training labels alone (C chosen on them, see above)"
                 + ("; the validation split was only scored" if has_val else ""))
    elif has_val:
        chose = "The kept epoch (and any early stop) was chosen on the validation split only"
    else:
        chose = ("No validation set: nothing was selected (no early stopping, no epoch choice); the final weights of "
                 "the fixed recipe were kept")
    if has_test:
        return [f"{chose}; the test split was evaluated once, at the end."]
    if has_val:
        return [f"{chose}. This dataset has no test split: the metrics are on the validation split"
                + (", which was also used for selection, so they are optimistic." if not solved else ".")]
    return [f"{chose}. This dataset has no test split and the run has no validation set: nothing was evaluated "
            "(add --val-per-class V for a validation score, or evaluate with `transferkit use`)."]


def reg_ratio_fact(history: list[dict[str, Any]]) -> str | None:
    """The regulariser's size against the cross-entropy over the run (issue 26: the defaults are calibrated so
    that the term is neither negligible nor dominant), from the history's per-epoch ``reg_ratio``; ``None`` when the
    run had no regulariser."""
    ratios = [r["reg_ratio"] for r in history if isinstance(r.get("reg_ratio"), (int, float))]
    if not ratios:
        return None
    mid = sorted(ratios)[len(ratios) // 2]
    return (f"{ratios[0]:.3g} in the first epoch, {ratios[-1]:.3g} in the last (median {mid:.3g}; per epoch in "
            "metrics.json's history, reg_ratio)")


def solver_facts(record: dict[str, Any]) -> dict[str, str]:
    """Report lines for a solved linear head (:mod:`transferkit.strategies.probe_solver`): the L2 strength and how it
    was chosen, the cross-validation table, any fallback, iterations and time, and the settings it ignored."""
    facts = {"linear head": (f"solved (L-BFGS logistic regression on standardised features), C = {record['C']:.3g} "
                             f"— {record['chosen_by']}; {record['iterations']} L-BFGS iterations, "
                             f"{record.get('solve_s', record['fit_s']):.2f} s"
                             + ("" if record.get("converged", True) else " (final fit stopped at max_iter)"))}
    if record.get("grid"):
        facts["cross-validation (C: held-out log-loss / accuracy)"] = ", ".join(
            f"{c:.3g}: {lo:.3f}/{a:.3f}" for c, lo, a in zip(record["grid"], record["cv_log_loss"],
                                                             record["cv_accuracy"], strict=True))
    if record.get("at_grid_edge"):
        facts["note"] = "the chosen C lies at the edge of the grid"
    if record.get("fallback"):
        facts["cross-validation fallback"] = record["fallback"]
    if record.get("ignored"):
        facts["ignored (stepped-training settings)"] = ", ".join(record["ignored"])
    return facts
