"""Benchmark for the transferability issue: do the scores rank sources the way fine-tuning does, and how much faster?

    .venv/bin/python benchmarks/bench_select.py [--targets fashion10,fashion_split,digits] [--seeds 0]
    .venv/bin/python benchmarks/bench_select.py --probes    # analysis: scores vs linear-probe accuracy

Six candidate sources — ImageNet MobileNetV2, EfficientNet-Lite0/1/2 (all at 96 px), ``seed_cnn`` pretrained on the
Fashion-MNIST source split (classes 0,1,5,8,9; 3 epochs on all their training images), and a randomly initialised
MobileNetV2 — on three targets, each with 10 labelled training images per class:

* ``fashion10`` — Fashion-MNIST, all 10 classes;
* ``fashion_split`` — the Fashion-MNIST split target (classes 2,3,4,6,7);
* ``digits`` — scikit-learn's 8×8 digits (10 classes), upscaled by each model's preprocessing.

Per target and seed, one ``transferkit.select`` with ``verify_all``: every score on the 10/class labelled images
(features through a **fresh** feature cache, so scoring time includes feature extraction), then every candidate
fine-tuned (``finetune``; ``scratch`` for the random one; at most 10 epochs, patience 3, validation = 10 other
training images per class) and scored on the target's test split. Kendall τ and Pearson r between each score and
the fine-tuned test accuracy over the candidates, scoring time vs the brute-force fine-tuning time.
Writes ``runs/bench_select/`` and ``benchmarks/results/select.json``; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.api import pretrain, select  # noqa: E402

RUNS = ROOT / "runs" / "bench_select"
OUT_JSON = ROOT / "benchmarks" / "results" / "select.json"
TARGETS = {"fashion10": ("fashion_mnist", None), "fashion_split": ("fashion_mnist", "2,3,4,6,7"),
           "digits": ("digits", None)}


def _source_cnn() -> Path:
    src = RUNS / "source_cnn"
    if not (src / "bundle").exists():
        pretrain(data="fashion_mnist", classes="0,1,5,8,9", backbone="seed_cnn", epochs=3, seed=0, out=src,
                 progress=False)
    return src


def _fmt(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def probe_analysis(cells: dict, candidates: list[str], labels: int) -> dict:
    """Analysis: the same candidates as linear probes (frozen features + a linear head — the model LogME and H-score
    describe), and each score's Kendall τ against the probe's test accuracy."""
    from scipy.stats import kendalltau

    from transferkit.api import transfer

    out = {}
    for key, cell in cells.items():
        target, seed = key.split("/s")
        data, classes = TARGETS[target]
        acc = {}
        for cand, entry in zip(candidates, _by_candidate(cell, candidates), strict=True):
            run = RUNS / "probes" / target / f"s{seed}" / entry["name"].replace(":", "_")
            if not (run / "metrics.json").exists():
                source = cand if not cand.startswith("random:") else _random(cand, int(seed))
                transfer(source, data, classes, labels_per_class=labels, strategy="linear_probe", seed=int(seed),
                         out=run, epochs=30, patience=5, image_size=96 if "/" not in cand and
                         not cand.startswith("random:") else None, progress=False)
            acc[entry["name"]] = json.loads((run / "metrics.json").read_text())["accuracy"]
        taus = {}
        for score in cell["candidates"][0]["scores"]:
            pts = [(e["scores"][score], acc[e["name"]]) for e in cell["candidates"] if e["scores"][score] is not None]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            taus[score] = float(kendalltau(xs, ys).statistic) if len(pts) >= 3 else None
        out[key] = {"probe_accuracy": acc, "kendall_tau": taus}
    return out


def pooled(cells: dict) -> dict:
    """Per target with ≥ 2 seeds: each candidate's fine-tuned accuracy and scores averaged over the seeds, and each
    score's Kendall τ / Pearson r against the mean accuracy (a less noisy reference than one seed)."""
    from scipy.stats import kendalltau, pearsonr

    by_target: dict[str, list[dict]] = {}
    for key, cell in cells.items():
        by_target.setdefault(key.split("/s")[0], []).append(cell)
    out = {}
    for target, seeds in by_target.items():
        if len(seeds) < 2:
            continue
        names = [e["name"] for e in seeds[0]["candidates"]]
        rows = {n: [next(e for e in c["candidates"] if e["name"] == n) for c in seeds] for n in names}
        acc = {n: [e["accuracy"] for e in r] for n, r in rows.items()}
        corr = {}
        for score in seeds[0]["candidates"][0]["scores"]:
            have = [n for n in names if all(e["scores"][score] is not None for e in rows[n])]
            xs = [statistics.mean(e["scores"][score] for e in rows[n]) for n in have]
            ys = [statistics.mean(acc[n]) for n in have]
            ok = len(have) >= 3 and len(set(xs)) > 1
            corr[score] = {"kendall_tau": float(kendalltau(xs, ys).statistic) if ok else None,
                           "pearson_r": float(pearsonr(xs, ys).statistic) if ok else None}
        out[target] = {"seeds": len(seeds), "accuracy": acc, "correlations": corr}
    return out


