"""What ``transferkit tune`` reports: ``trials.csv``, ``best_config.yaml``, metrics.json's content
(:func:`tune_metrics`), ``report.md`` and ``history.png`` (the best finished trials of a study, judged on the
validation split only) and the summary it prints — functions of the study's trial records and the search's base
settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from transferkit import atomic
from transferkit.report.markdown import comparison_report
from transferkit.report.plots import plot_optimisation_history
from transferkit.report.tables import comparison_table
from transferkit.tuning.space import fmt_value

TOP_TRIALS = 10


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


def write_trials_csv(path: Path, records: list[dict[str, Any]], names: list[str]) -> None:
    """``trials.csv``: one row per trial of the study (state, value, duration, epochs reported, every searched value
    under ``params_NAME``, why it failed, its run directory), written atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["number", "state", "value", "duration_s", "epochs_reported",
                     *(f"params_{n}" for n in names), "error", "run_dir"])
    for r in records:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         "" if r["duration_s"] is None else f"{r['duration_s']:.2f}", r["epochs_reported"],
                         *(r["params"].get(n, "") for n in names), r["error"] or "", r["run_dir"] or ""])
    atomic.write_text(path, buf.getvalue())


def write_best_config(out: Path, config: dict[str, Any], best: dict[str, Any], n_complete: int, study_name: str,
                      metric: str) -> None:
    """``out/best_config.yaml``: the best trial's ``transfer`` configuration under a header saying which trial it is
    and how to train it and score it once on the test split."""
    header = (f"# transferkit tune: the best of {n_complete} finished trials of study '{study_name}' — trial "
              f"{best['number']}, {metric} {best['value']:.4f} on the validation split.\n"
              f"# Train it and score it once on the test split: transferkit transfer --config "
              f"{out / 'best_config.yaml'}\n")
    atomic.write_text(out / "best_config.yaml", header + yaml.safe_dump(config, sort_keys=False))


def tune_metrics(records: list[dict[str, Any]], best: dict[str, Any], counts: dict[str, int], *, metric: str,
                 direction: str, out: Path, ran: int, storage: str, study_name: str, space: dict[str, str],
                 base: dict[str, Any], pruner: tuple[str, int, int], wall_s: float) -> dict[str, Any]:
    """metrics.json of a tune run: the best trial, counts per state, the study (``storage`` as shown, without a
    password), the searched ``space``, the labels every trial used, sampler and ``pruner`` (name, startup trials,
    warm-up epochs), and every trial's record."""
    return {
        "metric": metric, "direction": direction, "split": "validation",
        "best_value": best["value"], "best_trial": best["number"], "best_params": best["params"],
        "best_run_dir": best["run_dir"], "best_config": str(out / "best_config.yaml"),
        "n_trials": len(records), "n_complete": counts["COMPLETE"], "n_pruned": counts["PRUNED"],
        "n_failed": counts["FAIL"], "n_running": counts["RUNNING"], "trials_this_run": ran,
        "storage": storage, "study_name": study_name,
        "search_space": space,
        "labels": {"per_class": base.get("labels_per_class"), "validation_per_class": base.get("val_per_class"),
                   "selection": "every trial trains on the labelled training images and is judged on the separate "
                                "validation images (a budget of K + V per class); best_config.yaml repeats that split",
                   "train_final_model": None},
        "sampler": f"TPE, seeded per trial from seed {base['seed']}",
        "pruner": {"name": pruner[0], "startup_trials": pruner[1], "warmup_epochs": pruner[2]},
        "wall_time_s": wall_s, "trials": records,
    }


def print_tune_summary(console: Console, metrics: dict[str, Any], names: list[str], words: str, out: Path) -> None:
    """The table of the best finished trials and where the best config, the report and the plot are."""
    columns, rows = trials_table(metrics, names)
    console.print(comparison_table(columns, rows, title=f"{metrics['study_name']}: best trials by {words} "
                                                        f"({metrics['n_complete']} finished, {metrics['n_pruned']} "
                                                        f"pruned, {metrics['n_failed']} failed)"))
    console.print(f"best config: {out / 'best_config.yaml'}   report: {out / 'report.md'}   plot: "
                  f"{out / 'history.png'}")
