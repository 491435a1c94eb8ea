"""What ``transferkit auto`` reports: metrics.json's content (:func:`auto_metrics`, :func:`auto_labels`), report.md
(the three stages, why each configuration stopped, and the choice) and the summary it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from transferkit import atomic
from transferkit.data.splits import labels_record
from transferkit.report.markdown import markdown_table
from transferkit.report.metrics import DID_NOT_LEARN, num
from transferkit.report.tables import comparison_table


def auto_metrics(state: dict[str, Any], test: dict[str, Any] | None, budget_s: float,
                 wall_s: float) -> dict[str, Any]:
    """metrics.json of an auto run (``labels`` added by the caller, :func:`auto_labels`) from the search's ``state``
    (its stages' times, ranking, probes, stage-3 configurations and the chosen model) and the one ``test``
    evaluation (``None``: none was run)."""
    configs = [{"name": c.name, "source": c.source, "strategy": c.strategy, "options": c.options, "rungs": c.rungs,
                "best_val_accuracy": max((r["val_accuracy"] for r in c.rungs), default=None),
                "stopped": c.stopped or "not reached"} for c in state["configs"]]
    best = dict(state["best"]) if state["best"] else None
    return {
        "task": "auto", "budget_s": budget_s, "wall_s": wall_s, "over_budget": wall_s / budget_s - 1,
        "interrupted": state["interrupted"], "stages_s": state["stages"], "ranking": state["ranking"],
        "test_reserve_s": state.get("test_reserve_s"), "first_rung": state.get("first_rung"),
        "skipped": state.get("skipped", []), "probes": state["probes"], "configs": configs, "chosen": best,
        "validation_accuracy": best["val_accuracy"] if best else None, "refit": state.get("refit"),
        "test": {k: test[k] for k in ("accuracy", "macro_f1", "n")} if test else None,
    }


def auto_labels(k: int | None, v: int | None, val_fraction: float, n_classes: int,
                split: tuple[np.ndarray, np.ndarray] | None, note: str, state: dict[str, Any],
                no_selection: bool) -> dict[str, Any]:
    """metrics.json's ``labels``: which labels trained the final model and how every choice was made (a separate
    validation set; no selection at K = 1; or the inner split of the K labels, ``note`` its words, and the refit)."""
    if split is None:
        return {**labels_record(k, v, k * n_classes if k else None, v * n_classes if k and v else 0,
                                "validation split: every stage's choice by validation accuracy on the separate "
                                "validation images"), "words": budget_words(k, v, val_fraction)}
    n_all = len(split[0]) + len(split[1])
    indices = np.sort(np.concatenate(split))
    if no_selection:
        return {**labels_record(k, None, n_all, 0, "no selection: one label per class (K = 1) leaves nothing to "
                                "choose on; the top-ranked source's default fine-tune", None, indices),
                "words": f"{k} labelled image per class, the whole budget: the sources were ranked on it (stage 1) "
                         "and the top-ranked one's default fine-tune trained on it; no other choice was possible"}
    refit = state.get("refit") or {}
    done = bool(refit.get("done"))
    record = labels_record(k, None, n_all if done else len(split[0]), 0,
                           f"inner split of the K labels ({note}): every stage-2/3 choice by accuracy on the "
                           f"{len(split[1])} selection images, then " + (
                               "the chosen configuration refit on all K" if done else
                               "no refit (" + (refit.get("why") or "nothing was chosen") + ")"),
                           None, indices if done else np.sort(split[0]))
    record["inner_split"] = {"fit": [int(i) for i in np.sort(split[0])],
                             "selection": [int(i) for i in np.sort(split[1])]}
    words = (f"{k} labelled images per class, the whole budget: {len(split[0])} (fit) trained every probe and trial "
             f"and {len(split[1])} (selection) scored them ({note}); "
             + (f"the chosen configuration was then refit on all {n_all}" if done else
                "the chosen model was not refit: " + (refit.get("why") or "nothing was chosen")))
    return {**record, "words": words}


def budget_words(k: int | None, v: int | None, val_fraction: float) -> str:
    """The labels auto uses, in words, for its report."""
    if k is None:
        return (f"the whole training split: a stratified {val_fraction:.0%} is the validation split every choice "
                "uses, the rest trains")
    return (f"{k} labelled training images per class train every candidate and {v} other labelled images per class "
            f"are the validation split every choice uses: a labelled budget of {k} + {v} = {k + v} per class. The "
            "chosen model was trained on the K training images only (not refit on the validation images)")


def print_auto_summary(console: Console, m: dict[str, Any], out: Path) -> None:
    """The table of every probe and configuration (validation accuracy, why it stopped) and the chosen model, printed
    at the end of an auto run (``m``: its metrics.json content)."""
    rows = [(c["name"], num(c["best_val_accuracy"]), c["stopped"][:60]) for c in m["configs"]]
    rows = [(f"{p['candidate']} · linear_probe", num(p.get("val_accuracy")), "stage 2") for p in m["probes"]] + rows
    console.print(comparison_table(["configuration", "val acc", "stopped"], rows, f"auto → {out}"))
    best = m["chosen"]
    if best:
        test = f", test {m['test']['accuracy']:.4f}" if m["test"] else ""
        console.print(f"chosen: {best['name']} (validation {num(best['val_accuracy'])}{test}"
                      + ("; refit on all labels" if (m.get("refit") or {}).get("done") else "") + "); wall "
                      f"{m['wall_s']:.0f} s of {m['budget_s']:.0f} s; report: {out / 'report.md'}")


def write_auto_report(path: Path, m: dict[str, Any]) -> None:
    """Write the report of an auto run from its metrics (``metrics.json``'s content) to ``path``, atomically."""
    parts = ["# transferkit auto run", "",
             f"Budget {m['budget_s']:.0f} s, wall time {m['wall_s']:.1f} s ({100 * m['over_budget']:+.1f} %)"
             + (" — **interrupted**: the best model so far was kept, no test evaluation" if m["interrupted"] else "")
             + ".", "", "## Time per stage", "",
             *([f"Labels: {m['labels']['words']}.", ""] if m.get("labels") else []),
             markdown_table(["stage", "seconds"], [(k, f"{v:.1f}") for k, v in m["stages_s"].items()]), "",
             "## Stage 1 — sources ranked by transferability (training images, frozen)", ""]
    if m["ranking"]:
        names = list(m["ranking"][0]["scores"])
        parts.append(markdown_table(["rank", "candidate", *names, "kept"],
                                    [(r["rank"], r["candidate"], *(num(r["scores"].get(n)) for n in names),
                                      "yes" if r["kept"] else "no") for r in m["ranking"]]))
    parts += [*(f"- skipped {s['candidate']}: {s['reason']}" for s in m["skipped"]), "",
              "## Stage 2 — linear probes (validation accuracy)", "",
              markdown_table(["candidate", "validation accuracy", "seconds / why not run"],
                             [(p["candidate"], num(p.get("val_accuracy")),
                               f"{p['time_s']:.1f}" if "time_s" in p else p.get("stopped", "")) for p in m["probes"]]),
              "", "## Stage 3 — strategies by successive halving", ""]
    if m.get("first_rung"):
        f = m["first_rung"]
        parts += [f"Rung 1: {f['epochs']} epochs each ({f['from']}; {f['n_train']} training examples at batch "
                  f"{f['batch_size']} = {f['steps_per_epoch']} optimiser step(s) per epoch); each later rung is "
                  f"{f['eta']} times as long, shortened to the time left; the last one standing stops early when its "
                  "validation accuracy no longer improves.", ""]
    rows = []
    for c in m["configs"]:
        rungs = "; ".join(f"{r['epochs']} ep → {r['val_accuracy']:.4f} ({r['wall_s']:.0f} s)" for r in c["rungs"])
        rows.append((c["name"], rungs or "-", c["stopped"]))
    parts += [markdown_table(["configuration", "rungs (epochs → validation accuracy, seconds)", "why it stopped"],
                             rows) if rows else "(no configuration reached stage 3)", "", "## Result", ""]
    best = m["chosen"]
    if best:
        refit = m.get("refit") or {}
        parts.append(f"Chosen: **{best['name']}** (stage {best['stage']}), validation accuracy "
                     f"{num(best['val_accuracy'])}"
                     + (f"; refit on all {refit['n_train']} labelled images" + (
                         f" for {refit['epochs']} epochs" if refit.get("epochs") else "") if refit.get("done") else
                        f"; not refit: {refit['why']}" if refit else "")
                     + (f", **test accuracy {m['test']['accuracy']:.4f}** (macro-F1 "
                                                      f"{m['test']['macro_f1']:.4f}, {m['test']['n']} images, "
                                                      "evaluated once, at the end)" if m["test"] else "")
                     + (f" — **{DID_NOT_LEARN}** (not significantly above the majority-class rate)"
                        if (m["test"] or {}).get("did_not_learn") else "") + ".")
        parts.append("")
        parts.append("Every choice above used the validation (selection) images only; the bundle is in `bundle/`"
                     + (" (the refit model)." if refit.get("done") else "."))
    else:
        parts.append("No model finished within the budget.")
    atomic.write_text(path, "\n".join(parts) + "\n")
