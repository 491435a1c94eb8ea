"""Benchmark for the scale-and-faults issue: DDP throughput 1 vs 2 processes, and the cost of resume checkpoints.

    .venv/bin/python benchmarks/bench_scale.py [--repeats 3] [--part cnn|mobilenet|all]

Fine-tunes run through the real command line (``transferkit transfer``; DDP needs its own processes), one after
another on an otherwise idle machine:

* **cnn** — the Fashion-MNIST split task: ``seed_cnn`` pretrained on classes 0,1,5,8,9 (1 epoch, once), then
  fine-tuned on classes 2,3,4,6,7 with 1,000 labelled images per class (5,000 images; 500 validate), 28 px,
  global batch 64, 3 epochs.
* **mobilenet** — ImageNet MobileNetV2 (torchvision weights) at 96 px fine-tuned on the same target classes with
  200 labelled images per class (1,000 images), global batch 32, 3 epochs.

Each with ``--devices 1`` and ``--devices 2`` (two CPU processes, gloo; each process gets half the cores, and half
of every global batch), ``--repeats`` times (seeds 0..R-1). Throughput = training images / epoch wall time
(training pass plus its validation pass) over epochs 2-3 (epoch 1 is warm-up); scaling efficiency =
throughput(2) / (2 × throughput(1)). Checkpoint overhead = seconds spent writing resume checkpoints (default: every
200 steps and at every epoch end; atomic + fsync + SHA-256) ÷ (training time without them), from the 1-process
runs; a second setting writes one every 20 steps. Writes ``runs/bench_scale/`` and
``benchmarks/results/scale.json``; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench_scale"
CLI = [sys.executable, "-m", "transferkit.cli.main"]
TARGET = "2,3,4,6,7"
PARTS = {
    "cnn": {"source": None, "labels": 1000, "batch": 64, "extra": []},
    "mobilenet": {"source": "mobilenet_v2", "labels": 200, "batch": 32, "extra": ["--image-size", "96"]},
}


def sh(args: list[str]) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def source_for(part: str) -> str:
    if PARTS[part]["source"]:
        return PARTS[part]["source"]
    src = RUNS / "source"
    if not (src / "metrics.json").is_file():
        sh(["pretrain", "--data", "fashion_mnist", "--classes", "0,1,5,8,9", "--epochs", "1", "--out", str(src),
            "--no-progress"])
    return str(src)


def run(part: str, devices: int, seed: int, every: int) -> dict:
    p = PARTS[part]
    out = RUNS / f"{part}-d{devices}-every{every}-s{seed}"
    if not (out / "metrics.json").is_file():
        t0 = time.perf_counter()
        sh(["transfer", "--source", source_for(part), "--data", "fashion_mnist", "--classes", TARGET,
            "--labels-per-class", str(p["labels"]), "--epochs", "3", "--patience", "10", "--batch-size",
            str(p["batch"]), "--devices", str(devices), "--checkpoint-every", str(every), "--seed", str(seed),
            "--out", str(out), "--overwrite", "--no-progress", *p["extra"]])
        print(f"  {out.name}: {time.perf_counter() - t0:.1f} s wall", flush=True)
    m = json.loads((out / "metrics.json").read_text())
    fit = m["fit"]
    steady = fit["epoch_times_s"][1:] or fit["epoch_times_s"]
    return {"part": part, "devices": devices, "seed": seed, "every": every, "n_train": m["n_train"],
            "epoch_s": statistics.mean(steady), "images_per_s": m["n_train"] / statistics.mean(steady),
            "train_time_s": m["train_time_s"], "checkpoint_time_s": fit["checkpoint_time_s"],
            "checkpoints": fit["checkpoints"], "accuracy": m["accuracy"], "val_loss": m["validation"]["loss"]}


def ms(values: list[float], f: str = ".1f") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{f}} ± {sd:{f}}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", default="all", choices=["all", *PARTS])
    a = ap.parse_args()
    parts = list(PARTS) if a.part == "all" else [a.part]
    rows = []
    for part in parts:
        for seed in range(a.repeats):
            for devices in (1, 2):
                rows.append(run(part, devices, seed, 200))
            rows.append(run(part, 1, seed, 20))
    out = ROOT / "benchmarks" / "results" / "scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                               "rows": rows}, indent=1))
    print("\n| task | processes | images/s (epochs 2-3) | epoch time s | scaling efficiency | test acc | val loss |")
    print("|---|---|---|---|---|---|---|")
    for part in parts:
        base = [r for r in rows if r["part"] == part and r["devices"] == 1 and r["every"] == 200]
        for devices in (1, 2):
            sel = [r for r in rows if r["part"] == part and r["devices"] == devices and r["every"] == 200]
            eff = [s["images_per_s"] / (devices * b["images_per_s"]) for s, b in zip(sel, base, strict=True)]
            print(f"| {part} | {devices} | {ms([r['images_per_s'] for r in sel], '.0f')} | "
                  f"{ms([r['epoch_s'] for r in sel], '.2f')} | {ms(eff, '.2f')} | "
                  f"{ms([r['accuracy'] for r in sel], '.3f')} | {ms([r['val_loss'] for r in sel], '.4f')} |")
    print("\n| task | checkpoint every | checkpoints per run | seconds writing them | overhead (% of training) |")
    print("|---|---|---|---|---|")
    for part in parts:
        for every in (200, 20):
            sel = [r for r in rows if r["part"] == part and r["devices"] == 1 and r["every"] == every]
            pct = [100 * r["checkpoint_time_s"] / (r["train_time_s"] - r["checkpoint_time_s"]) for r in sel]
            print(f"| {part} | {every} steps + epoch ends | {ms([r['checkpoints'] for r in sel], '.0f')} | "
                  f"{ms([r['checkpoint_time_s'] for r in sel], '.2f')} | {ms(pct, '.2f')} |")


if __name__ == "__main__":
    main()
