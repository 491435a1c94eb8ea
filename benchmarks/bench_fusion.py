"""Benchmark for the fusion part of the distillation/fusion issue: best single member vs each fusion method.

    .venv/bin/python benchmarks/bench_fusion.py [--tasks split,imagenet] [--seeds 3] [--labels 10]

Two tasks, 3 seeds each; every step is resumable (a finished run directory is reused):

* **split** — Fashion-MNIST split task (the demo's): ``seed_cnn`` pretrained on classes 0,1,5,8,9 (3 epochs, all
  their training images), transferred to classes 2,3,4,6,7 with ``--labels`` labelled images per class. Members
  (all from that source, seed ``s`` → the same labelled images and head initialisation): ``finetune``,
  ``finetune`` at lr 3e-4, ``finetune`` with ``light`` augmentation, ``linear_probe``. ``fuse`` of all four with
  every method (the soups are refused: the linear probe is the source cut after its last convolution, another
  architecture), and ``fuse`` of the three fine-tunes with every method (one architecture and initialisation).
  Feature fusion: a linear probe on ``fuse:concat:mobilenet_v2+<source>`` (ImageNet MobileNetV2 at 96 px + the
  source CNN) vs a linear probe on each alone.
* **imagenet** — ImageNet → Fashion-MNIST (all 10 classes, 96 px), ``--labels`` per class. Members: MobileNetV2
  linear probe, EfficientNet-Lite0 linear probe, and three MobileNetV2 fine-tunes (default; lr 3e-4; ``light``
  augmentation). ``fuse`` of all five with the ensemble methods (average, weighted, stacking, gating), and
  ``fuse`` of the three MobileNetV2 fine-tunes with every method (the soups need one initialisation). Feature
  fusion: a linear probe on ``fuse:concat:mobilenet_v2+efficientnet_lite0`` vs the two single probes.

Members train with at most 10 epochs, patience 3, validation = ``--labels`` other training images per class (the
same images for every member of a seed). Every ``fuse`` runs twice: fitted on the members' shared **validation**
split (no labelled images beyond the members' budget: the issue's protocol), and fitted on ``--labels`` further
**held-out** training images per class that no member trained or validated on (cleaner, but 50 % more labels
than the members had). Test: the full Fashion-MNIST test split of the task's classes, scored once per model.
Writes ``runs/bench_fusion/`` and ``benchmarks/results/fusion.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.api import fuse, pretrain, transfer  # noqa: E402

RUNS = ROOT / "runs" / "bench_fusion"
OUT_JSON = ROOT / "benchmarks" / "results" / "fusion.json"
SPLIT_SOURCE, SPLIT_TARGET = "0,1,5,8,9", "2,3,4,6,7"
VARIANTS = {"ft": {}, "ft_lr3e-4": {"lr": 3e-4}, "ft_aug": {"augment": "light"}}


def _member(out: Path, source: str | Path, classes: str | None, labels: int, seed: int, strategy: str = "finetune",
            image_size: int | None = None, **kw) -> Path:
    if not (out / "bundle").exists():
        transfer(source, "fashion_mnist", classes, labels_per_class=labels, strategy=strategy, seed=seed, out=out,
                 epochs=10, patience=3, image_size=image_size, progress=False, **kw)
    return out


def _fuse_one(members: list[Path], classes: str | None, labels: int, seed: int, out: Path,
              methods: tuple[str, ...] | None, fit_on: str) -> dict:
    if not (out / "metrics.json").exists():
        kw = {"methods": methods} if methods else {}
        fuse(members, "fashion_mnist", classes, fit_per_class=labels, seed=seed, out=out, fit_on=fit_on, **kw)
    return json.loads((out / "metrics.json").read_text())


def _fuse(name: str, members: list[Path], classes: str | None, labels: int, seed: int, out: Path,
          methods: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Both fit sets: the members' shared validation split, and as many further held-out images per class."""
    return {f"{name} (fit on validation)": _fuse_one(members, classes, labels, seed, out.with_name(out.name + "_val"),
                                                     methods, "validation"),
            f"{name} (fit on held-out)": _fuse_one(members, classes, labels, seed, out, methods, "held_out")}


def run_split(seed: int, labels: int) -> dict[str, dict]:
    src = RUNS / "split" / "source"
    if not (src / "bundle").exists():
        pretrain(data="fashion_mnist", classes=SPLIT_SOURCE, backbone="seed_cnn", epochs=3, seed=0, out=src,
                 progress=False)
    d = RUNS / "split" / f"s{seed}"
    members = [_member(d / name, src, SPLIT_TARGET, labels, seed, **kw) for name, kw in VARIANTS.items()]
    members.append(_member(d / "lp", src, SPLIT_TARGET, labels, seed, "linear_probe"))
    lp_imagenet = _member(d / "lp_mobilenet_v2", "mobilenet_v2", SPLIT_TARGET, labels, seed, "linear_probe", 96)
    ff = _member(d / "lp_fused", f"fuse:concat:mobilenet_v2+{src}", SPLIT_TARGET, labels, seed, "linear_probe", 96)
    return {**_fuse("all four", members, SPLIT_TARGET, labels, seed, d / "fuse"),
            **_fuse("three fine-tunes", members[:3], SPLIT_TARGET, labels, seed, d / "fuse_finetunes"),
            "feature_fusion": _feature_fusion([d / "lp", lp_imagenet], ff)}


