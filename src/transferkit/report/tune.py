"""``report.md`` and ``history.png`` of ``transferkit tune``: the best finished trials of a study, judged on the
validation split only — a function of the run's metrics (its trial records) and the search's base settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.report.markdown import comparison_report
from transferkit.report.plots import plot_optimisation_history

TOP_TRIALS = 10


def fmt_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def ranked_trials(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished trials, best first (ties: the earlier trial)."""
    complete = [r for r in metrics["trials"] if r["state"] == "COMPLETE" and r["value"] is not None]
    sign = -1 if metrics["direction"] == "maximize" else 1
    return sorted(complete, key=lambda r: (sign * r["value"], r["number"]))


def trials_table(metrics: dict[str, Any], names: list[str]) -> tuple[list[str], list[list[str]]]:
    """``(columns, rows)`` of the :data:`TOP_TRIALS` best finished trials."""
    columns = ["trial", metrics["metric"], *names, "epochs", "time (s)"]
    rows = [[str(r["number"]), f"{r['value']:.4f}", *(fmt_value(r["params"].get(n, "-")) for n in names),
             str(r["epochs_reported"] or "-"), f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"]
            for r in ranked_trials(metrics)[:TOP_TRIALS]]
    return columns, rows


def write_tune_report(out: Path, metrics: dict[str, Any], base: dict[str, Any], names: list[str], words: str,
                      ran: int) -> None:
    """``history.png`` (the objective trial by trial) and report.md: the study, the best trials, what the best
    validation value does and does not mean."""
    maximise = metrics["direction"] == "maximize"
    records, study_name = metrics["trials"], metrics["study_name"]
    plot_optimisation_history(records, out / "history.png", words, maximise,
                              f"{study_name}: {base['strategy']} on {base['data']}")
    columns, rows = trials_table(metrics, names)
    n = {k: metrics[f"n_{k}"] for k in ("complete", "pruned", "failed", "running")}
    space_text = ", ".join(f"`{name}={spec}`" for name, spec in metrics["search_space"].items())
    val_k = base.get("val_per_class") if base.get("val_per_class") is not None else base.get("labels_per_class")
    pruner = metrics["pruner"]["name"]
    intro = [
        f"Study `{study_name}` in `{metrics['storage']}`: {len(records)} trials — {n['complete']} finished, "
        f"{n['pruned']} pruned, {n['failed']} failed" + (f", {n['running']} running" if n["running"] else "")
        + f" ({ran} in this run).",
        "",
        f"Strategy `{base['strategy']}` from `{base['source']}` on `{base['data']}` classes "
        f"{base['classes'] or 'all'}, "
        + (f"{base['labels_per_class']} labelled training images per class plus {val_k} other "
           f"labelled images per class as the validation set the trials are judged on (a labelled budget of "
           f"{base['labels_per_class'] + val_k} per class; tune keeps a separate validation set), "
           if base["labels_per_class"] is not None else "the whole training split minus a stratified "
           f"{base['val_fraction']:.0%} validation part, ")
        + f"up to {base['epochs']} epochs, seed "
        f"{base['seed']}. Searched: {space_text}. Sampler: TPE (Bergstra et al., 2011); pruner: "
        f"{pruner}. Objective: {words} ({'higher' if maximise else 'lower'} is better).",
        "",
        f"The {len(rows)} best finished trials:",
    ]
    findings = [
        f"Best: trial {metrics['best_trial']}, {metrics['metric']} {metrics['best_value']:.4f} with "
        + ", ".join(f"{k}={fmt_value(v)}" for k, v in metrics["best_params"].items())
        + ". `transferkit transfer --config best_config.yaml` trains it and scores it once on the test split.",
        "Every trial trained on the labelled training images and was judged on the validation images only; the "
        "test split was never loaded. The best validation value was selected on those same images, so it is "
        "optimistic — the test score of the final run is the honest number.",
    ]
    if n["pruned"]:
        findings.append(f"{_count(n['pruned'], 'trial')} stopped early by the pruner (in the plot at the last "
                        "value reported).")
    errors = [r for r in records if r["state"] == "FAIL" and r["error"]]
    if errors:
        findings.append(f"{_count(n['failed'], 'trial')} failed; trials.csv gives each reason (trial "
                        f"{errors[0]['number']}: {errors[0]['error']}).")
    comparison_report(out / "report.md", f"Hyper-parameter search: {study_name}", intro, columns, rows,
                      ["history.png"], findings)
