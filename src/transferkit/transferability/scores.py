"""Label-based transferability scores: how well will a pretrained source transfer to a labelled target task?

Each score looks at the target training set through the frozen source model once — its penultimate features or its
predicted distribution over the *source* classes — and needs no fine-tuning, so a zoo of candidate sources can be
ranked for the cost of one forward pass each. Higher is better for all four; the values are only comparable
between sources scored on the same target data.

* :func:`logme` — You, Liu, Wang & Long, ICML 2021, "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning": the maximised log marginal evidence of a Bayesian linear model on the features.
* :func:`leep` — Nguyen, Hassner, Seeger & Archambeau, ICML 2020, "LEEP: A New Measure to Evaluate
  Transferability of Learned Representations": log-likelihood of the target labels under the source's predicted
  distribution pushed through the empirical conditional ``P(y | z)``.
* :func:`nce` — Tran, Nguyen & Hassner, ICCV 2019, "Transferability and Hardness of Supervised Classification
  Tasks": the negative conditional entropy ``−H(Y | Z)`` of target labels given hard source labels.
* :func:`h_score` — Bao, Li, Huang & Zheng, ICIP 2019, "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning": ``tr(cov(f)⁻¹ cov(E[f | y]))``, optionally with the Ledoit–Wolf shrinkage of Ibrahim,
  Ponomareva & Mazumder, 2021, "Newer is not always better: Rethinking transferability metrics, their
  peculiarities, stability and performance".

:data:`SCORES` maps a name to ``(function, input kind)`` — ``"features"`` or ``"source_probs"`` — for callers that
pick a score by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from transferkit.registry import Registry, source_file
from transferkit.transferability.checks import check_features, check_labels, check_probs, check_source_labels

_TINY = 1e-300  # keeps the fixed-point updates finite when a statistic is exactly 0


def _one_hot(y: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((len(y), c))
    out[np.arange(len(y)), y] = 1.0
    return out


def _spectrum(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero eigenvalues ``σ`` of ``FᵀF`` and the targets' coordinates ``Uᵀ Y`` on the left singular vectors.

    One symmetric eigen-decomposition of the smaller Gram matrix (``D×D`` when ``N ≥ D``, else ``N×N``) replaces
    an SVD of ``F``; eigenvalues below ``max(N, D)·eps·σ_max`` are round-off in exactly singular directions
    (duplicated or constant features) and are dropped, so they count with the null space.
    """
    n, d = f.shape
    gram = f.T @ f if d <= n else f @ f.T
    sigma, vecs = np.linalg.eigh(gram)
    top = sigma[-1] if len(sigma) else 0.0
    keep = sigma > max(top, 0.0) * max(n, d) * np.finfo(np.float64).eps
    if top <= 0:
        keep[:] = False
    sigma, vecs = sigma[keep], vecs[:, keep]
    if d > n:  # the eigenvectors of F Fᵀ are the left singular vectors themselves
        return sigma, vecs.T @ targets
    return sigma, (vecs.T @ (f.T @ targets)) / np.sqrt(sigma)[:, None]  # u_i = F v_i / s_i