def _feature_fusion(singles: list[Path], fused: Path) -> dict:
    """Test accuracy of each single linear probe and of the linear probe on their fused (concatenated) features."""
    acc = {p.name: json.loads((p / "metrics.json").read_text())["accuracy"] for p in [*singles, fused]}
    return {"singles": {k: acc[k] for k in acc if k != fused.name}, "fused": acc[fused.name]}


def run_imagenet(seed: int, labels: int) -> dict[str, dict]:
    d = RUNS / "imagenet" / f"s{seed}"
    probes = [_member(d / f"lp_{m}", m, None, labels, seed, "linear_probe", 96)
              for m in ("mobilenet_v2", "efficientnet_lite0")]
    tunes = [_member(d / name, "mobilenet_v2", None, labels, seed, image_size=96, **kw)
             for name, kw in VARIANTS.items()]
    ff = _member(d / "lp_fused", "fuse:concat:mobilenet_v2+efficientnet_lite0", None, labels, seed, "linear_probe",
                 96)
    return {**_fuse("all five", probes + tunes, None, labels, seed, d / "fuse_all",
                    ("average", "weighted", "stacking", "gating")),
            **_fuse("three MobileNetV2 fine-tunes", tunes, None, labels, seed, d / "fuse_mnv2_finetunes"),
            "feature_fusion": _feature_fusion(probes, ff)}


def _mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.4f}"


def summarise(cells: dict[str, dict]) -> list[dict]:
    """Per fuse call: rows (members by name, methods) with test/fit accuracy mean ± std over seeds, plus the
    best member chosen on the fit set and the oracle best member on test."""
    out = []
    seeds = sorted(cells, key=int)
    for call in cells[seeds[0]]:
        if call == "feature_fusion":
            ff = [cells[s][call] for s in seeds]
            out.append({"call": call, "singles": {k: [f["singles"][k] for f in ff] for k in ff[0]["singles"]},
                        "fused": [f["fused"] for f in ff]})
            continue
        per_seed = [cells[s][call] for s in seeds]
        names = [r["model"].split(": ", 1)[-1] for r in per_seed[0]["rows"]]
        table = []
        for i, name in enumerate(names):
            test = [m["rows"][i]["test_accuracy"] for m in per_seed]
            fit = [m["rows"][i]["fit_accuracy"] for m in per_seed]
            table.append({"model": name, "kind": per_seed[0]["rows"][i]["kind"], "test": test, "fit": fit})
        members = [r for r in table if r["kind"] == "member"]
        by_fit = [max((m for m in per_seed[j]["rows"] if m["kind"] == "member"), key=lambda r: r["fit_accuracy"])
                  ["test_accuracy"] for j in range(len(seeds))]
        oracle = [max(m["test"][j] for m in members) for j in range(len(seeds))]
        selected = [next(r for r in per_seed[j]["rows"] if r["model"] == per_seed[j]["selected"])["test_accuracy"]
                    for j in range(len(seeds))]
        out.append({"call": call, "rows": table, "best_member_by_fit": by_fit, "best_member_oracle": oracle,
                    "selected_fusion": selected, "selected_names": [m["selected"] for m in per_seed],
                    "skipped": per_seed[0].get("skipped", {}), "soup_kept": [m.get("greedy_soup_kept")
                                                                             for m in per_seed]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="split,imagenet")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--labels", type=int, default=10)
    args = ap.parse_args()
    results = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() else {}
    for task in args.tasks.split(","):
        runner = {"split": run_split, "imagenet": run_imagenet}[task]
        cells = results.setdefault(task, {"labels": args.labels, "cells": {}})["cells"]
        for s in range(args.seeds):
            if str(s) not in cells:
                cells[str(s)] = runner(s, args.labels)
                OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
                OUT_JSON.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive
        results[task]["summary"] = summarise(cells)
        OUT_JSON.write_text(json.dumps(results, indent=2) + "\n")
    for task in args.tasks.split(","):
        for call in results[task]["summary"]:
            if call["call"] == "feature_fusion":
                print(f"\n### {task} — feature fusion, linear probes ({len(call['fused'])} seeds)\n")
                print("| features | test accuracy |\n|---|---|")
                for k, v in call["singles"].items():
                    print(f"| {k} | {_mean_std(v)} |")
                print(f"| fused (concat) | {_mean_std(call['fused'])} |")
                continue
            print(f"\n### {task} — {call['call']} ({len(call['best_member_oracle'])} seeds)\n")
            print("| model | kind | fit-set accuracy | test accuracy |\n|---|---|---|---|")
            for r in call["rows"]:
                print(f"| {r['model']} | {r['kind']} | {_mean_std(r['fit'])} | {_mean_std(r['test'])} |")
            print(f"| best member (chosen on fit set) | member | | {_mean_std(call['best_member_by_fit'])} |")
            print(f"| best member (oracle, on test) | member | | {_mean_std(call['best_member_oracle'])} |")
            print(f"| selected fusion ({', '.join(call['selected_names'])}) | fusion | | "
                  f"{_mean_std(call['selected_fusion'])} |")
            for k, v in call["skipped"].items():
                print(f"- {k} skipped: {v}")
            if any(call["soup_kept"]):
                print(f"- greedy soup kept: {call['soup_kept']}")


if __name__ == "__main__":
    main()
