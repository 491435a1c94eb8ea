"""Issue 26: choose the default fine-tune recipe on development seeds (≥ 100), never the test split.

Task: MobileNetV2 (ImageNet weights, 96 px) → Fashion-MNIST, all 10 classes, ``K`` labels per class and **no
validation set** (the issue-26 default: the labelled budget is all training labels; the recipe trains its fixed step
budget and keeps the final weights). Every run is scored on ``--heldout-per-class`` (default 50) images per class of
the Fashion-MNIST *training* split, drawn once (seed 12345) and excluded from the labelled draws — never the test
split. Candidates (``--candidates``, in :data:`CANDIDATES`): the solved linear probe (the bar to beat), LP-FT
(Kumar et al., 2022) against plain fine-tuning from a random head, BatchNorm frozen vs train, augmentation none vs
light, two head learning rates, two step budgets, LoRA at its default rate, and scratch. Results are resumable
(``results/dev_finetune_recipe.json``; a finished cell is skipped unless ``--redo``).

    .venv/bin/python benchmarks/dev_finetune_recipe.py --labels 10 --seeds 100,101,102,103,104
    .venv/bin/python benchmarks/dev_finetune_recipe.py --arch split --labels 50,10 --seeds 100,101,102 \
        --candidates linear_probe,lpft,lpft_probe_layer

``--arch split`` is the seed_cnn split task instead (``make demo``'s: source pretrained on Fashion-MNIST classes
{0,1,5,8,9}, target classes {2,3,4,6,7}, 28 px), scored the same way on held-out training images of the target
classes.

Shared, 2-core CPU: one process at a time, cells run seed by seed so that a cut run still compares every candidate
on the same seeds.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's code, also when run from a worktree beside an editable install
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_results, save_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "dev_finetune_recipe.json"

# name: (strategy, strategy options, TrainConfig overrides); finetune's defaults are the recipe under test
CANDIDATES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "linear_probe": ("linear_probe", {}, {}),
    "lpft": ("finetune", {}, {}),
    "ft_random_head": ("finetune", {"head": "random"}, {}),
    "lpft_bn_train": ("finetune", {"bn": "train"}, {}),
    "lpft_augment_light": ("finetune", {}, {"augment": "light"}),
    "lpft_lr3e-3": ("finetune", {}, {"lr": 3e-3}),
    "lpft_lr3e-4": ("finetune", {}, {"lr": 3e-4}),
    "lpft_steps200": ("finetune", {}, {"steps": 200}),
    "lpft_steps50": ("finetune", {}, {"steps": 50}),
    "old_default": ("finetune", {"head": "random", "bn": "train", "backbone_lr": 1.0},
                    {"epochs": 10, "schedule": "constant", "batch_size": 64}),
    "lora": ("lora", {}, {}),
    "scratch": ("scratch", {}, {}),
    "scratch_steps30": ("scratch", {}, {"steps": 30}),  # the demo's ImageNet-part budget (api/demo.py)
    "scratch_steps30_running": ("scratch", {"bn_stats": "running"}, {"steps": 30}),  # without precise BN
    "lpft_steps30": ("finetune", {}, {"steps": 30}),
    "lpft_backbone1": ("finetune", {"backbone_lr": 1.0}, {}),
    "lpft_steps300": ("finetune", {}, {"steps": 300}),
    "lpft_probe_layer": ("finetune", {"layer": "probe"}, {}),  # the probe's stage (seed_cnn: conv2, fc dropped)
    "lpft_probe_layer_backbone1": ("finetune", {"layer": "probe", "backbone_lr": 1.0}, {}),
}


def run_cell(name: str, model: Any, full: Any, held_b: Any, k: int, seed: int, arch: str) -> dict[str, Any]:
    """Train candidate ``name`` on ``k`` labels per class drawn with ``seed`` (no validation set); score held-out."""
    from transferkit.backbones.features import predict_logits
    from transferkit.config import TrainConfig
    from transferkit.data.prepare import to_batches
    from transferkit.data.splits import k_per_class
    from transferkit.engine.trainer import train
    from transferkit.strategies.base import get_strategy

    strategy, options, overrides = CANDIDATES[name]
    idx = k_per_class(full, k, seed)
    train_b = to_batches(full.subset(idx, f"{full.name}[{k}/class seed {seed}]"), model.input_spec)
    cfg = TrainConfig(seed=seed, progress=False, checkpoints=False, **overrides)
    start = time.perf_counter()
    trained = train(get_strategy(strategy, **options), model, full.num_classes, train_b, None, cfg)
    wall = time.perf_counter() - start
    logits = predict_logits(trained.model, held_b)
    acc = float((logits.argmax(1) == held_b.y).float().mean())
    fit = trained.fit
    return {"candidate": name, "arch": arch, "k": k, "seed": seed, "heldout_accuracy": acc, "wall_s": wall,
            "train_time_s": fit.train_time_s, "steps_run": fit.steps_run, "epochs_run": fit.epochs_run,
            "recipe": fit.recipe, "solver_C": (fit.solver or {}).get("C"),
            "final_train_loss": fit.history[-1].get("train_loss") if fit.history else None}


def summary(results: dict[str, Any]) -> None:
    """Mean ± sample std of held-out accuracy per (arch, K, candidate), with the seeds it covers."""
    groups: dict[tuple[str, int, str], list[tuple[int, float, float]]] = {}
    for c in results["cells"].values():
        groups.setdefault((c["arch"], c["k"], c["candidate"]), []).append(
            (c["seed"], c["heldout_accuracy"], c["wall_s"]))
    print(f"{'arch':<18}{'K':>4}  {'candidate':<22}{'held-out acc':>18}  {'s/run':>7}  seeds")
    for (arch, k, name), rows in sorted(groups.items()):
        accs = [a for _, a, _ in rows]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{arch:<18}{k:>4}  {name:<22}{statistics.mean(accs):>11.4f} ± {sd:.3f}  "
              f"{statistics.mean(w for _, _, w in rows):>7.1f}  {sorted(s for s, _, _ in rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="mobilenet_v2",
                    help="a backbone name, or 'split': the seed_cnn split task (source pretrained on Fashion-MNIST "
                         "classes 0,1,5,8,9 as bench_fewlabels.py / make demo; target classes 2,3,4,6,7)")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--labels", default="10", help="labels per class, comma-separated")
    ap.add_argument("--seeds", default="100,101,102,103,104")
    ap.add_argument("--candidates", default="linear_probe,lpft,ft_random_head,lpft_bn_train",
                    help=f"comma-separated, of: {', '.join(CANDIDATES)}")
    ap.add_argument("--heldout-per-class", type=int, default=50)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--redo", action="store_true", help="rerun cells already in the results")
    ap.add_argument("--summary", action="store_true", help="print the table of the results so far and stop")
    a = ap.parse_args()
    results = load_results(a.out)
    results.setdefault("cells", {})
    if a.summary:
        summary(results)
        return
    labels = [int(v) for v in a.labels.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    names = [v for v in a.candidates.split(",") if v]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; valid: {', '.join(CANDIDATES)}")
    if min(seeds) < 100:
        raise SystemExit("development seeds only (>= 100): seeds 0-4 are the benchmark's")

    from transferkit.api.runs import set_threads
    from transferkit.data.job_task import load_task
    from transferkit.data.prepare import to_batches
    from transferkit.data.splits import k_per_class
    from transferkit.source_loading import load_source

    set_threads()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    results["setup"] = {"data": "fashion_mnist (10 classes), training split only", "heldout_seed": 12345,
                        "heldout_per_class": a.heldout_per_class, "validation": "none (issue-26 default)",
                        "torch_threads": torch.get_num_threads(), "machine": "2 CPU cores, no GPU, shared CPU"}
    torch.manual_seed(0)
    classes = None
    if a.arch == "split":
        from _common import split_source

        source = split_source(ROOT / "benchmarks" / "runs" / "split_source")
        model, _ = load_source(str(source), None)
        classes = "2,3,4,6,7"
    else:
        model, _ = load_source(a.arch, a.image_size)
    full = load_task("fashion_mnist", "train", classes)
    held = k_per_class(full, a.heldout_per_class, seed=12345)  # development scoring: held-out training images
    held_b = to_batches(full.subset(held, full.name + "[held-out dev]"), model.input_spec)
    full = full.subset(np.setdiff1d(np.arange(len(full)), held), full.name + "[labelled pool]")
    arch = "split_seed_cnn" if a.arch == "split" else f"{a.arch}@{a.image_size}"
    for k in labels:
        for s in seeds:
            for name in names:
                key = f"{arch}/K{k}/{name}/seed{s}"
                if key in results["cells"] and not a.redo:
                    continue
                cell = run_cell(name, model, full, held_b, k, s, arch)
                cell["data"] = f"fashion_mnist classes {classes}" if classes else "fashion_mnist (10 classes)"
                cell["ran_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                cell["commit"] = commit.strip() + " + uncommitted changes"
                results["cells"][key] = cell
                save_results(a.out, results)
                print(f"{key}: {cell['heldout_accuracy']:.4f}  ({cell['wall_s']:.0f} s, {cell['steps_run']} steps)",
                      flush=True)
    summary(results)


if __name__ == "__main__":
    main()
