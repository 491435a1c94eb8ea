"""Domain similarity between a source and a target feature set — a label-free signal for choosing a source.

All three take two ``(N, D)`` feature matrices computed by the same backbone (source images and target images
through one network) and say how alike the two inputs look to it; the row counts may differ.

* :func:`mean_cosine` — cosine similarity of the mean feature vectors (the cheap domain-similarity proxy of
  Cui, Song, Sun, Howard & Belongie, CVPR 2018, who use an earth mover's distance between such summaries).
* :func:`mmd` — the unbiased squared maximum mean discrepancy (Gretton, Borgwardt, Rasch, Schölkopf & Smola,
  JMLR 2012, "A Kernel Two-Sample Test"), Gaussian kernel with the median-distance bandwidth by default.
* :func:`proxy_a_distance` — Ben-David, Blitzer, Crammer & Pereira, NIPS 2007, "Analysis of Representations for
  Domain Adaptation" (and Ben-David et al., Machine Learning 2010): ``2 (1 − 2ε)`` from the cross-validated error
  ``ε`` of a linear domain classifier.

This is the one definition of these measures in transferkit: ``select --similarity-data`` (how far a source's
images are from the target's) and ``adapt``'s diagnostics (how far the source and target features are before and
after adaptation) both report :func:`similarities`, so their numbers can be compared. Plain NumPy, with the
validation of :mod:`transferkit.transferability.checks`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from transferkit.registry import Registry
from transferkit.transferability.checks import check_pair


def _subsample(x: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.sort(rng.choice(len(x), limit, replace=False))]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def mean_cosine(source: ArrayLike, target: ArrayLike) -> float:
    """Cosine similarity of the two mean feature vectors, in ``[−1, 1]`` (1: same direction).

    Cheap and scale-free, but blind to everything except the first moment — two domains with the same mean
    score 1. Post-ReLU features are non-negative, so values there lie in ``[0, 1]`` and are typically close to 1.
    """
    s, t = check_pair(source, target, min_rows=1)
    ms, mt = s.mean(axis=0), t.mean(axis=0)
    ns, nt = np.linalg.norm(ms), np.linalg.norm(mt)
    zero_s, zero_t = ns <= 1e-12 * np.abs(s).max(), nt <= 1e-12 * np.abs(t).max()  # zero up to round-off
    if zero_s or zero_t:
        which = "source" if zero_s else "target"
        raise ValueError(f"mean_cosine: the mean of the {which} features is the zero vector; the cosine is undefined")
    return float(np.clip(ms @ mt / (ns * nt), -1.0, 1.0))


def mmd(source: ArrayLike, target: ArrayLike, kernel: str = "rbf", bandwidth: float | None = None, *,
        max_samples: int = 2000, seed: int = 0) -> float:
    """Unbiased squared MMD between the two feature distributions (Gretton et al., 2012, eq. 3).

    ``kernel="rbf"``: ``k(a, b) = exp(−‖a − b‖² / (2 h²))`` with ``h = bandwidth``, or by default the median
    distance between distinct pairs of the pooled (subsampled) points, ignoring exact duplicates (the median
    heuristic — makes the value invariant to the features' scale). ``kernel="linear"``: ``k(a, b) = a·b``, i.e. an
    unbiased estimate of ``‖μ_s − μ_t‖²``.

    0 in expectation for identical distributions — the unbiased estimate can then be slightly negative — and
    larger the more they differ (at most 2 for the Gaussian kernel). Each side is subsampled without replacement
    to ``max_samples`` rows (seeded by ``seed``, so the value is deterministic); the cost is ``O(max_samples²)``.
    """
    if kernel not in ("rbf", "linear"):
        raise ValueError(f"mmd: kernel must be 'rbf' or 'linear', got {kernel!r}")
    if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"mmd: bandwidth must be a positive number or None (median heuristic), got {bandwidth!r}")
    if max_samples < 2:
        raise ValueError(f"mmd: max_samples must be at least 2, got {max_samples}")
    s, t = check_pair(source, target, min_rows=2)
    rng = np.random.default_rng(seed)
    s, t = _subsample(s, max_samples, rng), _subsample(t, max_samples, rng)
    centre = np.concatenate([s, t]).mean(axis=0)  # distances and the linear kernel lose less to cancellation
    s, t = s - centre, t - centre
    m, n = len(s), len(t)
    if kernel == "linear":
        kss, ktt, kst = s @ s.T, t @ t.T, s @ t.T
    else:
        dss, dtt, dst = _sq_dists(s, s), _sq_dists(t, t), _sq_dists(s, t)
        if bandwidth is None:
            pairs = np.concatenate([dss[np.triu_indices(m, 1)], dtt[np.triu_indices(n, 1)], dst.ravel()])
            pairs = pairs[pairs > 0]
            if not len(pairs):  # every point identical: the distributions are equal
                return 0.0
            bandwidth = float(np.median(np.sqrt(pairs)))
        scale = -1.0 / (2.0 * float(bandwidth) ** 2)
        kss, ktt, kst = np.exp(dss * scale), np.exp(dtt * scale), np.exp(dst * scale)
    within_s = (kss.sum() - np.trace(kss)) / (m * (m - 1))
    within_t = (ktt.sum() - np.trace(ktt)) / (n * (n - 1))
    return float(within_s + within_t - 2.0 * kst.mean())


def proxy_a_distance(source: ArrayLike, target: ArrayLike, seed: int = 0, *, max_samples: int = 2000,
                     n_folds: int = 5, C: float = 1.0) -> float:
    """Proxy A-distance ``2 (1 − 2ε)`` (Ben-David et al., 2007/2010), clipped to ``[0, 2]``.

    ``ε`` is the ``n_folds``-fold stratified cross-validated error of an L2 logistic-regression domain classifier
    (inverse regularisation ``C``) on standardised features, the scaler fitted inside each fold. Both domains are
    first subsampled (seeded) to the same size ``min(N_s, N_t, max_samples)`` so that chance error is 0.5: 0 means
    the classifier cannot tell the domains apart, 2 that it separates them perfectly. Deterministic for a given
    ``seed``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if n_folds < 2:
        raise ValueError(f"proxy_a_distance: n_folds must be at least 2, got {n_folds}")
    s, t = check_pair(source, target, min_rows=n_folds)
    rng = np.random.default_rng(seed)
    per_side = min(len(s), len(t), max_samples)
    if per_side < n_folds:
        raise ValueError(f"proxy_a_distance: max_samples ({max_samples}) must be at least n_folds ({n_folds})")
    s, t = _subsample(s, per_side, rng), _subsample(t, per_side, rng)
    x = np.concatenate([s, t])
    domain = np.r_[np.zeros(per_side), np.ones(per_side)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(classifier, x, domain, cv=folds)
    error = float(np.mean(predicted != domain))
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0))