def logme(features: ArrayLike, labels: ArrayLike, *, num_classes: int | None = None, tol: float = 1e-6,
          max_iter: int = 100) -> float:
    """LogME (You et al., ICML 2021): per-sample log maximum evidence of a Bayesian linear model on ``features``.

    For each class ``c`` the one-hot target ``y_c ∈ {0,1}ᴺ`` is modelled as ``y = F w + ε`` with prior
    ``w ~ N(0, α⁻¹ I)`` and noise ``ε ~ N(0, β⁻¹ I)``; the log evidence
    ``log p(y_c | F, α, β) = log N(y_c | 0, β⁻¹ I + α⁻¹ F Fᵀ)`` is maximised over ``(α, β)`` by MacKay's fixed-point
    updates ``α ← γ / ‖m‖²``, ``β ← (N − γ) / ‖y − F m‖²`` (``m`` the posterior mean, ``γ`` the effective number of
    parameters). One eigen-decomposition of the Gram matrix serves every class and iteration, so each update is
    ``O(min(N, D))``. The score is the class average divided by ``N`` — the paper's normalisation, which makes it
    comparable across target-set sizes. Features are used as given (no centring or bias term, as in the paper).

    The log-determinant counts the ``D − rank(F)`` prior directions ``F`` does not see, so the value is the exact
    evidence at the final ``(α, β)`` for ``D > N`` as well. Each class iterates until ``α/β`` changes by less than
    ``tol`` (relative; the paper stops at 1e-3 — updates cost ``O(min(N, D))``, so the tighter default is free and
    keeps the result from depending on which side of the threshold round-off lands) or ``max_iter`` updates. If a
    one-hot target lies exactly in the span of a rank-deficient ``F`` (rank below ``N``: features that encode the
    labels) the evidence grows without bound as ``β → ∞``, and the value is where ``max_iter`` stopped. Higher is
    better.
    """
    f = check_features(features)
    y, c = check_labels(labels, len(f), num_classes)
    n = len(f)
    sigma, x = _spectrum(f, _one_hot(y, c))  # (k,), (k, C)
    x2 = x**2
    outside = np.maximum(np.bincount(y, minlength=c) - x2.sum(axis=0), 0.0)  # ‖y_c‖² beyond the span of F
    k = len(sigma)
    if k == 0:  # all-zero features: y ~ N(0, β⁻¹ I), maximised at β = N / ‖y‖²
        beta = n / np.bincount(y, minlength=c)
        evidence = 0.5 * n * np.log(beta) - 0.5 * n - 0.5 * n * np.log(2 * np.pi)
        return float(np.mean(evidence) / n)

    sig = sigma[:, None]

    def stats(t: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """γ, ‖m‖² and ‖y − F m‖² for the classes ``cols`` at their ratios ``t = α/β``."""
        shrink = 1.0 / (t + sig)
        gamma = (sig * shrink).sum(axis=0)
        m2 = (sig * x2[:, cols] * shrink**2).sum(axis=0)
        res2 = (x2[:, cols] * (t * shrink) ** 2).sum(axis=0) + outside[cols]
        return gamma, m2, res2

    alpha, beta = np.ones(c), np.ones(c)
    active = np.arange(c)  # classes still iterating; each stops on its own criterion
    for _ in range(max_iter):
        t = alpha[active] / beta[active]
        gamma, m2, res2 = stats(t, active)
        new_alpha = gamma / np.maximum(m2, _TINY)
        new_beta = (n - gamma) / np.maximum(res2, _TINY)
        alpha[active], beta[active] = new_alpha, new_beta
        active = active[np.abs(new_alpha / new_beta - t) > tol * t]
        if not len(active):
            break
    gamma, m2, res2 = stats(alpha / beta, np.arange(c))
    evidence = (0.5 * k * np.log(alpha) + 0.5 * n * np.log(beta) - 0.5 * alpha * m2 - 0.5 * beta * res2
                - 0.5 * np.log(alpha + beta * sig).sum(axis=0) - 0.5 * n * np.log(2 * np.pi))
    return float(np.mean(evidence) / n)


def leep(source_probs: ArrayLike, labels: ArrayLike, *, num_classes: int | None = None) -> float:
    """LEEP (Nguyen et al., ICML 2020): ``(1/N) Σᵢ log Σ_z P̂(yᵢ | z) θ(xᵢ)_z``.

    ``source_probs`` is the source model's predicted distribution ``θ(x)`` over its own ``Z`` classes on the target
    samples (rows summing to 1). The empirical joint ``P̂(y, z) = (1/N) Σᵢ θ(xᵢ)_z [yᵢ = y]`` gives the conditional
    ``P̂(y | z)``; the score is the average log-likelihood of the true labels under this "dummy" classifier built
    on the source head — the better source classes predict target classes, the higher (≤ 0).
    """
    p = check_probs(source_probs)
    y, c = check_labels(labels, len(p), num_classes, against="source_probs")
    joint = _one_hot(y, c).T @ p / len(p)  # (C, Z)
    pz = joint.sum(axis=0)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # a never-predicted z contributes 0
    eep = (p * cond[y]).sum(axis=1)
    return float(np.mean(np.log(eep)))


def nce(source_labels: ArrayLike, labels: ArrayLike, *, num_classes: int | None = None) -> float:
    """NCE (Tran et al., ICCV 2019): the negative conditional entropy ``−H(Y | Z)`` in nats.

    ``Z`` are hard source labels — an ``(N,)`` array of source-class ids, or an ``(N, Z)`` matrix of source
    probabilities (or logits), argmaxed per row. The empirical joint of ``(y, z)`` gives
    ``−H(Y|Z) = Σ_{y,z} P̂(y, z) log P̂(y | z)``: 0 when the source label determines the target label, down to
    ``−H(Y)`` when it says nothing about it.
    """
    z = check_source_labels(source_labels)
    y, c = check_labels(labels, len(z), num_classes, against="source_labels")
    _, z = np.unique(z, return_inverse=True)
    joint = np.zeros((c, int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    pz = joint.sum(axis=0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / pz)[nz])))


