"""Label-free model selection for domain adaptation: which checkpoint, or which hyper-parameter, to keep when the
target domain has no labels.

The criteria a run can select by (:data:`SELECTION_CRITERIA` maps each to the direction that is better):

* ``source_val`` (max) — accuracy on held-out *source* validation data. The default and always honest, but blind
  to the shift: it rewards the source fit, not the transfer.
* ``target_entropy`` (min) — :func:`target_entropy`, the mean prediction entropy on unlabelled target data
  (Morerio, Cavazza & Murino, 2018, "Minimal-Entropy Correlation Alignment for Unsupervised Deep Domain
  Adaptation"). Confident target predictions suggest aligned domains, though a collapsed model is confident too.
* ``dev`` (min) — :func:`deep_embedded_validation` (You, Wang, Chen, Long & Jordan, ICML 2019, "Towards
  Accurate Model Selection in Deep Unsupervised Domain Adaptation"): the source-validation loss reweighted by the
  density ratio ``p_target(x) / p_source(x)`` in feature space, an estimate of the target risk.
* ``oracle`` (max) — accuracy on *labelled target* validation data. It uses target labels, which unsupervised
  domain adaptation does not have: for analysis only (how far the label-free criteria are from the best
  possible choice), and every report that shows it must say so.
"""

from __future__ import annotations

import numpy as np
import torch

from transferkit.registry import Registry

SELECTION_CRITERIA: Registry[str] = Registry("selection-criteria", "selection criterion", "selection criteria",
                                             sort=False)
"""Criterion → the direction that is better (``"max"``/``"min"``)."""
SELECTION_CRITERIA.add("source_val", "max", summary="accuracy on held-out source validation data (the default)",
                       paper="", where="transferkit/adaptation/selection.py")
SELECTION_CRITERIA.add("target_entropy", "min", summary="mean prediction entropy on unlabelled target data",
                       paper="Morerio et al., 2018, Minimal-Entropy Correlation Alignment",
                       where="transferkit/adaptation/selection.py")
SELECTION_CRITERIA.add("dev", "min", summary="source-validation loss reweighted by the target/source density ratio",
                       paper="You et al., 2019, Towards Accurate Model Selection in Deep Unsupervised Domain "
                             "Adaptation (DEV)", where="transferkit/adaptation/selection.py")
SELECTION_CRITERIA.add("oracle", "max", summary="accuracy on labelled target data — analysis only, uses target labels",
                       paper="", where="transferkit/adaptation/selection.py")

_PROB_CLIP = 1e-6


def check_criterion(name: str) -> str:
    """Return ``name`` if it is a key of :data:`SELECTION_CRITERIA`; otherwise raise a ValueError listing them."""
    return SELECTION_CRITERIA.resolve(name)


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def target_entropy(logits: torch.Tensor | np.ndarray) -> float:
    """Mean Shannon entropy (nats) of the softmax predictions on unlabelled target data; lower is better.

    Parameters
    ----------
    logits : (N, C) tensor or array
        Unnormalised class scores of the target samples.

    Returns
    -------
    float
        In ``[0, log C]``: 0 for one-hot predictions, ``log C`` for uniform ones.
    """
    z = torch.as_tensor(_as_numpy(logits), dtype=torch.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"target entropy: needs (N, C) logits with N, C >= 1, got shape {tuple(z.shape)}")
    log_p = torch.log_softmax(z, dim=1)
    return float(-(log_p.exp() * log_p).sum(1).mean())


def _features(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    a = _as_numpy(x).astype(np.float64)
    if a.ndim != 2:
        raise ValueError(f"deep embedded validation: {what} must be an (N, D) feature matrix, got shape {a.shape}")
    if len(a) < 4:
        raise ValueError(f"deep embedded validation: needs at least 4 samples per domain, got {len(a)} {what}")
    return a


def deep_embedded_validation(
    source_train_features: np.ndarray | torch.Tensor, source_val_features: np.ndarray | torch.Tensor,
    source_val_losses: np.ndarray | torch.Tensor, target_features: np.ndarray | torch.Tensor, seed: int = 0,
    max_per_domain: int = 2000,
) -> float:
    """Deep Embedded Validation (You et al., ICML 2019): an estimate of the target risk from labelled source
    validation data, importance-weighted towards the target; lower is better.

    1. A domain classifier (standardised features, logistic regression with ``C = 1``) learns source-train
       (label 0) against target (label 1) features, each domain subsampled to ``max_per_domain`` (seeded).
    2. On each source-validation sample, the density ratio ``w_i = (n_s / n_t) · p(target|x_i) / p(source|x_i)``,
       ``n_s, n_t`` the classifier's training samples per domain (this undoes the class prior), with the
       probabilities clipped to ``[1e-6, 1 − 1e-6]``.
    3. ``L_i = w_i · loss_i`` and the control variate ``η = −Cov(L, w) / Var(w)`` (the ``w_i`` have mean 1 in
       expectation, so ``η (mean(w) − 1)`` has mean 0 and cancels much of the weights' variance):
       ``risk = mean(L) + η · mean(w) − η``.

    Parameters
    ----------
    source_train_features : (N_s, D)
        Features of source training samples (the classifier's source side).
    source_val_features : (N_v, D)
        Features of held-out source validation samples, where the risk is estimated.
    source_val_losses : (N_v,)
        Per-sample loss (e.g. cross-entropy) of the model on those validation samples.
    target_features : (N_t, D)
        Features of unlabelled target samples, from the same feature extractor.
    seed : int
        Seeds the subsampling, so the score is deterministic.
    max_per_domain : int
        Cap on the classifier's training samples per domain (logistic regression cost).

    Returns
    -------
    float
        The DEV risk, on the scale of ``source_val_losses``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = _features(source_train_features, "source-train features")
    v = _features(source_val_features, "source-validation features")
    t = _features(target_features, "target features")
    if not s.shape[1] == v.shape[1] == t.shape[1]:
        raise ValueError(f"deep embedded validation: feature widths differ: source-train {s.shape[1]}, "
                         f"source-validation {v.shape[1]}, target {t.shape[1]}")
    losses = _as_numpy(source_val_losses).astype(np.float64)
    if losses.ndim != 1 or len(losses) != len(v):
        raise ValueError(f"deep embedded validation: source_val_losses must hold one loss per source-validation "
                         f"sample ({len(v)}), got shape {losses.shape}")
    if max_per_domain < 4:
        raise ValueError(f"deep embedded validation: max_per_domain must be at least 4, got {max_per_domain}")

    rng = np.random.default_rng(seed)
    if len(s) > max_per_domain:
        s = s[rng.choice(len(s), max_per_domain, replace=False)]
    if len(t) > max_per_domain:
        t = t[rng.choice(len(t), max_per_domain, replace=False)]
    n_s, n_t = len(s), len(t)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    clf.fit(np.concatenate([s, t]), np.r_[np.zeros(n_s), np.ones(n_t)])

    p_target = np.clip(clf.predict_proba(v)[:, 1], _PROB_CLIP, 1.0 - _PROB_CLIP)
    w = (n_s / n_t) * p_target / (1.0 - p_target)
    weighted = w * losses
    var_w = float(np.var(w, ddof=1))
    # Nearly constant weights (e.g. indistinguishable domains): the control variate has nothing to cancel.
    eta = 0.0 if var_w <= 1e-12 * max(float(np.mean(w)) ** 2, 1e-12) else -float(np.cov(weighted, w)[0, 1]) / var_w
    return float(np.mean(weighted) + eta * np.mean(w) - eta)