SIMILARITY_MEASURES: Registry[Callable[..., float]] = Registry("similarity-measures", "similarity measure",
                                                               sort=False)
"""What ``select --similarity-data`` reports, in its column order."""
SIMILARITY_MEASURES.add("mean_cosine", mean_cosine, summary="cosine similarity of the mean feature vectors",
                        paper="after Cui et al., 2018, Large Scale Fine-Grained Categorization and Domain-Specific "
                              "Transfer Learning")
SIMILARITY_MEASURES.add("mmd2", mmd, summary="unbiased squared maximum mean discrepancy, Gaussian kernel",
                        paper="Gretton et al., 2012, A Kernel Two-Sample Test")
SIMILARITY_MEASURES.add("proxy_a_distance", proxy_a_distance,
                        summary="2 (1 − 2ε) from the cross-validated error of a linear domain classifier",
                        paper="Ben-David et al., 2007, Analysis of Representations for Domain Adaptation")


def similarities(source: ArrayLike, target: ArrayLike, seed: int = 0) -> dict[str, float]:
    """Every registered similarity measure of the two feature sets, in :data:`SIMILARITY_MEASURES`' order —
    what ``select`` and ``adapt`` report (``seed`` fixes the subsampling and folds of the measures that have any)."""
    return {name: float(fn(source, target, seed=seed) if name != "mean_cosine" else fn(source, target))
            for name, fn in SIMILARITY_MEASURES.items()}
