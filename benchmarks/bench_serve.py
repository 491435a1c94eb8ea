"""Benchmark for the deployment issue: CPU latency and throughput of a bundle in PyTorch, its ONNX Runtime export,
and the HTTP service under a bounded concurrent load.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 30] [--clients 8] [--calls 300]

Models: ``seed_cnn`` (28 px, grey; pretrained on the Fashion-MNIST split source task for 1 epoch) and ImageNet
MobileNetV2 at 96 px with a new 10-class head (the weights do not change the timings). Both are written as
bundles, exported with ``transferkit export --format onnx`` (which verifies ≤ 1e-4), and timed on real
Fashion-MNIST test images:

* **in-process latency** — one preprocessed image per call (batch 1): p50/p95 over ``--calls`` calls after 20
  warm-up calls, and throughput = 1 / mean latency; also batch 32 throughput. PyTorch: eval + inference mode,
  2 intra-op threads (this machine's cores); ONNX Runtime: CPU provider, default threads (= cores).
* **HTTP service** — ``transferkit serve`` in its own process on 127.0.0.1 (torch and onnx backends), ``--clients``
  client threads each posting one PNG per request (multipart) in a loop for ``--seconds`` seconds: requests/s,
  p50/p95 latency as the client sees it (upload, decode, preprocess, model, JSON), failed requests.

Writes ``runs/bench_serve/`` and ``benchmarks/results/serve.json``; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.api.runs import set_threads  # noqa: E402
from transferkit.data import get_dataset  # noqa: E402
from transferkit.inference import OnnxPredictor, TorchPredictor, preprocess  # noqa: E402

RUNS = ROOT / "runs" / "bench_serve"
CLI = [sys.executable, "-m", "transferkit.cli.main"]


def sh(*args: str) -> None:
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def bundles() -> dict[str, Path]:
    out = {}
    src = RUNS / "seed_cnn"
    if not (src / "bundle").is_dir():
        sh("pretrain", "--data", "fashion_mnist", "--classes", "0,1,5,8,9", "--epochs", "1", "--out", str(src),
           "--no-progress", "--overwrite")
    out["seed_cnn"] = src / "bundle"
    mnv2 = RUNS / "mobilenet_v2_96" / "bundle"
    if not mnv2.is_dir():
        from transferkit.backbones import create_backbone
        from transferkit.bundle import save_bundle

        model = create_backbone("mobilenet_v2", pretrained=True, img_size=96)
        model.reset_classifier(10)
        save_bundle(model, {"classes": get_dataset("fashion_mnist", "test").classes,
                            "lineage": {"kind": "benchmark", "source": "pretrained:mobilenet_v2"}}, mnv2)
    out["mobilenet_v2_96"] = mnv2
    for b in out.values():
        onnx = b.parent / "export" / "model.onnx"
        if not onnx.is_file():
            sh("export", str(b), "--format", "onnx", "--out", str(onnx))
    return out


def latency(fn, x: torch.Tensor, calls: int) -> dict[str, float]:
    for _ in range(20):
        fn(x)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "per_s": float(x.shape[0] / np.mean(times))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def load_test(bundle: Path, backend: str, images: list[bytes], seconds: float, clients: int) -> dict[str, float]:
    import httpx

    port = free_port()
    model = str(bundle if backend == "torch" else bundle.parent / "export" / "model.onnx")
    proc = subprocess.Popen([*CLI, "serve", model, "--port", str(port), "--backend", backend],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"the service for {model} did not start")
        lat: list[float] = []
        failed = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + seconds

        def client(i: int) -> None:
            with httpx.Client(timeout=30) as c:
                k = i
                while time.perf_counter() < stop:
                    img = images[k % len(images)]
                    k += clients
                    t0 = time.perf_counter()
                    try:
                        r = c.post(f"{url}/predict", files={"files": (f"{k}.png", img, "image/png")})
                        ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    dt = time.perf_counter() - t0
                    with lock:
                        (lat.append(dt) if ok else None)
                        failed[0] += 0 if ok else 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        ms = np.array(lat) * 1e3
        return {"requests": len(lat) + failed[0], "failed": failed[0], "per_s": len(lat) / wall,
                "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()
    set_threads()
    test = get_dataset("fashion_mnist", "test")
    raw = [test.images[i] for i in range(64)]
    pngs = [png_bytes(im) for im in raw]
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
               "rows": []}
    for name, bundle in bundles().items():
        tp = TorchPredictor.load(bundle)
        op = OnnxPredictor.load(bundle.parent / "export" / "model.onnx")
        x = preprocess(raw, tp.input_spec)
        diff = float((tp.logits(x) - op.logits(x)).abs().max())
        for backend, pred in (("pytorch", tp), ("onnxruntime", op)):
            for b in (1, 32):
                r = latency(pred.logits, x[:b], a.calls if b == 1 else max(a.calls // 10, 20))
                results["rows"].append({"model": name, "what": backend, "batch": b, **r, "max_abs_diff": diff})
                print(f"{name} {backend} b={b}: {r}", flush=True)
        for backend in ("torch", "onnx"):
            r = load_test(bundle, backend, pngs, a.seconds, a.clients)
            results["rows"].append({"model": name, "what": f"http ({backend})", "batch": 1, **r})
            print(f"{name} http {backend}: {r}", flush=True)
    out = ROOT / "benchmarks" / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print("\n| model | runtime | batch | p50 ms | p95 ms | images/s | ONNX speed-up (batch 1) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("seed_cnn", "mobilenet_v2_96"):
        rows = [r for r in results["rows"] if r["model"] == name and r["what"] in ("pytorch", "onnxruntime")]
        base = {r["batch"]: r["per_s"] for r in rows if r["what"] == "pytorch"}
        for r in rows:
            up = f"{r['per_s'] / base[r['batch']]:.2f}×" if r["what"] == "onnxruntime" else "-"
            print(f"| {name} | {r['what']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p95_ms']:.3f} | "
                  f"{r['per_s']:.0f} | {up} |")
    print(f"\n| model | service backend | requests | failed | requests/s | p50 ms | p95 ms |  ({a.clients} clients, "
          f"{a.seconds:.0f} s)")
    print("|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        if r["what"].startswith("http"):
            print(f"| {r['model']} | {r['what']} | {r['requests']} | {r['failed']} | {r['per_s']:.1f} | "
                  f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} |")


if __name__ == "__main__":
    main()
