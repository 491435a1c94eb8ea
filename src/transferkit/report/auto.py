"""``report.md`` of ``transferkit auto``: the three stages, why each configuration stopped, and the choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.report.markdown import markdown_table
from transferkit.report.metrics import DID_NOT_LEARN, num


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
