"""Issue 29 benchmark: image folders streamed from disk — memory, throughput, time to first batch, cache build rate.

    python benchmarks/bench_stream.py make --n 20000 --dir /tmp/stream20k      # the JPEG folder (once)
    python benchmarks/bench_stream.py all --dirs /tmp/stream5k,/tmp/stream20k --out benchmarks/results/stream.json
    python benchmarks/bench_stream.py paths --dirs /tmp/stream5k    # in memory vs streamed on one folder
    python benchmarks/bench_stream.py make-text --n 1000000 --dir /tmp/text1m.csv          # the text table (once)
    python benchmarks/bench_stream.py text --dirs /tmp/text100k.csv,/tmp/text1m.csv --extract 20000

The folder: Fashion-MNIST training images (the first N, 10 classes) upsampled to 256×256 RGB, tinted by a random
colour per image and given Gaussian noise (σ = 8 grey levels), saved as JPEG (quality 90). Each measurement runs in
a fresh process whose memory (PSS of the process and its DataLoader workers, summed, sampled every 0.1 s; PSS
splits pages shared between a parent and its forked workers instead of counting them twice) is recorded:

* ``model`` — MobileNetV2 at 224 px alone: one inference batch of 64 and one training step of 32 (the model's own
  footprint, subtracted from the others).
* ``probe`` — ``transferkit transfer --strategy linear_probe --source mobilenet_v2 --image-size 224`` over every
  image of the folder, from a cold cache: the folder check and the prepared-cache build are timed first
  (images/s), then the probe (features of all images, L-BFGS head).
* ``first_batch`` — a new process on the warm cache: dataset load → first augmented training batch (seconds).
* ``train`` — MobileNetV2 fine-tuning at 224 px, batch 32, a fixed number of steps, the same loop body fed by
  (a) our streamed loader (random-resized-crop + flip augmentation in 2 workers) and (b) a plain
  ``torchvision.datasets.ImageFolder`` + ``DataLoader(num_workers=2)`` with ``RandomResizedCrop(224)`` + flip;
  images/s of each, and of the loaders alone (no model).
* ``paths`` — the same folder in memory and streamed (cold and warm cache): seconds from dataset load to the first
  augmented batch, then the loader's images/s alone; the evidence for the default streaming threshold.
* ``text`` — a generated CSV (100k and 1M rows) through MiniLM: load, tokenise every row (ragged ids), then the
  features of the first ``--extract`` rows; peak memory and rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_results, save_results  # noqa: E402

HERE = Path(__file__).resolve().parent


# -- memory -----------------------------------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    out.extend(_tree(int(child)))
    except OSError:
        pass
    return out


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Peak PSS of this process and its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.1) -> None:
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self.at_peak: dict[int, int] = {}  # PSS per process at the peak
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            parts = {p: _pss(p) for p in _tree(os.getpid())}
            if sum(parts.values()) > self.peak:
                self.peak, self.at_peak = sum(parts.values()), parts
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, sum(_pss(p) for p in _tree(os.getpid())))


# -- the folder -------------------------------------------------------------------------------------------------------
def _write(args: tuple[int, object, int, str]) -> None:
    import numpy as np
    from PIL import Image

    i, img, label, out = args
    rng = np.random.default_rng(i)
    big = np.asarray(Image.fromarray(img).resize((256, 256), Image.BILINEAR), dtype=np.float32)
    tint = rng.uniform(0.4, 1.0, 3).astype(np.float32)
    rgb = big[..., None] * tint + rng.normal(0, 8, (256, 256, 3)).astype(np.float32) + 20
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(f"{out}/{label}/{i:05d}.jpg", quality=90)


def make(n: int, folder: Path) -> None:
    from multiprocessing import Pool

    from transferkit.data.registry import get_dataset

    ds = get_dataset("fashion_mnist", "train")
    for c in range(10):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    jobs = [(i, ds.images[i], f"class{int(ds.labels[i])}", str(folder)) for i in range(n)]
    t = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(_write, jobs, chunksize=64)
    print(f"{n} JPEGs in {folder} in {time.perf_counter() - t:.0f} s")


def make_text(n: int, path: Path) -> None:
    """A CSV of ``n`` rows: 8–40 words from a small news vocabulary and the topic, 4 topics."""
    import random

    rng = random.Random(0)
    words = ["market", "team", "city", "bank", "shares", "coach", "league", "rates", "profit", "player", "cup", "index",
             "season", "stock", "title", "fans"]
    topics = ["sports", "business", "world", "tech"]
    with open(path, "w") as fh:
        fh.write("text,label\n")
        for i in range(n):
            t = rng.randrange(4)
            body = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
            fh.write(f"{body} {topics[t]} story {i},{topics[t]}\n")
    print(f"{n} rows in {path} ({path.stat().st_size / 2**20:.0f} MiB)")


# -- measurements (each in its own process) ----------------------------------------------------------------------------
def m_model() -> dict:
    import torch

    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    with PeakMemory() as mem:
        net = create_backbone("mobilenet_v2", num_classes=10, pretrained=True)
        net.eval()
        with torch.inference_mode():
            net(torch.randn(64, 3, 224, 224))
        infer = mem.peak
        net.train()
        opt = torch.optim.AdamW(net.parameters(), 1e-4)
        loss = torch.nn.functional.cross_entropy(net(torch.randn(32, 3, 224, 224)), torch.zeros(32, dtype=torch.long))
        loss.backward()
        opt.step()
    return {"pss_inference_bytes": max(infer, 0), "pss_train_step_bytes": mem.peak}


def m_probe(folder: Path, cache: Path) -> dict:
    import logging

    from transferkit.api import transfer
    from transferkit.backbones import create_backbone
    from transferkit.data.prepare import to_batches
    from transferkit.data.registry import get_dataset
    from transferkit.terminal import silent

    logging.basicConfig(level=logging.WARNING)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        ds = get_dataset(f"image_folder:{folder}", "train")
        t1 = time.perf_counter()
        spec = create_backbone("mobilenet_v2", num_classes=10).input_spec
        to_batches(ds, spec)
        t2 = time.perf_counter()
        out = cache.parent / "probe-run"
        result = transfer(data=f"image_folder:{folder}", source="mobilenet_v2", strategy="linear_probe",
                          image_size=224, out=str(out), overwrite=True, progress=False, console=silent())
        t3 = time.perf_counter()
    kind = type(ds.images).__name__
    return {"images": len(ds), "images_kind": kind, "check_s": t1 - t0, "check_rate": len(ds) / (t1 - t0),
            "build_s": t2 - t1, "build_rate": len(ds) / (t2 - t1), "probe_s": t3 - t2,
            "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
            "pss_peak_bytes": mem.peak}


def m_first_batch(folder: Path) -> dict:
    from transferkit.backbones import create_backbone
    from transferkit.data.augment import augmented
    from transferkit.data.prepare import make_loader, to_batches
    from transferkit.data.registry import get_dataset

    spec = create_backbone("mobilenet_v2", num_classes=10).input_spec
    t0 = time.perf_counter()
    ds = get_dataset(f"image_folder:{folder}", "train")
    data = augmented(to_batches(ds, spec), "light")
    batch = next(iter(make_loader(data, 32, shuffle=True, seed=0)))
    took = time.perf_counter() - t0
    return {"first_batch_s": took, "batch_shape": list(batch[0].shape), "since_process_start_s": time.time() - START}


def _steps(net, batches, steps: int) -> float:
    import torch

    opt = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9)
    net.train()
    it = iter(batches)
    x, y = next(it)  # warm-up step, not timed (workers start, first batch)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    t = time.perf_counter()
    done = 0
    for _ in range(steps):
        x, y = next(it)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        done += len(y)
    return done / (time.perf_counter() - t)


def _loader_only(batches, n: int) -> float:
    it = iter(batches)
    next(it)
    t = time.perf_counter()
    done = sum(len(next(it)[1]) for _ in range(min(n, len(batches) - 1)))
    return done / (time.perf_counter() - t)


def m_train(folder: Path, steps: int, which: str) -> dict:
    import torch
    from torchvision import datasets, transforms

    from transferkit.backbones import create_backbone
    from transferkit.data.augment import augmented
    from transferkit.data.prepare import make_loader, to_batches
    from transferkit.data.registry import get_dataset

    torch.manual_seed(0)
    net = create_backbone("mobilenet_v2", num_classes=10, pretrained=True)
    spec = net.input_spec
    with PeakMemory() as mem:
        if which == "ours":
            data = augmented(to_batches(get_dataset(f"image_folder:{folder}", "train"), spec), "light")
            make = lambda: make_loader(data, 32, shuffle=True, seed=0)  # noqa: E731
        else:
            tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                     transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
            ds = datasets.ImageFolder(str(folder), transform=tf)
            make = lambda: torch.utils.data.DataLoader(ds, 32, shuffle=True, num_workers=2)  # noqa: E731
        loader_rate = _loader_only(make(), 60)
        train_rate = _steps(net, make(), steps)
    return {"loader_images_per_s": loader_rate, "train_images_per_s": train_rate, "steps": steps,
            "pss_peak_bytes": mem.peak}


def m_paths(folder: Path, stream: str) -> dict:
    """In memory against streamed on one folder: dataset load to first batch, then the loader alone (no model)."""
    os.environ["TRANSFERKIT_STREAM_ABOVE"] = stream
    from transferkit.backbones import create_backbone
    from transferkit.data.augment import augmented
    from transferkit.data.prepare import make_loader, to_batches
    from transferkit.data.registry import get_dataset

    spec = create_backbone("mobilenet_v2", num_classes=10).input_spec
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        data = augmented(to_batches(get_dataset(f"image_folder:{folder}", "train"), spec), "light")
        loader = make_loader(data, 32, shuffle=True, seed=0)
        it = iter(loader)
        next(it)
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        n = sum(len(next(it)[1]) for _ in range(min(100, len(loader) - 1)))
        rate = n / (time.perf_counter() - t1)
    del loader, it  # the workers exit, so their peak is in RUSAGE_CHILDREN
    import gc
    import resource

    gc.collect()
    time.sleep(1)
    return {"mode": type(data.x).__name__, "first_batch_s": first, "loader_images_per_s": rate,
            "pss_peak_bytes": mem.peak, "pss_at_peak_per_process": sorted(mem.at_peak.values(), reverse=True),
            "maxrss_main_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "maxrss_largest_worker_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}


def m_text(csv: Path, extract: int) -> dict:
    """A text table through MiniLM: load, tokenise every row, then features of the first ``extract`` rows."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.backbones.features import extract_features
    from transferkit.data.prepare import TensorBatches, take_rows, to_batches
    from transferkit.data.registry import get_dataset

    torch.set_num_threads(2)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        ds = get_dataset(f"text:{csv}", "train")
        t1 = time.perf_counter()
        net = create_backbone("minilm", num_classes=ds.num_classes, pretrained=True)
        data = to_batches(ds, net.input_spec)
        t2 = time.perf_counter()
        part = take_rows(data.x, slice(0, extract))
        feats = extract_features(net, TensorBatches(part, lengths=part.lengths), batch_size=256)
        t3 = time.perf_counter()
    return {"rows": len(ds), "load_s": t1 - t0, "tokenise_s": t2 - t1, "tokens": int(data.x.flat.size),
            "extracted": int(feats.shape[0]), "extract_s": t3 - t2, "extract_rows_per_s": feats.shape[0] / (t3 - t2),
            "pss_peak_bytes": mem.peak}


