"""``report.md`` of ``transferkit fuse``: every member and every fused model on the fit set and the test split — a
function of the run's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.report.markdown import comparison_report
from transferkit.report.plots import plot_method_bars

COLUMNS = ["model", "fit-set accuracy", "test accuracy"]


def fuse_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """The table rows (model, fit-set accuracy, test accuracy) of every member and fused model, for the printed
    summary and report.md alike."""
    return [[r["model"], f"{r['fit_accuracy']:.4f}", f"{r['test_accuracy']:.4f}"] for r in metrics["rows"]]


def fuse_findings(metrics: dict[str, Any]) -> list[str]:
    """Which fused model was selected (on the fit set) against the best single member, and what was skipped."""
    rows = {r["model"]: r for r in metrics["rows"]}
    best, member = rows[metrics["selected"]], rows[metrics["best_member"]]
    return [f"selected (best fit-set accuracy): {best['model']} — test {best['test_accuracy']:.4f} vs best single "
            f"member {member['test_accuracy']:.4f}", *(f"{k} skipped: {v}" for k, v in metrics["skipped"].items())]


def write_fuse_report(run_dir: Path, metrics: dict[str, Any], data: str, class_names: list[str],
                      n_members: int) -> None:
    """``fusion.png`` (test accuracy of every model, the best member as the baseline line) and report.md."""
    rows = metrics["rows"]
    best_member = next(r for r in rows if r["model"] == metrics["best_member"])
    plot_method_bars([{"label": r["model"], "mean": r["test_accuracy"], "std": 0.0,
                       "kind": "baseline" if r["kind"] == "member" else "method"} for r in rows],
                     run_dir / "fusion.png", f"fusion on {data}: test accuracy", best_member["test_accuracy"])
    fit = metrics["fit_set"]
    fit_text = (f"a held-out fit set of {fit['per_class']} training-split images per class" if fit["on"] == "held_out"
                else "the members' shared validation split")
    intro = [f"{n_members} members on `{data}` ({', '.join(class_names)}). Weights, stacker, gate and greedy soup "
             f"were fitted on {fit_text} ({fit['n']} images); the test split ({metrics['n_test']} images) was scored "
             "once per model (the ensembles from their members' outputs, which is what their bundles compute up to "
             "the rounding of a resize in floating point)."]
    if fit["members_not_excluded"]:
        intro.append("These members' training images could not be reconstructed from their lineage, so the fit set "
                     f"may overlap them: {', '.join(fit['members_not_excluded'])}.")
    comparison_report(run_dir / "report.md", f"Fusion: {data}", intro, COLUMNS, fuse_rows(metrics), ["fusion.png"],
                      fuse_findings(metrics))
