"""Issue 28, item 4: ``adapt``'s domain diagnostics now report ``select``'s similarity measures
(:func:`transferkit.transferability.similarity.similarities`) instead of the estimators of the removed
``adaptation/diagnostics.py``. What moved, measured on the same features: for every finished cell of a
``bench_adapt.py`` part, the adapted network (its bundle) embeds the same source- and target-validation samples the
job used, and both the old estimators (as they were at commit 2f8c32f, read from git) and the new ones are computed.

    .venv/bin/python benchmarks/bench_adapt.py --part cnn-m --results benchmarks/results/adapt_issue28.json
    .venv/bin/python benchmarks/bench_similarity_estimators.py runs/bench_adapt/cnn-m/cells

The new values must equal the cells' own ``diagnostics.after`` (checked: the reconstruction is the job's). Results:
``benchmarks/results/similarity_estimators.json`` and a Markdown table (means over the seeds, per method).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.adaptation.adapt_eval import embed  # noqa: E402
from transferkit.adaptation.adapt_setup import network_inputs  # noqa: E402
from transferkit.bundle import load_bundle  # noqa: E402
from transferkit.data.adapt_splits import AdaptDomains, sample_batches  # noqa: E402
from transferkit.transferability.similarity import similarities  # noqa: E402

OLD_COMMIT = "2f8c32f"
RESULTS = ROOT / "benchmarks" / "results" / "similarity_estimators.json"


def old_estimators() -> dict:
    """``proxy_a_distance`` and ``mmd2`` of ``adaptation/diagnostics.py`` at :data:`OLD_COMMIT`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:src/transferkit/adaptation/diagnostics.py"],
                            check=True, capture_output=True, text=True).stdout
    namespace: dict = {"__name__": "old_diagnostics"}
    exec(compile(source, f"{OLD_COMMIT}:adaptation/diagnostics.py", "exec"), namespace)  # noqa: S102
    return namespace


def cell_values(cell: Path, old: dict) -> dict:
    cfg = yaml.safe_load((cell / "config.yaml").read_text())
    m = json.loads((cell / "metrics.json").read_text())
    seed = cfg["seed"]
    model, _ = load_bundle(cell / "bundle")
    d = AdaptDomains.load(cfg["source"], cfg["target"], cfg["classes"], cfg["strict"], cfg["resize"], cfg["test_limit"],
                      cfg["source_per_class"], cfg["val_fraction"], cfg["target_val"], cfg["target_limit"], seed)
    feat, net, _ = network_inputs(model, d, cfg["frozen"], cfg["method"] == "target_oracle")
    net.eval()
    s = embed(net, sample_batches(feat["source_val"], 1000, seed))
    t = embed(net, sample_batches(feat["t_val"], 1000, seed + 1))
    new = similarities(s.astype("float64"), t.astype("float64"), seed=seed)
    recorded = m["diagnostics"]["after"]
    same = all(abs(new[k] - recorded[k]) <= 1e-6 * max(1.0, abs(recorded[k])) for k in recorded)
    return {"method": cfg["method"], "seed": seed, "new": new, "recorded": recorded, "reconstructed": same,
            "old": {"proxy_a_distance": old["proxy_a_distance"](s, t, seed=seed, max_per_domain=1000),
                    "mmd2": old["mmd2"](s, t, max_per_domain=1000, seed=seed)},
            "target_accuracy": m["target_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cells", type=Path)
    args = ap.parse_args()
    old = old_estimators()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = str(args.cells)
    done = results.setdefault(key, {})
    for cell in sorted(p for p in args.cells.iterdir() if (p / "metrics.json").exists()):
        if cell.name not in done:
            done[cell.name] = cell_values(cell, old)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(cell.name, done[cell.name]["old"], done[cell.name]["new"], done[cell.name]["reconstructed"],
                  flush=True)
    methods: dict[str, list[dict]] = {}
    for v in done.values():
        methods.setdefault(v["method"], []).append(v)
    print("\n| method | seeds | PAD, old (held-out half, C by CV) | PAD, new (5-fold CV, C = 1) | MMD², old "
          "(5 Gaussian kernels) | MMD², new (one Gaussian kernel) | mean cosine (new) | reconstructed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, vs in methods.items():
        def mean(get, vs=vs):  # noqa: ANN001, ANN202
            return statistics.mean(get(v) for v in vs)

        print(f"| {name} | {len(vs)} | {mean(lambda v: v['old']['proxy_a_distance']):.2f} | "
              f"{mean(lambda v: v['new']['proxy_a_distance']):.2f} | {mean(lambda v: v['old']['mmd2']):.3f} | "
              f"{mean(lambda v: v['new']['mmd2']):.3f} | {mean(lambda v: v['new']['mean_cosine']):.3f} | "
              f"{sum(v['reconstructed'] for v in vs)}/{len(vs)} |")

    if len(methods) > 2:  # do the two estimators order the methods alike?
        from scipy.stats import spearmanr

        for key in ("proxy_a_distance", "mmd2"):
            olds = [statistics.mean(v["old"][key] for v in vs) for vs in methods.values()]
            news = [statistics.mean(v["new"][key] for v in vs) for vs in methods.values()]
            print(f"{key}: Spearman ρ between the old and new method means = {spearmanr(olds, news)[0]:.2f} "
                  f"({len(methods)} methods)")


if __name__ == "__main__":
    main()