def _by_candidate(cell: dict, candidates: list[str]) -> list[dict]:
    names = {e["name"]: e for e in cell["candidates"]}
    return [names[Path(c).name if "/" in c else c] for c in candidates]


def _random(cand: str, seed: int):  # noqa: ANN202 — a Backbone
    import torch

    from transferkit.source_loading import backbone_for_data

    torch.manual_seed(seed)
    return backbone_for_data(cand.split(":", 1)[1], channels=1, image_size=96)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--probes", action="store_true",
                    help="analysis: also train each candidate as a linear probe and correlate the scores with it")
    args = ap.parse_args()
    candidates = ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                  str(_source_cnn()), "random:mobilenet_v2"]
    results = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}
    cells = results.setdefault("cells", {})
    for target in args.targets.split(","):
        data, classes = TARGETS[target]
        for seed in (int(s) for s in args.seeds.split(",")):
            key = f"{target}/s{seed}"
            if key in cells:
                continue
            with tempfile.TemporaryDirectory() as cache:  # a cold feature cache: scoring time includes extraction
                os.environ["TRANSFERKIT_CACHE"] = cache
                res = select(candidates, data, classes, labels_per_class=args.labels, verify_all=True, seed=seed,
                             out=RUNS / target / f"s{seed}", image_size=96, epochs=10, patience=3)
            m = res.metrics
            cells[key] = {"ver": m["verification"], "skipped": m["skipped"], "scoring_time_s": m["scoring_time_s"],
                          "candidates": [{"name": e["name"], "scores": e["scores"], "time": e["time"],
                                          "accuracy": (e.get("verification") or {}).get("accuracy")}
                                         for e in m["candidates"]]}
            OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
            OUT_JSON.write_text(json.dumps(results, indent=2) + "\n")  # after each cell: partial results survive
    if args.probes:
        results["probes"] = probe_analysis(cells, candidates, args.labels)
        OUT_JSON.write_text(json.dumps(results, indent=2) + "\n")
    scores = list(next(iter(cells.values()))["ver"]["correlations"])
    print("\n| target | " + " | ".join(f"{s} τ / r" for s in scores) + " | scoring (s) | fine-tuning (s) | speed-up |")
    print("|---|" + "---|" * (len(scores) + 3))
    per_score: dict[str, list[float]] = {s: [] for s in scores}
    for key, c in cells.items():
        corr = c["ver"]["correlations"]
        for s in scores:
            per_score[s].append(corr[s]["kendall_tau"])
        taus = [" / ".join("n/a" if corr[s][k] is None else f"{corr[s][k]:.2f}" for k in ("kendall_tau", "pearson_r"))
                for s in scores]
        print(f"| {key} | " + " | ".join(taus) + f" | {c['ver']['scoring_time_s']:.1f} | "
              f"{c['ver']['finetune_time_s']:.0f} | {c['ver']['speedup']:.0f}× |")
    print("| mean τ over cells (targets × seeds) | " + " | ".join(_fmt(per_score[s]) for s in scores) + " | | | |")
    results["pooled"] = pooled(cells)
    OUT_JSON.write_text(json.dumps(results, indent=2) + "\n")
    if results["pooled"]:
        print("\nPooled over seeds (mean score vs mean fine-tuned accuracy), Kendall τ / Pearson r:")
        for target, p in results["pooled"].items():
            print(f"| {target} ({p['seeds']} seeds) | " + " | ".join(
                " / ".join("n/a" if c[k] is None else f"{c[k]:.2f}" for k in ("kendall_tau", "pearson_r"))
                for c in p["correlations"].values()) + " | " + ", ".join(
                f"{n} {_fmt(a)}" for n, a in p["accuracy"].items()) + " |")
    if "probes" in results:
        print("\nKendall τ against linear-probe test accuracy:")
        for key, p in results["probes"].items():
            print(f"| {key} | " + " | ".join("n/a" if v is None else f"{v:.2f}" for v in p["kendall_tau"].values())
                  + " | " + ", ".join(f"{k} {v:.3f}" for k, v in p["probe_accuracy"].items()) + " |")
    for key, c in cells.items():
        print(f"\n{key}: " + "; ".join(f"{e['name']} acc {e['accuracy']:.3f} " + ", ".join(
            f"{k} {v:.3f}" for k, v in e["scores"].items() if v is not None) for e in c["candidates"]
            if e["accuracy"] is not None))


if __name__ == "__main__":
    main()
