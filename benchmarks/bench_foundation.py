"""Benchmark for the foundation issue: demo figures, probe-vs-finetune speed, engine overhead.

Run after ``make setup``::

    .venv/bin/python benchmarks/bench_foundation.py            # everything (~6 min on 2 cores)
    .venv/bin/python benchmarks/bench_foundation.py --skip-demo

Writes ``benchmarks/results/foundation.json`` and prints a Markdown summary for RESULTS.md.

1. **Demo**: times ``transferkit demo`` as a subprocess (what ``make demo`` runs after set-up) and reads
   the accuracies it reports (mean ± std over 3 seeds on the target test split).
2. **Linear probe vs fine-tune**, same number of epochs (5, no early stopping), on the demo's target task
   with 1000 labels per class: wall time of the whole strategy (feature extraction included for the probe).
3. **Engine throughput vs a plain PyTorch loop**: ``seed_cnn`` on the 27,000 source training images held
   in memory, same batch size, same optimiser, no validation; images per second, alternating the two loops
   and keeping each one's best of 3 repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.backbones import create_backbone  # noqa: E402
from transferkit.config import TrainConfig  # noqa: E402
from transferkit.data import get_dataset, labelled_budget_split, select_classes, to_batches  # noqa: E402
from transferkit.engine import fit  # noqa: E402
from transferkit.strategies import get_strategy  # noqa: E402


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def bench_demo(out: Path) -> dict:
    exe = ROOT / ".venv" / "bin" / "transferkit"
    start = time.perf_counter()
    subprocess.run([str(exe), "demo", "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "split_task" / "metrics.json").read_text())
    return {"wall_s": wall, "summary": metrics["summary"], "findings": metrics["findings"]}


def bench_probe_vs_finetune(epochs: int = 5) -> dict:
    """Whole-strategy wall time, same epochs, no early stopping. The probe is timed three ways: its default
    batch (256) with a cold feature cache, the same with a warm cache (second run), and batch 64 (finetune's
    default) with a cold cache."""
    import tempfile

    train = get_dataset("fashion_mnist", "train")
    source = create_backbone("seed_cnn", num_classes=5)
    task = select_classes(train, [2, 3, 4, 6, 7])
    tr, va = labelled_budget_split(task, 1000, 100, 0.1, seed=0)
    tb, vb = to_batches(tr, source.input_spec), to_batches(va, source.input_spec)
    out: dict = {"n_train": len(tr), "n_val": len(va), "epochs": epochs}
    os.environ["TRANSFERKIT_CACHE"] = tempfile.mkdtemp(prefix="tk-bench-cache-")
    runs = [("finetune", "finetune", None), ("linear_probe_cold", "linear_probe", None),
            ("linear_probe_warm", "linear_probe", None)]
    for label, name, bs in runs:
        cfg = TrainConfig(epochs=epochs, batch_size=bs, patience=None, progress=False, checkpoints=False)
        start = time.perf_counter()
        trained = train(get_strategy(name), source, 5, tb, vb, cfg)
        out[label] = {"wall_s": time.perf_counter() - start, "epochs": trained.fit.epochs_run,
                      "batch_size": get_strategy(name).resolve(cfg).batch_size,
                      "feature_extraction_s": trained.extra_time_s, "feature_cache": trained.feature_cache}
    os.environ["TRANSFERKIT_CACHE"] = tempfile.mkdtemp(prefix="tk-bench-cache-")
    cfg = TrainConfig(epochs=epochs, batch_size=64, patience=None, progress=False, checkpoints=False)
    start = time.perf_counter()
    trained = train(get_strategy("linear_probe"), source, 5, tb, vb, cfg)
    out["linear_probe_cold_batch64"] = {"wall_s": time.perf_counter() - start, "batch_size": 64,
                                        "feature_extraction_s": trained.extra_time_s}
    for label in ("linear_probe_cold", "linear_probe_warm", "linear_probe_cold_batch64"):
        out[label]["speedup_vs_finetune"] = out["finetune"]["wall_s"] / out[label]["wall_s"]
    return out


def plain_loop(model, x, y, batch_size: int, epochs: int, lr: float, seed: int) -> float:
    """The hand-written reference: shuffled mini-batches from in-memory float tensors."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def bench_engine_overhead(batch_size: int = 128, epochs: int = 1, reps: int = 3) -> dict:
    train = select_classes(get_dataset("fashion_mnist", "train"), [0, 1, 5, 8, 9])
    spec = create_backbone("seed_cnn", num_classes=5).input_spec
    data = to_batches(train, spec)
    x_float = data.__getitems__(list(range(len(data))))[0].contiguous()  # pre-normalised for the plain loop
    n = len(data) * epochs
    plain, engine = [], []
    for rep in range(reps):
        torch.manual_seed(rep)
        model = create_backbone("seed_cnn", num_classes=5)
        plain.append(n / plain_loop(model, x_float, data.y, batch_size, epochs, 1e-3, rep))
        torch.manual_seed(rep)
        model = create_backbone("seed_cnn", num_classes=5)
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, patience=None, progress=False,
                          checkpoints=False, seed=rep)
        result = fit(model, [{"params": list(model.parameters()), "lr": 1e-3}], data, None, cfg)
        engine.append(n / result.train_time_s)
    return {"batch_size": batch_size, "images": len(data), "plain_img_s": max(plain), "engine_img_s": max(engine),
            "ratio": max(engine) / max(plain), "plain_all": plain, "engine_all": engine}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "foundation.json"))
    args = ap.parse_args()
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    if not args.skip_demo:
        results["demo"] = bench_demo(ROOT / "runs" / "bench_demo")
    results["probe_vs_finetune"] = bench_probe_vs_finetune()
    results["engine_overhead"] = [bench_engine_overhead(bs) for bs in (64, 128)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}")
    if "demo" in results:
        print(f"\ndemo wall time: {results['demo']['wall_s']:.0f} s\n")
        print("| strategy | labels/class | test accuracy (mean ± std, 3 seeds) | train time (s) |")
        print("|---|---|---|---|")
        for r in results["demo"]["summary"]:
            print(f"| {r['strategy']} | {r['labels_per_class']} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} "
                  f"| {r['train_time_s_mean']:.2f} |")
        print(*results["demo"]["findings"], sep="\n")
    p = results["probe_vs_finetune"]
    print(f"\nprobe vs finetune ({p['n_train']} train + {p['n_val']} val images, {p['epochs']} epochs): "
          f"finetune {p['finetune']['wall_s']:.2f} s")
    for label in ("linear_probe_cold", "linear_probe_warm", "linear_probe_cold_batch64"):
        r = p[label]
        print(f"  {label} (batch {r['batch_size']}): {r['wall_s']:.2f} s, extraction {r['feature_extraction_s']:.2f} s"
              f" → {r['speedup_vs_finetune']:.1f}× faster")
    for e in results["engine_overhead"]:
        print(f"engine vs plain loop, batch {e['batch_size']}: {e['engine_img_s']:.0f} vs {e['plain_img_s']:.0f} img/s "
              f"→ {e['ratio']:.3f}×")


if __name__ == "__main__":
    main()
