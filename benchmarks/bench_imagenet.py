"""Benchmark for the ImageNet-backbones issue: real ImageNet weights → Fashion-MNIST, offline.

    .venv/bin/python benchmarks/bench_imagenet.py [--models mobilenet_v2,efficientnet_lite0] [--labels 5,10,100]

For each backbone: scratch vs linear probe vs fine-tune on all 10 Fashion-MNIST classes at 96 px with 5,
10 and 100 labels per class, 3 seeds, through ``transferkit.compare`` (validation = as many other
training-split images per class; at most 10 epochs, patience 3 on the validation loss; scored on a fixed
stratified subset of 200 test images per class = 2,000 images). Writes ``runs/bench_imagenet/<model>/``
and ``benchmarks/results/imagenet.json`` and prints a Markdown table with wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.api import compare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--labels", default="5,10,100")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=96)
    args = ap.parse_args()
    labels = tuple(int(k) for k in args.labels.split(","))
    out_json = ROOT / "benchmarks" / "results" / "imagenet.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    for model in args.models.split(","):
        start = time.perf_counter()
        res = compare(model, "fashion_mnist", None, labels_per_class=labels, seeds=tuple(range(args.seeds)),
                      out=ROOT / "runs" / "bench_imagenet" / model, epochs=10, patience=3,
                      image_size=args.image_size, test_per_class=args.test_per_class,
                      title=f"ImageNet {model} ({args.image_size} px) → Fashion-MNIST")
        results[model] = {"summary": res.metrics["summary"], "findings": res.metrics["findings"],
                          "wall_s": time.perf_counter() - start, "image_size": args.image_size,
                          "test_per_class": args.test_per_class}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2) + "\n")  # after each model: partial results survive
    for model, r in results.items():
        print(f"\n### {model} ({r['image_size']} px), wall time {r['wall_s']:.0f} s\n")
        print("| strategy | labels/class | test accuracy | time per run (s) |\n|---|---|---|---|")
        for row in r["summary"]:
            print(f"| {row['strategy']} | {row['labels_per_class']} | {row['accuracy_mean']:.3f} ± "
                  f"{row['accuracy_std']:.3f} | {row['total_time_s_mean']:.1f} ± {row['total_time_s_std']:.1f} |")


if __name__ == "__main__":
    main()
