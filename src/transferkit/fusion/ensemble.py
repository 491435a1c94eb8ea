"""Fusion of member predictions: averaging, fitted weights, stacking — NumPy in, NumPy out.

Member probabilities come as one ``(M members, N, C)`` array (the members' class columns aligned with
:func:`check_members` / :func:`align_probs` first). Everything that is *fitted* here — :func:`fit_weights`,
:class:`Stacker` — must be fitted on held-out predictions (a validation split, or out-of-fold predictions of the
training set) that the caller passes in: fitting on the data the members were trained on rewards whichever member
over-fitted most, and fitting on the test split leaks it. Nothing here ever sees a test split.

* :func:`average_probs` — the plain mean of the members' probabilities (no fitting; the honest baseline).
* :func:`fit_weights` + :func:`weighted_probs` — a weighted average whose non-negative weights (summing to 1)
  minimise the validation negative log-likelihood; the continuous form of Caruana, Niculescu-Mizil, Crew & Ksikes,
  ICML 2004, "Ensemble Selection from Libraries of Models" (their forward selection with replacement yields such
  weights too).
* :class:`Stacker` — stacked generalisation (Wolpert, 1992, "Stacked Generalization"): a multinomial logistic
  regression on the members' log-probabilities, trained on out-of-fold member predictions. It can learn which
  member to trust for which class, which no single weight vector can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FIT_METHODS: tuple[str, ...] = ("nll",)

_EPS = 1e-12  # floor of a probability before its log, so a confidently wrong member gives a finite loss


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_probs(probs: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    p = _as_numpy(probs).astype(np.float64)
    if p.ndim != 3 or 0 in p.shape:
        raise ValueError(f"{what}: needs (M members, N, C) probabilities with M, N, C >= 1, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or not np.allclose(p.sum(-1), 1.0, atol=1e-3):
        raise ValueError(f"{what}: every row must be a probability distribution (non-negative, summing to 1); "
                         f"logits need a softmax first")
    return p


def _as_labels(labels: np.ndarray | torch.Tensor, n: int, c: int, what: str) -> np.ndarray:
    y = _as_numpy(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{what}: needs one label per sample ({n}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{what}: labels must be integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"{what}: labels must lie in [0, {c}), got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def average_probs(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """The unweighted mean ``(N, C)`` of the members' probabilities ``(M, N, C)``; nothing is fitted."""
    return _as_probs(probs, "average_probs").mean(0)