START = time.time()


def _child(kind: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "measure", kind, "--json", json.dumps(kw)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if out.returncode:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["make", "make-text", "measure", "all", "text", "paths"])
    ap.add_argument("kind", nargs="?")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--dirs", default="")
    ap.add_argument("--json", default="{}")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--extract", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "stream.json")
    a = ap.parse_args()
    if a.what == "make":
        make(a.n, a.dir)
        return
    if a.what == "make-text":
        make_text(a.n, a.dir)
        return
    if a.what == "paths":  # in memory vs streamed (warm prepared cache) on each folder
        results = load_results(a.out)
        import tempfile
        for d in [Path(p) for p in a.dirs.split(",") if p]:
            os.environ["TRANSFERKIT_CACHE"] = tempfile.mkdtemp(prefix="tk-paths-")  # cold: nothing checked or prepared
            row = {mode: _child("paths", folder=str(d), stream=value) for mode, value in
                   (("streamed_cold", "0"), ("streamed_warm", "0"), ("in_memory", "none"))}
            results.setdefault("paths", {})[d.name] = row
            save_results(a.out, results)
            print(d.name, json.dumps(row, indent=1))
        return
    if a.what == "text":
        results = load_results(a.out)
        for csv in [Path(p) for p in a.dirs.split(",") if p]:
            results.setdefault("text", {})[csv.name] = _child("text", csv=str(csv), extract=a.extract)
            save_results(a.out, results)
            print(csv.name, json.dumps(results["text"][csv.name], indent=1))
        return
    if a.what == "measure":
        kw = json.loads(a.json)
        fn = {"model": m_model, "probe": m_probe, "first_batch": m_first_batch, "train": m_train,
              "text": m_text, "paths": m_paths}[a.kind]
        args = {k: Path(v) if k in ("folder", "cache", "csv") else v for k, v in kw.items()}
        print(json.dumps(fn(**args)))
        return
    results = load_results(a.out)
    results["machine"] = f"{os.cpu_count()} CPU cores, no GPU; OMP_NUM_THREADS=2"
    results["model"] = _child("model")
    save_results(a.out, results)
    import shutil
    import tempfile
    for d in [Path(p) for p in a.dirs.split(",") if p]:
        cache = Path(tempfile.mkdtemp(prefix="tk-stream-cache-")) / "features"
        os.environ["TRANSFERKIT_CACHE"] = str(cache)
        row = {"probe": _child("probe", folder=str(d), cache=str(cache))}
        row["first_batch"] = _child("first_batch", folder=str(d))
        if d == Path(a.dirs.split(",")[-1]):
            row["train_ours"] = _child("train", folder=str(d), steps=a.steps, which="ours")
            row["train_torchvision"] = _child("train", folder=str(d), steps=a.steps, which="torchvision")
        results[d.name] = row
        save_results(a.out, results)
        print(d.name, json.dumps(row, indent=1))
        shutil.rmtree(cache.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
