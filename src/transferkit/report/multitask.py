"""``report.md`` of ``transferkit multitask``: every task's multi-task result beside its single-task model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.data.splits import labels_record
from transferkit.multi_task.data import labelled_rows
from transferkit.provenance import provenance
from transferkit.report.markdown import comparison_report
from transferkit.report.metrics import describe_selection, did_not_learn, flag, majority_rate
from transferkit.report.plots import plot_comparison, plot_learning_curves

if TYPE_CHECKING:
    from transferkit.multi_task.spec import MultiTaskSpec
    from transferkit.multi_task.train import MultiTaskData, MultiTaskPlan, MultiTaskResult


def at_chance(m: dict[str, Any] | None) -> bool:
    """Whether task metrics ``m`` (accuracy, n, confusion matrix) are at chance level — "did not learn"."""
    return m is not None and did_not_learn(m["accuracy"], m["n"], majority_rate(m["confusion_matrix"]))


def tasks_table(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(columns, rows)`` of the console's summary: per task, multi-task and single-task accuracy and their
    difference (``-`` without a single-task model)."""
    rows = [[n, f"{r['multitask']['accuracy']:.4f}",
             f"{r['single_task']['accuracy']:.4f}" if r.get("single_task") else "-",
             f"{r['delta']:+.4f}" if r.get("delta") is not None else "-"] for n, r in metrics["tasks"].items()]
    return ["task", "multi-task", "single-task", "Δ"], rows


def write_multitask_report(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]],
                           solver: dict[str, Any] | None) -> None:
    """``run_dir/report.md`` (with its plots): per task, single-task vs multi-task; ``history`` and ``solver`` are
    the fit's epoch history and, for a solved probe, its per-task record."""
    tasks = metrics["tasks"]
    split = metrics["split"]
    rows = []
    for name, r in tasks.items():
        s = r.get("single_task")
        rows.append([name, len(r["classes"]), r["train_labels"], r["val_labels"],
                     f"{r['missing_in_data']} of {r['rows_in_data']}",
                     flag(f"{s['accuracy']:.4f}", at_chance(s)) if s else "-",
                     flag(f"{r['multitask']['accuracy']:.4f}", at_chance(r["multitask"])),
                     f"{r['delta']:+.4f}" if r["delta"] is not None else "-",
                     f"{r['multitask']['macro_f1']:.4f}"])
    images = []
    if any(r.get("single_task") for r in tasks.values()):
        groups = list(tasks)
        series = {"single-task": ([tasks[g]["single_task"]["accuracy"] if tasks[g]["single_task"] else 0.0
                                   for g in groups], [0.0] * len(groups)),
                  "multi-task": ([tasks[g]["multitask"]["accuracy"] for g in groups], [0.0] * len(groups))}
        plot_comparison(groups, series, run_dir / "tasks.png", f"{split} accuracy",
                        f"multi-task ({metrics['weighting']}) vs single-task, same steps")
        images.append("tasks.png")
    if history and solver is None:  # a solved probe has no epochs to plot
        plot_learning_curves(history, run_dir / "learning_curves.png", "multi-task training")
        images.append("learning_curves.png")
    intro = [f"Strategy **{metrics['strategy']}** {metrics['options'] or ''}, loss weighting **{metrics['weighting']}**"
             f" (final weights {', '.join(f'{k} {v:.3g}' for k, v in metrics['final_weights'].items())}), task "
             f"sampling **{metrics['sampling']}**; {metrics['n_train_rows']} training rows, {metrics['n_val_rows']} "
             f"validation rows; seed {metrics['seed']}.",
             "",
             "Each task's single-task model has the same source, strategy, labelled rows and number of optimiser "
             f"steps. Accuracies are on the {split} split, evaluated once at the end; "
             + ("the kept epoch (and any early stop) used the validation rows only (mean of the tasks' validation "
                "losses). " if metrics["n_val_rows"] else "no validation rows: nothing was selected, the fixed "
                "recipe's final weights were kept and every labelled training row fitted them. ")
             + "'missing' counts the rows of the training data without a label for the task (masked out of its loss)."
             + " An accuracy marked 'did not learn' is not significantly above the majority-class rate (one-sided "
             "binomial test at 1 %)."]
    if solver is not None:  # a solved probe: no steps, no weighting — each head is its own convex problem
        chosen = ", ".join(f"{n} C = {r['C']:.3g} ({r['chosen_by']})" for n, r in solver["tasks"].items())
        intro[-1] = ("The linear heads were **solved**, not stepped: L-BFGS logistic regression per task on the rows "
                     f"labelled for it ({chosen}); the loss weighting and task sampling do not apply, and a "
                     "single-task model is the same solve on the same rows. Accuracies are on the "
                     f"{split} split, evaluated once at the end; the validation rows were only scored.")
    findings = [f"{n}: not compared — {'single-task' if at_chance(r['single_task']) else 'multi-task'} did not learn"
                if at_chance(r["single_task"]) or at_chance(r["multitask"]) else
                f"{n}: multi-task {'helped' if r['delta'] > 0 else 'did not help'} ({r['delta']:+.4f}; one seed — "
                "compare over seeds before concluding)" for n, r in tasks.items() if r["delta"] is not None]
    for name, h in metrics["holdout"].items():
        if "accuracy" in h:
            accs = ", ".join(f"{k} {v:.4f}" for k, v in h["accuracy"].items())
            findings.append(f"holdout task {name} ({h['train_labels']} labels; logistic-regression probe on each "
                            f"model's features): {accs}")
    comparison_report(run_dir / "report.md", "transferkit multitask run", intro,
                      ["task", "classes", "train labels", "val labels", "missing", "single-task acc",
                       "multi-task acc", "Δ", "multi-task macro-F1"], rows, images, findings)


