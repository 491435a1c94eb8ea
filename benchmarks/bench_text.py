"""Benchmark for the text issue: few-shot and zero-shot AG News with the offline MiniLM encoder.

    .venv/bin/python benchmarks/bench_text.py [--data ../shared/data/ag_news/test.csv] [--seeds 5] [--ks 8,64]

The AG News test set (7,600 articles, 4 classes; columns label,title,description) is the only text here, so the
few-shot training examples are sampled from it (``k_per_class``, per seed) and every method is scored on **all
the other articles** (7,600 − 4k, disjoint). Nothing is chosen on those: every method's settings are fixed below,
before any run, and no method sees a validation set (there are no further labels in a K-shot problem).

Methods (all on ``minilm`` = all-MiniLM-L6-v2, max 256 tokens):

* **zeroshot** — cosine similarity to "This news article is about {label}." (labels World, Sports, Business,
  Sci/Tech); no labelled example;
* **prototypes** — cosine nearest class mean of the frozen embeddings;
* **linear_probe** — scikit-learn logistic regression (C = 1) on the frozen embeddings (the SetFit paper's probe);
* **setfit** — ``transferkit.fewshot(method="setfit")``: contrastive pairs (20 iterations → 2·20·N pairs, capped at
  2,560 at 64/class to bound CPU time), 1 epoch, batch 16, lr 2e-5, then logistic regression (C = 1);
* **finetune** — full fine-tuning with a new linear head (cross-entropy, AdamW, body lr 5e-5, head lr 1e-2,
  batch 16, ~100 steps: 50 epochs at 8/class, 6 at 64/class), last weights;
* **lora** — LoRA r = 8 on the attention query/value projections + head (lr 2e-3, same steps), last weights.

Wall times: training (or fitting) plus embedding the evaluation articles, per run; the frozen methods share one
embedding pass of all 7,600 articles (reported once). Writes ``benchmarks/results/text.json`` after every run (a
rerun skips finished runs) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import transferkit as tk  # noqa: E402
from transferkit.api.fewshot_job import label_embeddings  # noqa: E402
from transferkit.backbones import create_backbone  # noqa: E402
from transferkit.backbones.features import extract_features, predict_logits  # noqa: E402
from transferkit.config import TrainConfig  # noqa: E402
from transferkit.data.prepare import to_batches  # noqa: E402
from transferkit.data.splits import k_per_class  # noqa: E402
from transferkit.data.text import read_ag_news  # noqa: E402
from transferkit.engine.trainer import train  # noqa: E402
from transferkit.few_shot import class_prototypes, cosine_scores, fit_logistic_head, label_prompts  # noqa: E402
from transferkit.strategies import get_strategy  # noqa: E402

METHODS = ("zeroshot", "prototypes", "linear_probe", "setfit", "finetune", "lora")
TEMPLATE = "This news article is about {label}."
REFERENCE = {"setfit (MPNet)": "82.9 ± 2.8", "linear probe (MPNet)": "74.3", "RoBERTa-large fine-tuned": "81.7 ± 3.8"}


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())


def _steps_epochs(n: int, batch: int = 16, steps: int = 100) -> int:
    return max(1, round(steps / max(1, -(-n // batch))))


def run_one(method: str, k: int, seed: int, ds, base, frozen: torch.Tensor, data_dir: Path) -> dict:
    idx = k_per_class(ds, k, seed)
    rest = np.setdiff1d(np.arange(len(ds)), idx)
    y = torch.from_numpy(ds.labels)
    start = time.perf_counter()
    if method in ("zeroshot", "prototypes", "linear_probe"):
        if method == "zeroshot":
            w = label_embeddings(base, label_prompts(ds.classes, [TEMPLATE]))
            pred = cosine_scores(frozen[rest], w).argmax(1)
        elif method == "prototypes":
            pred = cosine_scores(frozen[rest], class_prototypes(frozen[idx], y[idx], ds.num_classes)).argmax(1)
        else:
            w, b = fit_logistic_head(frozen[idx], y[idx], ds.num_classes, seed=seed)
            pred = (frozen[rest] @ w.T + b).argmax(1)
        return {"accuracy": _accuracy(pred, y[rest]), "fit_s": time.perf_counter() - start, "eval_s": 0.0,
                "n_eval": len(rest)}
    if method == "setfit":
        os.environ["TRANSFERKIT_DATA"] = str(data_dir)
        res = tk.fewshot(base, "ag_news", method="setfit", labels_per_class=k, seed=seed, evaluate_on="rest",
                         max_pairs=2560, out=data_dir / "runs" / f"setfit_k{k}_s{seed}", overwrite=True,
                         progress=False)
        d = res.metrics["details"]
        assert res.metrics["n"] == len(rest)
        return {"accuracy": res.metrics["accuracy"], "fit_s": d["body_train_s"] + d["head_fit_s"],
                "eval_s": d["evaluate_s"], "n_eval": len(rest), "pairs": d["pairs"], "steps": d["steps"]}
    train_b = to_batches(ds.subset(idx), base.input_spec)
    epochs = _steps_epochs(len(idx))
    if method == "finetune":
        strategy = get_strategy("finetune", group_lrs={"head": 1e-2})
        lr = 5e-5
    else:
        strategy = get_strategy("lora")
        lr = 2e-3
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=lr, patience=None, seed=seed, progress=False,
                      checkpoint_every=None)
    trained = train(strategy, base, ds.num_classes, train_b, None, cfg)
    fit_s = time.perf_counter() - start
    t = time.perf_counter()
    eval_b = to_batches(ds.subset(rest), base.input_spec)
    pred = predict_logits(trained.model, eval_b).argmax(1)
    return {"accuracy": _accuracy(pred, y[rest]), "fit_s": fit_s, "eval_s": time.perf_counter() - t,
            "n_eval": len(rest), "epochs": epochs, "trainable_params": trained.trainable_params}


def summarise(results: dict, ks: list[int], frozen_s: float) -> str:
    lines = ["| method | " + " | ".join(f"{k}/class accuracy | {k}/class wall s" for k in ks) + " |",
             "|---|" + "---|---|" * len(ks)]
    for m in METHODS:
        cells = []
        for k in ks:
            rows = [r for key, r in results.items() if key.startswith(f"{m}|{k}|")]
            if not rows:
                cells += ["-", "-"]
                continue
            acc = np.array([r["accuracy"] for r in rows]) * 100
            wall = np.array([r["fit_s"] + r["eval_s"] for r in rows])
            cells += [f"{acc.mean():.1f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.1f} (n={len(rows)})",
                      f"{wall.mean():.0f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append(f"\nFrozen embedding of all 7,600 articles (shared by zeroshot, prototypes, linear_probe): "
                 f"{frozen_s:.0f} s. Reference (SetFit paper, AG News, 8/class): "
                 + "; ".join(f"{k} {v}" for k, v in REFERENCE.items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ag_news" / "test.csv"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ks", default="8,64")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "text.json"))
    a = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    ks = [int(k) for k in a.ks.split(",")]
    out = Path(a.out)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    results = saved.get("runs", {})
    ds = read_ag_news(a.data)
    data_dir = Path(tempfile.mkdtemp(prefix="bench_text_"))
    (data_dir / "ag_news").mkdir()
    (data_dir / "ag_news" / "train.csv").symlink_to(Path(a.data).resolve())  # the few-shot pool = this file
    base = create_backbone("minilm", pretrained=True)
    t = time.perf_counter()
    frozen = extract_features(base, to_batches(ds, base.input_spec))
    frozen_s = time.perf_counter() - t
    for k in ks:
        for seed in range(a.seeds):
            for m in a.methods.split(","):
                key = f"{m}|{k}|{seed}"
                if key in results:
                    continue
                r = run_one(m, k, seed, ds, base, frozen, data_dir)
                results[key] = r
                print(f"{key}: accuracy {r['accuracy']:.4f}, {r['fit_s']:.1f} s + {r['eval_s']:.1f} s", flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, "
                                           f"{len(os.sched_getaffinity(0))} cores, torch {torch.__version__}",
                                           "frozen_embedding_s": frozen_s, "runs": results}, indent=1))
                os.replace(tmp, out)
    print(summarise(results, ks, frozen_s))


if __name__ == "__main__":
    main()