def h_score(features: ArrayLike, labels: ArrayLike, *, shrinkage: bool | float = False,
            num_classes: int | None = None, rcond: float = 1e-10) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)⁺ cov(E[f | y]))``.

    The between-class covariance of the features measured in the metric of their total covariance — the
    discriminability a linear classifier on ``f`` can exploit (at most ``C − 1``). ``cov(f)⁺`` is a pseudo-inverse
    whose eigenvalues below ``rcond · λ_max`` count as zero: far above float64 round-off, so exactly collinear
    features do not blow the score up, and far below real variance ratios.

    ``shrinkage`` regularises the covariance estimate, which is noisy when ``D`` is large against ``N`` (Ibrahim,
    Ponomareva & Mazumder, 2021): ``True`` uses the Ledoit–Wolf estimate ``(1 − a) cov(f) + a (tr cov(f) / D) I``
    with the data-driven ``a``, a number in ``[0, 1]`` fixes ``a``; the between-class covariance is scaled by
    ``(1 − a)`` to match, as in that paper. Both covariances use the ``1/N`` normalisation.
    """
    f = check_features(features)
    y, c = check_labels(labels, len(f), num_classes)
    n, d = f.shape
    f = f - f.mean(axis=0)
    counts = np.bincount(y, minlength=c).astype(np.float64)
    means = (_one_hot(y, c).T @ f) / counts[:, None]  # E[f | y], (C, D)
    cov_g = (means.T * counts) @ means / n  # covariance of E[f | y] over the samples (overall mean is 0)
    if isinstance(shrinkage, (bool, np.bool_)):
        if shrinkage:
            from sklearn.covariance import ledoit_wolf

            cov_f, a = ledoit_wolf(f, assume_centered=True)
        else:
            cov_f, a = f.T @ f / n, 0.0
    elif isinstance(shrinkage, (int, float, np.integer, np.floating)) and 0.0 <= float(shrinkage) <= 1.0:
        a = float(shrinkage)
        emp = f.T @ f / n
        cov_f = (1.0 - a) * emp + a * (np.trace(emp) / d) * np.eye(d)
    else:
        raise ValueError(f"shrinkage must be True, False or a number in [0, 1], got {shrinkage!r}")
    inv = np.linalg.pinv(cov_f, rcond=rcond, hermitian=True)
    return float(np.sum(inv * ((1.0 - float(a)) * cov_g)))  # tr(A B) for symmetric A, B


SCORES: Registry[tuple[Callable[..., float], str]] = Registry("transferability-scores", "score", sort=False)
"""Score name → ``(function, input kind)``; the kind says whether the function takes the source model's
``"features"`` or its ``"source_probs"`` (predicted distribution over source classes) as first argument.
``h_score_shrunk`` is H-score with a Ledoit–Wolf-shrunk covariance: the regularised variant for few samples in many
dimensions, where the plain one saturates at ``C − 1``. The order is ``select``'s default order."""
SCORES.add("logme", (logme, "features"), summary="log marginal evidence of a Bayesian linear model on the features",
           paper="You et al., 2021, LogME", where=source_file(logme))
SCORES.add("h_score", (h_score, "features"), summary="tr(cov(f)⁻¹ cov(E[f | y])) on the features",
           paper="Bao et al., 2019, An Information-Theoretic Approach to Transferability", where=source_file(h_score))
SCORES.add("h_score_shrunk", (functools.partial(h_score, shrinkage=True), "features"),
           summary="H-score with a Ledoit–Wolf-shrunk covariance (few samples, many dimensions)",
           paper="Ibrahim et al., 2021, Newer is not always better", where=source_file(h_score))
SCORES.add("leep", (leep, "source_probs"), summary="target log-likelihood through the source's predicted classes",
           paper="Nguyen et al., 2020, LEEP", where=source_file(leep))
SCORES.add("nce", (nce, "source_probs"), summary="−H(Y | Z): target labels given hard source labels",
           paper="Tran et al., 2019, Transferability and Hardness of Supervised Classification Tasks",
           where=source_file(nce))