def multitask_metrics(spec: MultiTaskSpec, d: MultiTaskData, plan: MultiTaskPlan, res: MultiTaskResult, seed: int,
                      wall_s: float) -> dict[str, Any]:
    """metrics.json's content: per task the labels it had, its multi-task and single-task scores and their
    difference; the holdout probes, the weighting and sampling, sizes, times, the fit and the provenance."""
    tasks = {}
    missing = d.full.missing()
    fit = res.trained.fit
    selection = ("per task: the probe's C by cross-validation on that task's training labels, then refit on all of "
                 "them" if fit.solver is not None else
                 describe_selection(None, len(d.val_set), fit.best_epoch, fit.epochs_run, fit.stopped_early))
    for name, i, cls in zip(plan.names, plan.cols, plan.classes, strict=True):
        s = res.single_scores.get(name)
        n_train, n_val = len(labelled_rows(d.train_set, i)), len(labelled_rows(d.val_set, i))
        tasks[name] = {
            "classes": cls, "train_labels": n_train, "val_labels": n_val,
            "missing_in_data": missing[name], "rows_in_data": len(d.full),
            "labels_per_class": spec.tasks[i].labels_per_class,
            "labels": labels_record(spec.tasks[i].labels_per_class, spec.tasks[i].val_per_class, n_train, n_val,
                                    selection),
            "multitask": res.scores[name], "single_task": s,
            "delta": None if s is None else res.scores[name]["accuracy"] - s["accuracy"],
        }
    for name, epochs_t in res.single_epochs.items():
        tasks[name]["single_task_epochs"] = epochs_t
    return {
        "task": "multitask", "split": plan.split, "tasks": tasks, "holdout": res.holdout,
        "strategy": res.trained.strategy, "options": res.trained.options, "weighting": spec.weighting,
        "sampling": spec.sampling, "temperature": spec.temperature if spec.sampling == "temperature" else None,
        "final_weights": res.final_weights,
        "n_train_rows": len(labelled_rows(d.train_set, plan.cols)), "n_val_rows": len(d.val_set),
        "trainable_params": res.trained.trainable_params, "total_params": res.trained.model.num_parameters(),
        "train_time_s": fit.train_time_s, "baseline_time_s": res.baseline_s, "total_time_s": wall_s,
        "fit": fit.to_dict(), "history": fit.history, "seed": seed, "steps_per_epoch": res.steps_per_epoch,
        "provenance": provenance(seed, {"train": plan.train_b.key, "validation": plan.val_b.key,
                                        plan.split: plan.eval_b.key if d.test_set is not None else None}),
    }
