"""Benchmark for the multi-task issue: Fashion-MNIST fine (10 classes) + coarse (4 groups) on one transferred backbone.

    .venv/bin/python benchmarks/bench_multitask.py            # 3 seeds × {10, 50} fine labels per class (~30 min)

Setup (fixed before running, nothing tuned): the source is seed_cnn pretrained on Fashion-MNIST classes
{0,1,5,8,9} (3 epochs, as in the fine-tuning benchmark); the spec is ``examples/multitask/fashion_mnist.yaml``:
``fine`` with K labels per class, ``coarse`` with 500 per group (2,000 labels, plentiful), ``footwear`` held out
(a probe on each model's features, 10 labels per class); fine-tuning, 10 epochs, the default learning rate,
temperature sampling (τ = 2). Variants: the four loss weightings with temperature sampling, and fixed weighting with
proportional and uniform sampling. The single-task models (same rows, same number of steps) come from the
``fixed`` run; they do not depend on the weighting. Test split scored once per run. Results:
``runs/bench_multitask/`` and ``benchmarks/results/multitask.json`` (resumable: finished cells are kept);
a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _common import load_results, save_results, split_source  # noqa: E402

from transferkit.api import multitask  # noqa: E402
from transferkit.report.metrics import mean_std  # noqa: E402

OUT = ROOT / "runs" / "bench_multitask"
RESULTS = ROOT / "benchmarks" / "results" / "multitask.json"
SPEC = ROOT / "examples" / "multitask" / "fashion_mnist.yaml"
VARIANTS = {  # name: (weighting, sampling)
    "fixed": ("fixed", "temperature"),
    "uncertainty": ("uncertainty", "temperature"),
    "gradnorm": ("gradnorm", "temperature"),
    "dwa": ("dwa", "temperature"),
    "fixed/proportional": ("fixed", "proportional"),
    "fixed/uniform": ("fixed", "uniform"),
}


def source() -> Path:
    return split_source(OUT / "source")


def run_cell(k: int, seed: int, variant: str) -> dict:
    spec = yaml.safe_load(SPEC.read_text())
    spec["tasks"][0]["labels_per_class"] = k
    weighting, sampling = VARIANTS[variant]
    spec.update(source=str(source()), weighting=weighting, sampling=sampling)
    t0 = time.perf_counter()
    res = multitask(spec, out=OUT / f"k{k}" / f"seed{seed}" / variant.replace("/", "_"), seed=seed,
                    baselines=variant == "fixed", overwrite=True)
    m = res.metrics
    cell = {"wall_s": time.perf_counter() - t0, "train_time_s": m["train_time_s"],
            "final_weights": m["final_weights"], "epochs_run": m["fit"]["epochs_run"],
            "best_epoch": m["fit"]["best_epoch"],
            **{f"mt_{t}": r["multitask"]["accuracy"] for t, r in m["tasks"].items()},
            **{f"probe_{t}": h["accuracy"] for t, h in m["holdout"].items() if "accuracy" in h}}
    if variant == "fixed":
        cell.update({f"single_{t}": r["single_task"]["accuracy"] for t, r in m["tasks"].items()})
        cell["baseline_time_s"] = m["baseline_time_s"]
    return cell


def table(results: dict, seeds: int) -> str:
    lines = []
    for k in (10, 50):
        cells = results.get(f"k{k}", {})
        lines += [f"### fine: {k} labels per class (coarse: 500 per group), {seeds} seeds, test accuracy", "",
                  "| model | fine | Δ fine vs single (mean ± std of paired Δ) | coarse | Δ coarse | "
                  "footwear probe (held out) | MT train s |", "|---|---|---|---|---|---|---|"]
        runs = [cells.get(f"seed{s}", {}) for s in range(seeds)]
        singles = [r.get("fixed", {}) for r in runs]

        def ms(vals: list[float]) -> str:
            m, s = mean_std(vals)
            return f"{m:.4f} ± {s:.4f}"

        if all("single_fine" in c for c in singles):
            lines.append(f"| single-task | {ms([c['single_fine'] for c in singles])} | — | "
                         f"{ms([c['single_coarse'] for c in singles])} | — | see per model | — |")
        for v in VARIANTS:
            got = [r.get(v) for r in runs]
            if not all(got) or not all("single_fine" in c for c in singles):
                continue
            dfine = [g["mt_fine"] - c["single_fine"] for g, c in zip(got, singles, strict=True)]
            dcoarse = [g["mt_coarse"] - c["single_coarse"] for g, c in zip(got, singles, strict=True)]
            probe = ms([g["probe_footwear"]["multi-task"] for g in got])
            lines.append(f"| multi-task {v} | {ms([g['mt_fine'] for g in got])} | {ms(dfine)} | "
                         f"{ms([g['mt_coarse'] for g in got])} | {ms(dcoarse)} | {probe} | "
                         f"{ms([g['train_time_s'] for g in got])} |")
        if all(r.get("fixed") for r in runs):
            probes = {name: [r["fixed"]["probe_footwear"][name] for r in runs]
                      for name in runs[0]["fixed"]["probe_footwear"]}
            lines += ["", "Footwear probe (10 labels per class) on each model's features: " + "; ".join(
                f"{name} {ms(v)}" for name, v in probes.items()), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels", default="10,50", help="fine labels per class to run, comma-separated")
    args = ap.parse_args()
    results = load_results(RESULTS)
    for k in [int(x) for x in args.labels.split(",")]:
        for seed in range(args.seeds):
            for variant in VARIANTS:
                cells = results.setdefault(f"k{k}", {}).setdefault(f"seed{seed}", {})
                if variant in cells:
                    continue
                cells[variant] = run_cell(k, seed, variant)
                save_results(RESULTS, results)
                print(f"k={k} seed={seed} {variant}: {cells[variant]}", flush=True)
    print(table(results, args.seeds))


if __name__ == "__main__":
    main()
