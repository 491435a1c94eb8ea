"""Does the centre crop of ``shorter_crop`` hurt small square grey images? MobileNetV2 linear probe, Fashion-MNIST.

    .venv/bin/python benchmarks/bench_preprocess.py --seeds 100-109          # the recorded run (held-out images)
    .venv/bin/python benchmarks/bench_preprocess.py --seeds 100-109 --eval test --test-limit 10000   # first study

Issue 26, item 6: pretrained photo backbones now use the ``shorter_crop`` evaluation transform (resize the shorter
side to ``floor(size / crop_pct)``, centre crop). On already-square 28-px images that crop only drops a border of
``(1 - crop_pct) / 2`` per side — does it cost accuracy? Both arms run ImageNet MobileNetV2 at 96 px (torchvision
weights, crop_pct 0.875: 28 → 109 → centre 96) on the same images; only ``InputSpec.resize`` differs:

* ``squash``: 28 → 96 (the old preprocessing, and what ``shorter_crop`` now does with such small squares);
* ``shorter_crop``: 28 → 109, centre 96 × 96 crop (``resize_images(..., whole_squares=False)``: timm's way, the
  crop for every image).

Per seed (development seeds ≥ 100, never 0-4): K labelled images per class from the training split (all 10
classes); features from transferkit's own pieces (``resize_images`` → ``TensorBatches`` → ``extract_features``;
the scoring features through the feature cache, so a rerun skips them); a solved linear probe —
standardised features, L-BFGS multinomial logistic regression with its L2 strength chosen by 5-fold stratified
cross-validation on the labelled set (scikit-learn's ``LogisticRegressionCV``; the protocol of Kornblith et al.,
2019). Scored (``--eval heldout``, the default) on ``--heldout-per-class`` training images per class drawn once
(seed 12345) and excluded from the labelled draws — this study informs a rule, so it never looks at the test split;
``--eval test`` scores on a fixed stratified subset of the test split (seed 1000) as the first study did. Prints a
Markdown table (per seed, mean ± std, paired difference) and writes ``benchmarks/results/preprocess.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transferkit.backbones import cached_features, create_backbone  # noqa: E402
from transferkit.backbones.base import InputSpec  # noqa: E402
from transferkit.backbones.features import extract_features  # noqa: E402
from transferkit.data import ImageSet, TensorBatches, get_dataset, k_per_class  # noqa: E402
from transferkit.data.resize import resize_images  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "preprocess.json"
ARMS = ("squash", "shorter_crop")


def seeds_arg(text: str) -> list[int]:
    """``100,101`` or ``100-109``."""
    if "-" in text:
        a, b = (int(v) for v in text.split("-"))
        return list(range(a, b + 1))
    return [int(v) for v in text.split(",")]


FIXED_CS = tuple(float(c) for c in np.logspace(-5, 1, 7))


def batches(ds: ImageSet, spec: InputSpec) -> TensorBatches:
    """Grey 28-px images → RGB at the spec's size by the spec's transform; a ``shorter_crop`` spec crops these small
    squares too (``whole_squares=False``), which transferkit itself no longer does — the arm being measured."""
    x = torch.from_numpy(ds.images).unsqueeze(1).expand(-1, 3, -1, -1)
    return TensorBatches(resize_images(x, spec, whole_squares=False).contiguous(), None, spec.mean, spec.std)


def probe_accuracy(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
                   seed: int) -> tuple[float, float, dict[str, float]]:
    """Test accuracy of the solved logistic-regression probe, the C cross-validation chose, and (analysis only, no
    choice is made on it) the test accuracy at every C of the grid: the comparison without the noise of choosing C
    from 10 labels per class."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f_train)
    z_train, z_test = scaler.transform(f_train), scaler.transform(f_test)
    # an L2-penalised linear model's weights lie in the span of its training rows (the gradient is Xᵀ(P − Y)), so
    # fitting in orthonormal coordinates of that span (n ≪ d) gives the same solution, in every CV fold too, faster
    basis = np.linalg.svd(z_train, full_matrices=False)[2].T  # (d, n)
    clf = LogisticRegressionCV(Cs=np.logspace(-5, 1, 7), cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                               max_iter=1000)
    with warnings.catch_warnings():  # scikit-learn's notices about future defaults
        warnings.simplefilter("ignore", FutureWarning)
        clf.fit(z_train @ basis, y_train)
        at_c = {f"{c:g}": float((LogisticRegression(C=c, max_iter=1000).fit(z_train @ basis, y_train)
                                 .predict(z_test @ basis) == y_test).mean()) for c in FIXED_CS}
    return float((clf.predict(z_test @ basis) == y_test).mean()), float(clf.C_[0]), at_c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=[100, 101, 102])
    ap.add_argument("--labels-per-class", type=int, default=10)
    ap.add_argument("--eval", choices=("heldout", "test"), default="heldout",
                    help="score on held-out training images (default) or on the test split")
    ap.add_argument("--heldout-per-class", type=int, default=500)
    ap.add_argument("--test-limit", type=int, default=2000, help="with --eval test: test images in all")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if min(args.seeds) < 100:
        raise SystemExit("--seeds: development seeds are ≥ 100 (0-4 are held out)")
    torch.set_num_threads(args.threads)
    train = get_dataset("fashion_mnist", "train")
    if args.eval == "heldout":  # a rule is being chosen: score on training images the labelled draws never see
        held = k_per_class(train, args.heldout_per_class, seed=12345)
        test = train.subset(held)
        train = train.subset(np.setdiff1d(np.arange(len(train)), held))
    else:
        test = get_dataset("fashion_mnist", "test")
        if args.test_limit < len(test):
            per = args.test_limit // test.num_classes
            test = test.subset(k_per_class(test, per, seed=1000))
    model = create_backbone("mobilenet_v2", pretrained=True, img_size=args.image_size, num_classes=0).eval()
    base = model.input_spec
    rows: dict[str, dict[int, dict[str, float]]] = {arm: {} for arm in ARMS}
    t0 = time.perf_counter()
    for arm in ARMS:
        model.input_spec = dataclasses.replace(base, resize=arm)
        f_test = cached_features(model, batches(test, model.input_spec), test.fingerprint())[0].numpy()
        for seed in args.seeds:
            labelled = train.subset(k_per_class(train, args.labels_per_class, seed=seed))
            f_train = extract_features(model, batches(labelled, model.input_spec)).numpy()
            acc, c, at_c = probe_accuracy(f_train, labelled.labels, f_test, test.labels, seed)
            rows[arm][seed] = {"accuracy": acc, "C": c, "accuracy_at_C": at_c}
            print(f"{arm:13s} seed {seed}: accuracy {acc:.4f} (C = {c:.3g})", flush=True)
    accs = {arm: np.array([rows[arm][s]["accuracy"] for s in args.seeds]) for arm in ARMS}
    diff = accs["shorter_crop"] - accs["squash"]
    scored = "held-out training" if args.eval == "heldout" else "test"
    print(f"\nMobileNetV2 {args.image_size} px linear probe, Fashion-MNIST 10 classes, K = {args.labels_per_class}, "
          f"{len(test)} {scored} images, seeds {args.seeds[0]}–{args.seeds[-1]}\n")
    print("| resize | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for arm in ARMS:
        a = accs[arm]
        print(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in a) + f" | {a.mean():.4f} ± {a.std(ddof=1):.4f} |")
    print("| crop − squash (paired) | " + " | ".join(f"{v:+.4f}" for v in diff)
          + f" | {diff.mean():+.4f} ± {diff.std(ddof=1):.4f} |")
    print("\nAnalysis only (no choice made on the scored images): accuracy at each fixed C, mean over seeds\n")
    print("| C | squash | shorter_crop | crop − squash (paired, mean ± std) |\n|---|---|---|---|")
    for c in (f"{c:g}" for c in FIXED_CS):
        at = {arm: np.array([rows[arm][s]["accuracy_at_C"][c] for s in args.seeds]) for arm in ARMS}
        d = at["shorter_crop"] - at["squash"]
        print(f"| {c} | {at['squash'].mean():.4f} | {at['shorter_crop'].mean():.4f} | "
              f"{d.mean():+.4f} ± {d.std(ddof=1):.4f} |")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = f"mnv2_{args.image_size}_k{args.labels_per_class}_{args.eval}{len(test)}"
    results[key] = {"arms": {arm: {str(s): v for s, v in rows[arm].items()} for arm in ARMS},
                    "paired_diff_mean": float(diff.mean()), "paired_diff_std": float(diff.std(ddof=1)),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "machine": platform.processor() or platform.machine(), "threads": args.threads}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
