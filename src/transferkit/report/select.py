"""``report.md`` of ``transferkit select``: the candidates ranked by transferability, domain similarity, and
(with ``--verify``) how well the scores agreed with fine-tuning — plus the score-vs-accuracy picture and the ranking
on the terminal, all functions of the job's metrics; and ``metrics.json`` itself, from the job's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.data.base import ImageSet
from transferkit.data.splits import parse_classes
from transferkit.options import SelectConfig
from transferkit.report.markdown import markdown_table
from transferkit.report.metrics import flag, num
from transferkit.report.plots import plot_score_vs_accuracy
from transferkit.report.tables import comparison_table
from transferkit.transferability.similarity import SIMILARITY_MEASURES


def select_metrics(c: SelectConfig, names: list[str], full: ImageSet, scoring: ImageSet, source_set: ImageSet | None,
                   entries: list[dict[str, Any]], skipped: list[dict[str, str]], times: dict[str, float],
                   verification: dict[str, Any] | None) -> dict[str, Any]:
    """``metrics.json`` of a selection (but its total time): the scoring set, the ranked entries, the skipped
    candidates, the similarity sample, the times and the verification."""
    task = c.task
    return {
        "task": "select", "data": task.data, "classes": full.classes, "class_indices": parse_classes(task.classes),
        "scoring_set": {"split": "train", "labels_per_class": task.labels_per_class, "n": len(scoring),
                        "val_per_class": task.val_per_class, "seed": c.seed, "fingerprint": scoring.fingerprint()},
        "scores": names, "ranked_by": names[0], "selected": entries[0]["candidate"],
        "candidates": entries, "skipped": skipped,
        "similarity": {"data": c.similarity.similarity_data, "classes": source_set.classes, "n": len(source_set)}
        if source_set is not None else None,
        **times, "verification": verification,
    }


def verification_lines(metrics: dict[str, Any]) -> list[str]:
    """The findings, one line each: the selected candidate, how the verification runs used the labels, which of them
    did not learn, each score's agreement with the fine-tuned accuracy, and scoring time against fine-tuning time."""
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
    """``report.md``: what was scored and how, the ranking table (``columns``/``rows``), the domain similarity, what
    was not available or skipped, the verification's correlations, the findings and the ``images``."""
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


def ranking_rows(entries: list[dict[str, Any]], names: list[str],
                 compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The ranking table: every score, the times, and the verification columns when it ran (``compact``: the
    terminal's narrower version, one time column)."""
    verified = any(e.get("verification") for e in entries)
    similar = any(e.get("similarity") for e in entries)
    columns = ["rank", "candidate", *names] + (["time (s)"] if compact else
                                               ["load (s)", "features (s)", "scores (s)", "cache"])
    if similar:
        columns += ["cos(mean)", "MMD²", "PAD"]
    if verified:
        columns += ["fine-tuned acc"] if compact else ["fine-tuned acc", "val acc", "fine-tune (s)"]
    rows = []
    for e in entries:
        t = e["time"]
        row = [str(e["rank"]) if e["rank"] is not None else "-", e["name"], *[num(e["scores"][n]) for n in names]]
        row += [f"{t['total_s']:.2f}"] if compact else [f"{t['load_s']:.2f}", f"{t['features_s']:.2f}",
                                                        f"{t['scores_s']:.3f}", e["feature_cache"]]
        if similar:
            sim = (e.get("similarity") or {}).get("values") or {}
            row += [num(sim.get(k)) for k in SIMILARITY_MEASURES]
        if verified:
            v = e.get("verification")
            cells = [flag(f"{v['accuracy']:.4f}", bool(v.get("did_not_learn"))),
                     f"{v['validation_accuracy']:.4f}" if v.get("validation_accuracy") is not None else "-",
                     f"{v['wall_time_s']:.1f}"] if v \
                else ["-", "-", "-"]
            row += cells[:1] if compact else cells
        rows.append(row)
    return columns, rows


def write_select_outputs(run_dir: Path, metrics: dict[str, Any]) -> None:
    """The score-vs-accuracy picture (after verification: each score against the fine-tuned accuracy, with its
    Kendall τ and Pearson r) and ``report.md`` of a ``select`` run, into ``run_dir``."""
    entries, names, verification = metrics["candidates"], metrics["scores"], metrics["verification"]
    images = []
    if verification is not None:
        ver = [e for e in entries if e.get("verification")]
        plot_score_vs_accuracy(
            [e["name"] for e in ver], [e["verification"]["accuracy"] for e in ver],
            {name: [e["scores"][name] for e in ver] for name in names},
            {name: verification["correlations"][name] for name in names}, run_dir / "score_vs_accuracy.png",
            title=f"transferability vs fine-tuned accuracy on {metrics['data']}",
            accuracy_label=f"fine-tuned {verification['accuracy_split']} accuracy")
        images.append("score_vs_accuracy.png")
    columns, rows = ranking_rows(entries, names)
    write_select_report(run_dir / "report.md", metrics, columns, rows, images)


def print_ranking(metrics: dict[str, Any], out: Path, console: Any) -> None:
    """The ranking table, the skipped candidates and the verification's findings, on the terminal (``console``: a
    :class:`rich.console.Console`)."""
    names = metrics["scores"]
    console.print(comparison_table(*ranking_rows(metrics["candidates"], names, compact=True),
                                   title=f"select → {out}  (ranked by {names[0]})"))
    for s in metrics["skipped"]:
        console.print(f"  skipped {s['candidate']}: {s['reason']}", markup=False, highlight=False)
    for line in verification_lines(metrics):
        console.print(f"  • {line}", markup=False, highlight=False)
