"""``report.md`` of ``transferkit select``: the candidates ranked by transferability, domain similarity, and
(with ``--verify``) how well the scores agreed with fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.report.markdown import markdown_table
from transferkit.report.metrics import num


def verification_lines(metrics: dict[str, Any]) -> list[str]:
    ver = metrics.get("verification")
    lines = [f"selected (top-1 by {metrics['ranked_by']}): {metrics['candidates'][0]['name']}"]
    if not ver:
        return lines
    split = ver["accuracy_split"]
    labels = next((e["verification"].get("labels") for e in metrics["candidates"]
                   if e.get("verification") and e["verification"].get("labels")), None)
    if labels:  # how the verification runs used the labelled budget (issue 26: K is the whole budget)
        lines.append(f"verification runs: the final model of each trained on {labels['train_final_model']} labelled "
                     f"examples ({labels['per_class'] or 'all'} per class); selection: {labels['selection']}")
    failed = [e["name"] for e in metrics["candidates"] if (e.get("verification") or {}).get("did_not_learn")]
    if failed:
        lines.append(f"{', '.join(failed)}: fine-tuned accuracy at chance level — did not learn (their rank against "
                     "the others says nothing)")
    for name, c in ver["correlations"].items():
        if c["kendall_tau"] is None and c["pearson_r"] is None:
            corr = c["note"] or "n/a"
        else:
            corr = f"Kendall τ = {num(c['kendall_tau'], 3)}, Pearson r = {num(c['pearson_r'], 3)} (n = {c['n']})"
        top = "" if c["top1_match"] is None else (
            f"; top-1 agrees ({c['top1_by_score']})" if c["top1_match"] else
            f"; top-1 differs: {c['top1_by_score']} by score vs {c['top1_by_accuracy']} by {split} accuracy")
        lines.append(f"{name} vs fine-tuned {split} accuracy: {corr}{top}")
    speed = f"{ver['speedup']:.1f}×" if ver["speedup"] is not None else "n/a"
    hits = sum(1 for e in metrics["candidates"] if e.get("verification") and e["feature_cache"] == "hit")
    cached = f"; features of {hits} of them came from the feature cache" if hits else ""
    lines.append(f"time: scoring {ver['scoring_time_s']:.1f} s vs fine-tuning {ver['finetune_time_s']:.1f} s for the "
                 f"{ver['n']} verified candidate(s) — {speed} faster{cached} (all candidates scored in "
                 f"{metrics['scoring_time_s']:.1f} s incl. loading the data)")
    return lines


def write_select_report(path: Path, metrics: dict[str, Any], columns: list[str], rows: list[list[str]],
                  images: list[str]) -> None:
    s = metrics["scoring_set"]
    what = (f"the {s['labels_per_class']} labelled training images per class (seed {s['seed']}) that "
            f"`transfer --labels-per-class {s['labels_per_class']} --seed {s['seed']}` trains on"
            if s["labels_per_class"] is not None else "the whole training split")
    parts = [f"# Source selection: {metrics['data']}", "",
             f"{len(metrics['candidates'])} candidate(s) scored on {what} — {s['n']} images of "
             f"{len(metrics['classes'])} classes ({', '.join(metrics['classes'])}), each candidate frozen and with "
             f"its own preprocessing. Ranked by **{metrics['ranked_by']}** (higher is better for every score; values "
             "are comparable between candidates on this target set only). The test split was not used for "
             "selection.", "",
             "Scores: LogME (You et al., 2021) and H-score (Bao et al., 2019) on penultimate features; LEEP (Nguyen "
             "et al., 2020) and NCE (Tran et al., 2019) on the source head's predictions over its own classes "
             "(n/a for a candidate without a source head, e.g. a random initialisation).", "",
             markdown_table(columns, rows), ""]
    sim = metrics.get("similarity")
    if sim:
        parts += [f"Domain similarity to `{sim['data']}` ({sim['n']} training images; classes "
                  f"{sim['classes']}) in each candidate's feature space: cos(mean) = cosine of the mean features "
                  "(1: same centre), MMD² = unbiased squared maximum mean discrepancy, Gaussian kernel, median "
                  "bandwidth (Gretton et al., 2012; ≈ 0: same distribution), PAD = proxy A-distance 2(1 − 2ε) of a "
                  "domain classifier (Ben-David et al., 2007; 0: indistinguishable, 2: separable). Not used for "
                  "the ranking.", ""]
        notes = [f"{e['name']}: {e['similarity']['note']}" for e in metrics["candidates"]
                 if e.get("similarity") and e["similarity"]["note"]]
        if notes:
            parts += ["Similarity not available: " + "; ".join(notes), ""]
    na = [(e["name"], k, v) for e in metrics["candidates"] for k, v in e["not_available"].items()]
    if na:
        parts += ["Not available: " + "; ".join(f"{n} {k} ({v})" for n, k, v in na) + ".", ""]
    if metrics["skipped"]:
        parts += ["## Skipped candidates", "", *[f"- `{s['candidate']}`: {s['reason']}" for s in metrics["skipped"]],
                  ""]
    ver = metrics["verification"]
    if ver:
        split = ver["accuracy_split"]
        parts += ["## Verification by fine-tuning", "",
                  f"The top {ver['n']} candidate(s) were fine-tuned with `transfer` (finetune; scratch for random "
                  f"initialisations) on the same labelled images for at most {ver['epochs']} epochs (early stopping "
                  f"on the validation split). The correlations use the **{split}** accuracy those runs report "
                  "(validation accuracy is in the table too); selection itself never saw it.", "",
                  markdown_table(["score", "n", "Kendall τ", "Pearson r", "top-1 by score", f"top-1 by {split} acc",
                                  "agree"],
                                 [[n, c["n"], num(c["kendall_tau"], 3), num(c["pearson_r"], 3),
                                   c["top1_by_score"] or "-", c["top1_by_accuracy"] or "-",
                                   "-" if c["top1_match"] is None else ("yes" if c["top1_match"] else "no")]
                                  for n, c in ver["correlations"].items()]), ""]
        notes = [c["note"] for c in ver["correlations"].values() if c["note"]]
        if notes:
            parts += [f"Correlations: {sorted(set(notes))[0]}.", ""]
    parts += ["## Findings", "", *[f"- {line}" for line in verification_lines(metrics)], ""]
    parts += [f"![{Path(img).stem}]({img})" for img in images]
    atomic.write_text(path, "\n".join(parts) + "\n")
