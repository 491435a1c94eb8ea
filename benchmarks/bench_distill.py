"""Benchmark for the distillation part of the distillation/fusion issue: MobileNetV2 teacher → ``seed_cnn`` student.

    .venv/bin/python benchmarks/bench_distill.py [--seeds 3] [--labels 100] [--unlabelled 10000]
    .venv/bin/python benchmarks/bench_distill.py --unlabelled 0 --variant labelled-only   # ablation

Per seed ``s`` (each step resumable: a finished run directory is reused):

1. **Teacher** — ImageNet MobileNetV2 (torchvision weights, 96 px) fine-tuned on Fashion-MNIST with ``--labels``
   labelled training images per class (seed ``s`` draws them; as many other training images per class validate;
   at most 10 epochs, patience 3 — the protocol of the ImageNet-backbones benchmark).
2. **Students** — ``transferkit.distill`` with the same seed, hence the same labelled and validation images: the
   transfer set is those labelled images plus ``--unlabelled`` further training images whose labels are hidden
   (the teacher labels them softly; T = 4, α = 0.9, the defaults). The same ``seed_cnn`` architecture, same
   initialisation seed, is trained on the labelled images only as the baseline. Both: AdamW lr 1e-3, at most
   ``--epochs`` epochs, early stopping on the labelled validation split (patience ``--patience``).

Every model is scored once on the full Fashion-MNIST test split (10,000 images). Latency: median CPU time of a
forward pass at batch 1 and 64 at each model's own input size (teacher 3×96×96, student 1×28×28) — measured by
each distill run, and once more at the end for seed 0's teacher and KD student back to back (``latency_quiet``).
Writes ``runs/bench_distill/`` and ``benchmarks/results/distill.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.api import distill, transfer  # noqa: E402
from transferkit.api.runs import set_threads  # noqa: E402
from transferkit.backbones.features import measure_latency  # noqa: E402
from transferkit.bundle import load_bundle  # noqa: E402


def _ms(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def quiet_latency(teacher: Path, student: Path) -> dict[str, dict[str, float]]:
    """Teacher and KD-student bundles (the labels-only student has the KD student's architecture), timed back to
    back with 100 calls at batch 1 and 30 at batch 64 — run this with nothing else on the machine."""
    set_threads()
    out = {}
    for name, path in (("teacher", teacher), ("student", student)):
        model, _ = load_bundle(path)
        shape = (model.input_spec.channels, *model.input_spec.size)
        out[name] = {"batch_1": measure_latency(model, shape, 1, repeats=100, warmup=10),
                     "batch_64": measure_latency(model, shape, 64, repeats=30, warmup=3),
                     "params": model.num_parameters()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels", type=int, default=100)
    ap.add_argument("--unlabelled", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--variant", default=None,
                    help="store as an ablation under this name (e.g. labelled-only with --unlabelled 0)")
    args = ap.parse_args()
    runs = ROOT / "runs" / "bench_distill"
    out_json = ROOT / "benchmarks" / "results" / "distill.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    if args.variant:
        variant = results.setdefault("variants", {}).setdefault(args.variant, {"protocol": vars(args), "seeds": {}})
        cells, prefix = variant["seeds"], f"distill_{args.variant}"
    else:
        results.setdefault("protocol", vars(args))
        cells, prefix = results.setdefault("seeds", {}), "distill"
    for s in range(args.seeds):
        if str(s) in cells:
            continue
        teacher_dir = runs / f"teacher_s{s}"
        t0 = time.perf_counter()
        if not (teacher_dir / "bundle").exists():
            transfer("mobilenet_v2", "fashion_mnist", labels_per_class=args.labels, strategy="finetune", seed=s,
                     out=teacher_dir, epochs=10, patience=3, image_size=96, progress=False)
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = distill(teacher_dir, "seed_cnn", "fashion_mnist", labels_per_class=args.labels,
                      unlabelled=args.unlabelled, epochs=args.epochs, patience=args.patience, seed=s,
                      out=runs / f"{prefix}_s{s}", progress=False)
        cells[str(s)] = {"teacher_time_s": teacher_s, "distill_time_s": time.perf_counter() - t0,
                         "models": res.metrics["models"], "fit": res.metrics["fit"],
                         "teacher_pass_s": res.metrics["teacher_pass_s"]}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2) + "\n")  # after each seed: partial results survive
    if "latency_quiet" not in results:  # once, after training: the three models measured back to back
        results["latency_quiet"] = quiet_latency(runs / "teacher_s0", runs / "distill_s0")
        out_json.write_text(json.dumps(results, indent=2) + "\n")
    seeds = sorted(cells, key=int)
    names = [m["model"] for m in cells[seeds[0]]["models"]]
    print(f"\n{len(seeds)} seeds; {args.labels} labels/class + {args.unlabelled} unlabelled\n")
    print("| model | test accuracy | parameters | input | latency b=1 (ms) | latency b=64 (ms) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        rows = [next(m for m in cells[s]["models"] if m["model"] == name) for s in seeds]
        acc = [r["accuracy"] for r in rows]
        l1 = [r["latency"]["batch_1"]["median_ms"] for r in rows]
        l64 = [r["latency"]["batch_64"]["median_ms"] for r in rows]
        print(f"| {name} | {_ms(acc)} | {rows[0]['params']:,} | {'×'.join(map(str, rows[0]['input']))} | "
              f"{_ms(l1)} | {_ms(l64)} |")
    q = results["latency_quiet"]
    print("\nlatency measured back to back on a quiet machine (median ms; per image at batch 64):")
    for name, r in q.items():
        print(f"| {name} | {r['params']:,} | {r['batch_1']['median_ms']:.3f} | {r['batch_64']['median_ms']:.2f} "
              f"({r['batch_64']['per_image_ms']:.3f}/img) |")
    for s in seeds:
        c = cells[s]
        print(f"seed {s}: " + ", ".join(f"{m['model']} {m['accuracy']:.4f}" for m in c["models"])
              + f"; teacher {c['teacher_time_s']:.0f} s, distill {c['distill_time_s']:.0f} s, KD best epoch "
              f"{c['fit']['best_epoch'] + 1}/{c['fit']['epochs_run']}")


if __name__ == "__main__":
    main()
