"""How far apart two domains are in a feature space — measured before and after adaptation.

* :func:`proxy_a_distance` — Ben-David, Blitzer, Crammer & Pereira, 2007, "Analysis of Representations for
  Domain Adaptation": train a linear classifier to tell source from target features; with held-out error
  ``ε``, ``PAD = 2 (1 − 2ε)``. 0: indistinguishable domains; 2: perfectly separable. Used by Ganin et al. (2016,
  DANN) to show adaptation makes features domain-invariant.
* :func:`mmd2` — the unbiased squared maximum mean discrepancy (Gretton et al., 2012, "A Kernel Two-Sample
  Test") with a sum of Gaussian kernels whose bandwidths are multiples of the median pairwise distance (the
  multi-kernel form of DAN, Long et al., 2015).

The 2-D t-SNE picture of both domains is :func:`transferkit.report.plots.plot_embedding` (reports sit above the
methods, so the drawing lives there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check(source: np.ndarray, target: np.ndarray, what: str, min_each: int = 2) -> None:
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"{what}: needs two (N, D) feature matrices of the same width, got {source.shape} and "
                         f"{target.shape}")
    if len(source) < min_each or len(target) < min_each:
        raise ValueError(f"{what}: needs at least {min_each} samples per domain, got {len(source)} source and "
                         f"{len(target)} target")


def proxy_a_distance(source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, seed: int = 0,
                     test_fraction: float = 0.5, max_per_domain: int = 2000) -> float:
    """``2 (1 − 2ε)`` with ``ε`` the held-out error of a logistic-regression domain classifier (clipped to [0, 2]).

    Each domain is subsampled to ``max_per_domain`` (seeded) and balanced, features standardised on the
    training half; the classifier's ``C`` is chosen by 3-fold CV on the training half only.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s, t = _as_numpy(source).astype(np.float64), _as_numpy(target).astype(np.float64)
    _check(s, t, "proxy A-distance", min_each=4)
    rng = np.random.default_rng(seed)
    n = min(len(s), len(t), max_per_domain)
    s, t = s[rng.choice(len(s), n, replace=False)], t[rng.choice(len(t), n, replace=False)]
    x, d = np.concatenate([s, t]), np.r_[np.zeros(n), np.ones(n)]
    x_tr, x_te, d_tr, d_te = train_test_split(x, d, test_size=test_fraction, stratify=d, random_state=seed)
    grid = {"logisticregression__C": [0.01, 0.1, 1.0, 10.0, 100.0]}
    clf = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), grid, cv=3,
                       scoring="accuracy")
    clf.fit(x_tr, d_tr)
    err = float(np.mean(clf.predict(x_te) != d_te))
    return float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0))


def mmd2(source: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
         scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), max_per_domain: int = 2000, seed: int = 0) -> float:
    """Unbiased MMD² between the domains with ``k = Σ_s exp(−‖x−y‖² / (2 (s·m)²))``, ``m`` the median pairwise
    distance of the pooled sample (so the value does not depend on the features' scale)."""
    s = torch.as_tensor(_as_numpy(source), dtype=torch.float64)
    t = torch.as_tensor(_as_numpy(target), dtype=torch.float64)
    _check(s.numpy(), t.numpy(), "MMD")
    g = torch.Generator().manual_seed(seed)
    if len(s) > max_per_domain:
        s = s[torch.randperm(len(s), generator=g)[:max_per_domain]]
    if len(t) > max_per_domain:
        t = t[torch.randperm(len(t), generator=g)[:max_per_domain]]
    pooled = torch.cat([s, t])
    d2 = torch.cdist(pooled, pooled).pow(2)
    off = d2[~torch.eye(len(pooled), dtype=torch.bool)]
    median = off.sqrt().median().clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (2 * (sc * median) ** 2)) for sc in scales)
    m, n = len(s), len(t)
    kss, ktt, kst = k[:m, :m], k[m:, m:], k[:m, m:]
    term_s = (kss.sum() - kss.diagonal().sum()) / (m * (m - 1))
    term_t = (ktt.sum() - ktt.diagonal().sum()) / (n * (n - 1))
    return float(term_s + term_t - 2 * kst.mean())