def weighted_probs(probs: np.ndarray | torch.Tensor, weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """The mixture ``Σ_m w_m p_m`` ``(N, C)`` of the members' probabilities ``(M, N, C)``.

    ``weights`` (M,) must be non-negative and are normalised to sum to 1 (so the result stays a distribution).
    """
    p = _as_probs(probs, "weighted_probs")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (p.shape[0],):
        raise ValueError(f"weighted_probs: needs one weight per member ({p.shape[0]}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0.0 or w.sum() <= 0.0:
        raise ValueError(f"weighted_probs: weights must be non-negative with a positive sum, got {w.tolist()}")
    return np.tensordot(w / w.sum(), p, axes=1)


def fit_weights(val_probs: np.ndarray | torch.Tensor, val_labels: np.ndarray | torch.Tensor, method: str = "nll",
                n_random_starts: int = 4, seed: int = 0) -> np.ndarray:
    """Member weights ``(M,)``, non-negative and summing to 1, that minimise the negative log-likelihood of the
    weighted average :func:`weighted_probs` on held-out data (Caruana et al., ICML 2004, "Ensemble Selection from
    Libraries of Models", in its continuous form).

    The weights are ``softmax(θ)`` (the simplex constraint without bounds) and ``θ`` is found by L-BFGS with the
    analytic gradient from several starts: uniform, each member favoured in turn, and ``n_random_starts`` seeded
    Gaussian ones. The NLL is convex in the weights but flat in ``θ`` near the simplex's faces, where a single start
    can stall. The best of all starts *and* end points is kept, so the result's validation NLL is never above the
    uniform average's. Deterministic for a given ``seed``.

    Parameters
    ----------
    val_probs : (M, N, C)
        Member probabilities on validation (or out-of-fold) samples — never the test split.
    val_labels : (N,)
        Integer labels of those samples.
    method : str
        The criterion, one of :data:`FIT_METHODS` (only ``"nll"``: it rewards calibrated mixtures, and unlike
        accuracy it is smooth).
    n_random_starts, seed : int
        Extra random starts and their seed.

    Returns
    -------
    np.ndarray
        ``(M,)`` weights for :func:`weighted_probs`.
    """
    from scipy.optimize import minimize

    if method not in FIT_METHODS:
        raise ValueError(f"unknown weight-fitting method {method!r}; valid choices: {', '.join(FIT_METHODS)}")
    p = _as_probs(val_probs, "fit_weights")
    m, n, c = p.shape
    y = _as_labels(val_labels, n, c, "fit_weights")
    if m == 1:
        return np.ones(1)
    q = np.clip(p[:, np.arange(n), y], _EPS, None)  # (M, N): each member's probability of the true class

    def nll_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = _softmax(theta)
        mix = w @ q
        grad_w = -(q / mix).mean(1)
        return float(-np.log(mix).mean()), w * (grad_w - w @ grad_w)

    rng = np.random.default_rng(seed)
    starts = [np.zeros(m), *(3.0 * np.eye(m)), *rng.normal(size=(n_random_starts, m))]
    best_nll, best_theta = np.inf, starts[0]
    for theta0 in starts:
        theta1 = minimize(nll_and_grad, theta0, jac=True, method="L-BFGS-B").x
        for theta in (theta0, theta1):
            value = nll_and_grad(theta)[0]
            if value < best_nll:
                best_nll, best_theta = value, theta
    return _softmax(best_theta)


class Stacker:
    """Stacked generalisation (Wolpert, 1992, "Stacked Generalization"): a multinomial logistic regression whose
    inputs are the members' concatenated log-probabilities ``[log p_1(x), …, log p_M(x)]`` (``M·C`` features).

    Fit it on **out-of-fold** member predictions (each sample predicted by a member that did not train on it) or on
    a validation split: on in-sample predictions the meta-learner learns to trust the member that over-fitted most.
    The regularisation ``C`` is chosen from ``c_grid`` by stratified ``cv``-fold cross-validation of the log-loss.

    After fitting, only ``coef_`` ``(K, M·C)``, ``intercept_`` ``(K,)`` and ``classes_`` define the model, and
    :meth:`predict_proba` evaluates them directly (not through scikit-learn), so :meth:`to_dict` /
    :meth:`from_dict` round-trip it through plain lists — JSON or a safetensors bundle, no pickle — with identical
    predictions.
    """

    def __init__(self, c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0), cv: int = 3, seed: int = 0,
                 eps: float = 1e-6) -> None:
        if not c_grid or min(c_grid) <= 0:
            raise ValueError(f"stacker: c_grid must hold positive regularisation strengths, got {list(c_grid)}")
        if cv < 2:
            raise ValueError(f"stacker: cv needs at least 2 folds, got {cv}")
        self.c_grid = tuple(float(c) for c in c_grid)
        self.cv = int(cv)
        self.seed = int(seed)
        self.eps = float(eps)  # floor of a member probability before its log (bounds the features)
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.classes_: np.ndarray | None = None
        self.C_: float | None = None
        self.n_members_: int | None = None

    def _features(self, probs: np.ndarray) -> np.ndarray:
        m, n, c = probs.shape
        return np.log(np.clip(probs, self.eps, 1.0)).transpose(1, 0, 2).reshape(n, m * c)

    def fit(self, oof_probs: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> Stacker:
        """Fit on out-of-fold member probabilities ``(M, N, C)`` and their labels ``(N,)``; every class must occur
        at least ``cv`` times (the meta-learner must see each class, and each CV fold too)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold

        p = _as_probs(oof_probs, "stacker fit")
        m, n, c = p.shape
        y = _as_labels(labels, n, c, "stacker fit")
        counts = np.bincount(y, minlength=c)
        if counts.min() < self.cv:
            rare = [int(k) for k in np.flatnonzero(counts < self.cv)]
            raise ValueError(f"stacker fit: every class needs at least cv={self.cv} out-of-fold samples; classes "
                             f"{rare} have {[int(counts[k]) for k in rare]}")
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.seed)
        search = GridSearchCV(LogisticRegression(max_iter=5000), {"C": list(self.c_grid)}, cv=folds,
                              scoring="neg_log_loss")
        search.fit(self._features(p), y)
        best = search.best_estimator_
        self.coef_ = np.asarray(best.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(best.intercept_, dtype=np.float64)
        self.classes_ = np.asarray(best.classes_, dtype=np.int64)
        self.C_ = float(search.best_params_["C"])
        self.n_members_ = m
        return self

    def predict_proba(self, probs: np.ndarray | torch.Tensor) -> np.ndarray:
        """Fused probabilities ``(N, C)`` from member probabilities ``(M, N, C)`` (same members, same order)."""
        if self.coef_ is None or self.intercept_ is None or self.classes_ is None:
            raise RuntimeError("stacker: call fit() (or from_dict()) before predict_proba()")
        p = _as_probs(probs, "stacker predict_proba")
        if p.shape[0] != self.n_members_ or p.shape[0] * p.shape[2] != self.coef_.shape[1]:
            raise ValueError(f"stacker predict_proba: fitted on {self.n_members_} members with "
                             f"{self.coef_.shape[1] // self.n_members_} classes, got shape {p.shape}")
        z = self._features(p) @ self.coef_.T + self.intercept_
        if self.coef_.shape[0] == 1:  # scikit-learn's binary case: one logit for the second class
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        return _softmax(z, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """The fitted meta-learner as plain lists and numbers (JSON-safe, no pickle)."""
        if self.coef_ is None or self.intercept_ is None or self.classes_ is None:
            raise RuntimeError("stacker: nothing to save before fit()")
        return {"method": "stacking", "coef": self.coef_.tolist(), "intercept": self.intercept_.tolist(),
                "classes": [int(k) for k in self.classes_], "n_members": int(self.n_members_ or 0),
                "eps": self.eps, "C": self.C_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stacker:
        """Rebuild a fitted stacker from :meth:`to_dict`'s output."""
        if d.get("method") != "stacking":
            raise ValueError(f"stacker from_dict: not a stacker record (method {d.get('method')!r})")
        s = cls(eps=float(d["eps"]))
        s.coef_ = np.asarray(d["coef"], dtype=np.float64)
        s.intercept_ = np.asarray(d["intercept"], dtype=np.float64)
        s.classes_ = np.asarray(d["classes"], dtype=np.int64)
        s.n_members_ = int(d["n_members"])
        s.C_ = None if d.get("C") is None else float(d["C"])
        if s.coef_.ndim != 2 or s.intercept_.shape != (s.coef_.shape[0],) or s.coef_.shape[1] % s.n_members_:
            raise ValueError(f"stacker from_dict: inconsistent shapes: coef {s.coef_.shape}, intercept "
                             f"{s.intercept_.shape}, {s.n_members_} members")
        return s


def check_members(class_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Check that all members predict the same class set and return, per member, the column permutation that puts
    its classes in member 0's order (``probs_i[:, perm_i]``; the identity for member 0).

    Fusing columns by position when two members list the same classes in a different order (e.g. one trained on
    an ``ImageFolder`` with other folder names) silently mixes classes; members with different class sets cannot
    be fused at all.

    Raises
    ------
    ValueError
        If no members are given, a member lists a class twice, or a member's class set differs from member 0's
        (naming both lists, the first such member first).
    """
    if not class_lists:
        raise ValueError("check_members: needs at least one member's class list")
    ref = [str(c) for c in class_lists[0]]
    perms = []
    for i, names in enumerate(class_lists):
        names = [str(c) for c in names]
        if len(set(names)) != len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"member {i} lists classes more than once: {dup}")
        if set(names) != set(ref):
            missing, extra = sorted(set(ref) - set(names)), sorted(set(names) - set(ref))
            raise ValueError(f"ensemble members predict different class sets: member {i} has {names}, member 0 has "
                             f"{ref} (missing in member {i}: {missing}; not in member 0: {extra})")
        position = {c: j for j, c in enumerate(names)}
        perms.append(np.array([position[c] for c in ref], dtype=np.int64))
    return perms


def align_probs(probs_list: Sequence[np.ndarray | torch.Tensor], perms: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-member probabilities ``(N, C)`` into ``(M, N, C)`` with columns in member 0's class order, using
    the permutations of :func:`check_members`."""
    if len(probs_list) != len(perms):
        raise ValueError(f"align_probs: {len(probs_list)} members' probabilities but {len(perms)} permutations")
    out = []
    for i, (probs, perm) in enumerate(zip(probs_list, perms, strict=True)):
        p = _as_numpy(probs).astype(np.float64)
        if p.ndim != 2 or p.shape[1] != len(perm):
            raise ValueError(f"align_probs: member {i} needs (N, {len(perm)}) probabilities, got shape {p.shape}")
        out.append(p[:, np.asarray(perm)])
    if len({p.shape[0] for p in out}) != 1:
        raise ValueError(f"align_probs: members predict different numbers of samples: {[p.shape[0] for p in out]}")
    return np.stack(out)
