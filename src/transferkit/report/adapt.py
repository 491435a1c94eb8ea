"""``report.md`` of ``transferkit adapt`` (and its pictures): a function of the run's metrics, its training history
and, when plots are on, the 2-D embeddings of the source and target features before and after training; the run's
scores for ``metrics.json`` and its lines on the terminal. For a comparison of methods × seeds: the per-method
summary (mean ± std, gap closed), the findings, the bar chart and its ``report.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transferkit.report.markdown import comparison_report, markdown_table, run_report
from transferkit.report.metrics import (
    classification_metrics,
    comparison_sentence,
    flag,
    group_did_not_learn,
    majority_rate,
    mean_std,
)
from transferkit.report.plots import plot_confusion, plot_embedding, plot_learning_curves, plot_method_bars
from transferkit.report.tables import comparison_table, metrics_table

if TYPE_CHECKING:
    from transferkit.data.adapt_splits import AdaptDomains
    from transferkit.engine.adapt import AdaptFitResult
    from transferkit.options import AdaptConfig

BASELINE, REFERENCE = "source_only", "target_oracle"  # the comparison's lower and upper references
ORACLE_NOTE = "ORACLE selection: the checkpoint was chosen with target labels (for analysis only, not a fair result)"
REFERENCE_NOTE = "target_oracle is an UPPER REFERENCE trained on labelled target data, not an adaptation method"

Pair = tuple[np.ndarray, np.ndarray]


def write_adapt_report(run_dir: Path, m: dict[str, Any], history: list[dict[str, float]], classes: list[str],
                       embeddings: dict[str, Pair] | None) -> None:
    """Learning curves (when ``history`` has epochs), the target-test confusion matrix, t-SNE pictures of
    ``embeddings`` (``labels``, ``before``, ``after``: each a (source, target) pair) and ``report.md``: the facts,
    which checkpoint each selection criterion picks, and the domain distances before and after."""
    images: list[str] = []
    if history:
        plot_learning_curves(history, run_dir / "learning_curves.png", f"adapt: {m['method']} (source val)")
        images.append("learning_curves.png")
    plot_confusion(m["target_test"]["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                   f"target test, accuracy {m['target_accuracy']:.3f}")
    images.append("confusion_matrix.png")
    if embeddings is not None:
        (s_lab, t_lab), (s0, t0), (s1, t1) = embeddings["labels"], embeddings["before"], embeddings["after"]
        plot_embedding(s0, t0, s_lab, t_lab, run_dir / "tsne_before.png",
                       "features before training (source val vs target test)")
        plot_embedding(s1, t1, s_lab, t_lab, run_dir / "tsne_after.png",
                       f"features after {m['method']} (selected checkpoint)")
        images += ["tsne_before.png", "tsne_after.png"]
    run_report(run_dir / "report.md", f"transferkit adapt: {m['method']}", _facts(m),
               {**m["target_test"], "split": f"{m['target']} test"}, images, _notes(m))


def adapt_metrics(c: AdaptConfig, parts: list[str], select_on: str, origin: str, options: dict[str, Any],
                  scores: dict[str, Any], diag: dict[str, Any], times: dict[str, float]) -> dict[str, Any]:
    """``metrics.json`` of an ``adapt`` run: what ran (the method's ``parts`` and ``options``, the criterion it
    selected on, the seed, source → target, the network's ``origin``), its ``scores`` (:func:`adapt_scores`), the
    domain diagnostics and the ``times`` (training, feature extraction, total)."""
    return {
        "task": "adapt", "method": "+".join(parts), "reference": parts == ["target_oracle"],
        "options": options, "selection": select_on, "oracle_selection": bool(c.oracle_selection),
        "seed": c.train.seed, "source": c.source, "target": c.target, "backbone": origin, "frozen": c.network.frozen,
        **scores, "diagnostics": diag, **times,
    }


def adapt_scores(fit: AdaptFitResult, results: dict[str, Any], source_val_accuracy: float, test_labels: np.ndarray,
                 d: AdaptDomains, select_on: str) -> dict[str, Any]:
    """The adapted network's scores (the target test split scored once per kept checkpoint, in
    :func:`~transferkit.adaptation.adapt_eval.evaluate_checkpoints`; ``source_val_accuracy`` that of the selected
    checkpoint on the source validation images) and the sizes of every part."""
    return {
        "target_accuracy": results["selected_accuracy"], "target_accuracy_last": results["last_accuracy"],
        "selected_epoch": fit.best_epochs.get(select_on, -1), "last_epoch": fit.last_epoch,
        "by_criterion": results["by_criterion"], "source_val_accuracy": source_val_accuracy,
        "target_test": classification_metrics(test_labels, results["selected_predictions"], d.source.classes),
        "diverged": fit.diverged, "epochs_run": fit.epochs_run,
        "n_source_train": len(d.s_train), "n_source_val": len(d.s_val), "n_target_train": len(d.t_train),
        "n_target_val": len(d.t_val), "n_target_test": len(d.t_test), "adabn": results["adabn"],
    }


def print_adapt_result(metrics: dict[str, Any], parts: list[str], out: Path, target: str,
                       diverged: dict[str, Any] | None, console: Any) -> None:
    """The target-test table of an ``adapt`` run, a warning when training ``diverged`` (the step and what), and where
    the report and bundle are, on ``console``."""
    console.print(metrics_table(metrics["target_test"], f"adapt {'+'.join(parts)} → {out} ({target} test)"))
    if diverged:
        console.print(f"[red]training diverged at step {diverged['step']}: {diverged['what']}; kept the last "
                      "good epoch's weights. Try a lower --lr or --option trade_off=0.3[/red]")
    console.print(f"report: {out / 'report.md'}   bundle: {out / 'bundle'}")


def _facts(m: dict[str, Any]) -> dict[str, Any]:
    facts = {
        "job": "adapt", "method": m["method"] + ("  (UPPER REFERENCE: trained on target labels)" if m["reference"]
                                                else ""),
        "source → target": f"{m['source']} → {m['target']}",
        "network": m["backbone"] + (" (frozen features)" if m["frozen"] else ""),
        "options": m["options"] or "-",
        "selection": m["selection"] + ("  (ORACLE: uses target labels)" if m["oracle_selection"] else ""),
        "source train / val images": f"{m['n_source_train']} / {m['n_source_val']}",
        "target unlabelled / held-out / test": f"{m['n_target_train']} / {m['n_target_val']} / {m['n_target_test']}",
        "seed": m["seed"], "epochs run": m["epochs_run"], "selected epoch": m["selected_epoch"] + 1,
        "target accuracy (selected)": f"{m['target_accuracy']:.4f}",
        "target accuracy (last epoch)": f"{m['target_accuracy_last']:.4f}",
        "train time": f"{m['train_time_s']:.1f} s", "total time": f"{m['total_time_s']:.1f} s",
    }
    if m["diverged"]:
        facts["DIVERGED"] = f"at step {m['diverged']['step']}: {m['diverged']['what']} — the last good epoch was kept"
    return facts


def _notes(m: dict[str, Any]) -> list[str]:
    notes = ["Target labels were never used for training or selection" if not (m["oracle_selection"] or m["reference"])
             else (ORACLE_NOTE if m["oracle_selection"] else REFERENCE_NOTE),
             "The target test split was scored once per kept checkpoint, after training."]
    rows = [(k, v["epoch"] + 1, f"{v['score']:.4f}", f"{v['target_accuracy']:.4f}",
             "yes (oracle)" if v.get("uses_target_labels") else "no") for k, v in m["by_criterion"].items()]
    rows.append(("last epoch", m["last_epoch"] + 1, "-", f"{m['target_accuracy_last']:.4f}", "no"))
    columns = ["criterion", "epoch", "score", "target accuracy", "uses target labels"]
    notes.append("Checkpoint each selection criterion picks, and its target-test accuracy:\n\n"
                 + markdown_table(columns, rows) + "\n")
    if m["diagnostics"]:
        d = m["diagnostics"]
        drows = [(k, f"{d['before'][k]:.3f}", f"{d['after'][k]:.3f}") for k in d["after"]]
        notes.append("Domain similarity of source- and target-validation features (bottleneck), before training and "
                     "after (selected checkpoint) — the measures `select` reports:\n\n"
                     + markdown_table(["measure", "before", "after"], drows) + "\n")
    return notes


def summarise_methods(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per method, and the gap closed relative to source_only and target_oracle."""
    methods = list(dict.fromkeys(c["method"] for c in cells))
    rows = []
    for m in methods:
        group = [c for c in cells if c["method"] == m]
        row: dict[str, Any] = {"method": m, "seeds": len(group), "reference": m == REFERENCE}
        for key in ("target_accuracy", "target_accuracy_last", "source_val_accuracy", "train_time_s",
                    "total_time_s"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([c[key] for c in group])
        for key in ("proxy_a_distance", "mmd2"):
            vals = [c["diagnostics"]["after"][key] for c in group if c.get("diagnostics")]
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(vals) if vals else (float("nan"), float("nan"))
        row["diverged"] = sum(1 for c in group if c.get("diverged"))
        row["did_not_learn"] = group_did_not_learn(
            [{**c, "majority_rate": majority_rate(c["target_test"]["confusion_matrix"]) if c.get("target_test")
              else None} for c in group], "target_accuracy", "n_target_test")
        rows.append(row)
    base = next((r for r in rows if r["method"] == BASELINE), None)
    ref = next((r for r in rows if r["method"] == REFERENCE), None)
    for r in rows:
        r["gap_closed"] = float("nan")
        r["gap_closed_last"] = float("nan")
        if base and ref and ref["target_accuracy_mean"] != base["target_accuracy_mean"]:
            span = ref["target_accuracy_mean"] - base["target_accuracy_mean"]
            r["gap_closed"] = (r["target_accuracy_mean"] - base["target_accuracy_mean"]) / span
            r["gap_closed_last"] = (r["target_accuracy_last_mean"] - base["target_accuracy_mean"]) / span
    return rows


def adapt_findings(summary: Sequence[dict[str, Any]]) -> list[str]:
    """Each method against source_only (beats / within / loses by more than one std; not compared when either did
    not learn), and the best gap closed."""
    base = next((r for r in summary if r["method"] == BASELINE), None)
    lines = []
    if base is not None:
        for r in summary:
            if r["method"] in (BASELINE, REFERENCE):
                continue
            diff = r["target_accuracy_mean"] - base["target_accuracy_mean"]
            spread = max(r["target_accuracy_std"], base["target_accuracy_std"])
            said = comparison_sentence(r["method"], BASELINE, diff, spread, min(r["seeds"], base["seeds"]),
                                       bool(r.get("did_not_learn")), bool(base.get("did_not_learn")))
            gap = f", gap closed {r['gap_closed']:.0%}" if math.isfinite(r["gap_closed"]) else ""
            lines.append(f"{said} ({r['target_accuracy_mean']:.3f} vs "
                         f"{base['target_accuracy_mean']:.3f}, Δ {diff:+.3f}, std ≤ {spread:.3f}{gap})")
    methods = [r for r in summary if r["method"] not in (BASELINE, REFERENCE) and math.isfinite(r["gap_closed"])]
    if methods:
        best = max(methods, key=lambda r: r["gap_closed"])
        lines.append(f"best method: {best['method']}, closing {best['gap_closed']:.0%} of the source_only → "
                     "target_oracle gap")
    if any(r["method"] == REFERENCE for r in summary):
        lines.append(REFERENCE_NOTE)
    for r in summary:
        if r["diverged"]:
            lines.append(f"{r['method']}: {r['diverged']} run(s) diverged (last good epoch kept)")
    return lines


def write_comparison_plot(out: Path, cells: list[dict[str, Any]], summary: list[dict[str, Any]], title: str) -> str:
    """``out/adaptation.png``: each method's mean target accuracy ± std over seeds, source_only and the oracle
    marked. Returns the comparison's title (``title``, else "source → target (network)")."""
    first = cells[0]
    frozen = ", frozen" if first["frozen"] else ""
    title = title or f"{first['source']} → {first['target']} ({first['backbone']}{frozen})"
    bars = [{"label": r["method"], "mean": r["target_accuracy_mean"], "std": r["target_accuracy_std"],
             "kind": "reference" if r["reference"] else "baseline" if r["method"] == BASELINE else "method"}
            for r in summary]
    base = next((r for r in summary if r["method"] == BASELINE), None)
    oracle = any(c.get("oracle_selection") for c in cells)
    plot_method_bars(bars, out / "adaptation.png", f"{title}\nselection: {first['selection']}"
                     + (" (ORACLE)" if oracle else ""), base["target_accuracy_mean"] if base else None)
    return title


def _pm(r: dict[str, Any], key: str, fmt: str = ".3f") -> str:
    return f"{r[key + '_mean']:{fmt}} ± {r[key + '_std']:{fmt}}"


def write_comparison_report(out: Path, cells: list[dict[str, Any]], summary: list[dict[str, Any]], notes: list[str],
                            seeds: list[int], title: str, console: Any) -> None:
    """``out/report.md`` of a comparison of adaptation methods × seeds (the table, the chart, the findings), and
    the same table and findings on ``console``."""
    columns = ["method", "target acc (selected)", "target acc (last epoch)", "gap closed", "gap closed (last)",
               "PAD after", "MMD² after", "source val acc", "time (s)"]
    rows = [[r["method"] + (" (upper reference)" if r["reference"] else ""),
             flag(_pm(r, "target_accuracy"), r["did_not_learn"]),
             _pm(r, "target_accuracy_last"),
             f"{r['gap_closed']:.0%}" if math.isfinite(r["gap_closed"]) else "-",
             f"{r['gap_closed_last']:.0%}" if math.isfinite(r["gap_closed_last"]) else "-",
             _pm(r, "proxy_a_distance", ".2f"), _pm(r, "mmd2", ".3f"), _pm(r, "source_val_accuracy"),
             _pm(r, "total_time_s", ".0f")] for r in summary]
    first = cells[0]
    selection = first["selection"]
    oracle = any(c.get("oracle_selection") for c in cells)
    intro = [f"Source `{first['source']}` → target `{first['target']}`, network `{first['backbone']}`"
             f"{' (frozen features, adapted head)' if first['frozen'] else ''}. Seeds {seeds}; mean ± sample "
             f"std over seeds. Checkpoint selection: **{selection}**"
             + (f" — {ORACLE_NOTE}" if oracle else " (no target labels used)")
             + f". Target images: {first['n_target_train']} unlabelled for training, {first['n_target_val']} held out"
             f" (unlabelled) for selection, {first['n_target_test']} test images scored once per kept checkpoint.",
             "Gap closed = (method − source_only) / (target_oracle − source_only), on the mean accuracies."]
    comparison_report(out / "report.md", f"Domain adaptation: {title}", intro, columns, rows, ["adaptation.png"],
                      notes)
    console.print(comparison_table(columns, rows, title=f"{title} — mean ± std over {len(seeds)} seed(s)"))
    for line in notes:
        console.print(f"  • {line}")
