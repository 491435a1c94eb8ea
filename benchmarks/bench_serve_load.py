"""Load test of ``transferkit serve`` under hostile clients (issue 25): good and hostile clients side by side.

    .venv/bin/python benchmarks/bench_serve_load.py [--good 10] [--hostile 6] [--seconds 30] [--bundle PATH]

Starts ``transferkit serve BUNDLE`` (default limits) in its own process on 127.0.0.1 (a free port), then for
``--seconds`` seconds runs

* ``--good`` client threads, each posting one tiny PNG (28×28 grey, multipart) per request in a loop, and
* ``--hostile`` client threads, each posting one request of 32 highly compressible 6300×6300 RGB PNGs
  (≈39.7 MP each, just under the per-image cap of 40 MP; ≈115 KB each, ≈3.7 MB per request) in a loop,

and reports good requests (ok / failed, by status), p50/p95 latency of the good requests, hostile responses by
status, and the server's peak RSS (``VmHWM`` of the server process, and the peak of the sampled RSS summed over
its process tree). Every loop stops by itself at the deadline; each request has a client timeout. Without
``--bundle`` a tiny seed_cnn bundle with random weights is written to a temporary folder (the weights do not
change the timings). Prints a JSON summary; :func:`run_load` returns it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CLI = [sys.executable, "-m", "transferkit.cli.main"]
HOSTILE_SIDE = 6300  # 6300² = 39.69 MP, under the default per-image cap of 40 MP
HOSTILE_IMAGES = 32  # the default --max-images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_bundle(folder: Path) -> Path:
    """A seed_cnn bundle (28 px grey, 10 classes, random weights) in ``folder/bundle``."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.bundle import save_bundle

    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=10).eval()
    return save_bundle(model, {"classes": [str(i) for i in range(10)], "lineage": {"kind": "load test"}},
                       folder / "bundle")


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``files`` (field ``files``) and its content type, encoded once."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def payloads(hostile_images: int = HOSTILE_IMAGES) -> tuple[list[tuple[bytes, str]], tuple[bytes, str]]:
    """Good bodies (one 28×28 PNG each, a few variants) and the hostile body (``hostile_images`` solid 6300×6300
    RGB PNGs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    good = [multipart([(f"g{i}.png", _png(Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))))])
            for i in range(16)]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128)]
    bombs = [_png(Image.new("RGB", (HOSTILE_SIDE, HOSTILE_SIDE), c)) for c in colours]
    hostile = multipart([(f"h{i}.png", bombs[i % len(bombs)]) for i in range(hostile_images)])
    return good, hostile


def _tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return pids


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_load(bundle: str | Path | None = None, good: int = 10, hostile: int = 6, seconds: float = 30.0,
             extra_args: tuple[str, ...] = (), good_timeout_s: float = 30.0,
             hostile_timeout_s: float = 120.0, hostile_images: int = HOSTILE_IMAGES) -> dict:
    """Run the load test (see the module docstring) and return its summary; ``extra_args`` go to ``serve``;
    ``hostile_images``: images per hostile request (32 in the probe; 3 stays within the default pixel budget)."""
    import httpx

    tmp = None
    if bundle is None:
        tmp = tempfile.TemporaryDirectory(prefix="tk-serve-load-")
        bundle = tiny_bundle(Path(tmp.name))
    good_bodies, (hostile_body, hostile_type) = payloads(hostile_images)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*CLI, "serve", str(bundle), "--host", "127.0.0.1", "--port", str(port), *extra_args]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"the service did not start:\n{log.read().decode(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        lock = threading.Lock()
        good_status: Counter[str] = Counter()
        hostile_status: Counter[str] = Counter()
        good_ms: list[float] = []
        hostile_ms: list[float] = []
        rss_peak = [0]
        done = threading.Event()
        stop = time.monotonic() + seconds

        def sample() -> None:
            while not done.is_set():
                rss = sum(_status_kb(p, "VmRSS") for p in _tree_pids(proc.pid))
                rss_peak[0] = max(rss_peak[0], rss)
                done.wait(0.05)

        def client(i: int, bad: bool) -> None:
            counts, times = (hostile_status, hostile_ms) if bad else (good_status, good_ms)
            with httpx.Client(base_url=url, timeout=hostile_timeout_s if bad else good_timeout_s) as c:
                k = i
                while time.monotonic() < stop:
                    body, ctype = (hostile_body, hostile_type) if bad else good_bodies[k % len(good_bodies)]
                    k += 1
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/predict", content=body, headers={"content-type": ctype})
                        what = str(r.status_code)
                    except httpx.HTTPError as exc:
                        what = f"exception:{exc.__class__.__name__}"
                    dt = (time.perf_counter() - t0) * 1000
                    with lock:
                        counts[what] += 1
                        times.append(dt)
                    if bad and what != "200" and not what.startswith("4") and not what.startswith("5"):
                        time.sleep(0.1)  # a broken connection: do not spin

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=client, args=(i, False)) for i in range(good)]
        threads += [threading.Thread(target=client, args=(i, True)) for i in range(hostile)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        ok = good_status.get("200", 0)
        summary = {
            "command": " ".join(cmd[2:]),
            "good_clients": good, "hostile_clients": hostile, "seconds": seconds, "wall_s": round(wall, 1),
            "hostile_request_bytes": len(hostile_body), "hostile_images_per_request": hostile_images,
            "good": {"requests": sum(good_status.values()), "ok": ok, "failed": sum(good_status.values()) - ok,
                     "by_status": dict(sorted(good_status.items())), "per_s": round(ok / wall, 1),
                     "p50_ms": _percentile(good_ms, 50), "p95_ms": _percentile(good_ms, 95),
                     "max_ms": round(max(good_ms), 1) if good_ms else None},
            "hostile": {"requests": sum(hostile_status.values()), "by_status": dict(sorted(hostile_status.items())),
                        "p50_ms": _percentile(hostile_ms, 50)},
            "server_peak_rss_mb": round(max(rss_peak[0], _status_kb(proc.pid, "VmHWM")) / 1024, 1),
            "server_sampled_tree_rss_mb": round(rss_peak[0] / 1024, 1),
            "cpu_count": os.cpu_count(),
        }
        if proc.poll() is not None:
            summary["server_exit_code"] = proc.returncode
        return summary
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--good", type=int, default=10, help="good client threads (default %(default)s)")
    ap.add_argument("--hostile", type=int, default=6, help="hostile client threads (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=30.0, help="duration (default %(default)s)")
    ap.add_argument("--bundle", default=None, help="bundle to serve (default: a tiny random seed_cnn bundle)")
    ap.add_argument("--hostile-images", type=int, default=HOSTILE_IMAGES,
                    help="6300×6300 PNGs per hostile request (default %(default)s)")
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for 'transferkit serve' (repeatable), e.g. --serve-arg=--threads=1")
    ap.add_argument("--json", default=None, metavar="FILE",
                    help="also add the summary to FILE (a JSON list of runs, created if missing)")
    a = ap.parse_args(argv)
    summary = run_load(a.bundle, a.good, a.hostile, a.seconds, tuple(a.serve_arg), hostile_images=a.hostile_images)
    summary["args"] = {k: v for k, v in vars(a).items() if k != "json"}
    print(json.dumps(summary, indent=1))
    if a.json:
        path = Path(a.json)
        runs = json.loads(path.read_text()) if path.is_file() else []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([*runs, summary], indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
