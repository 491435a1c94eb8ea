"""A linear probe that is solved, not stepped: L2-regularised multinomial logistic regression on frozen features.

A linear head on frozen features is a convex problem, so it has one optimum and no learning rate, epoch count or
early stopping to get wrong — solve it (Kornblith, Shlens & Le, 2019, "Do Better ImageNet Models Transfer
Better?", and the linear-probe protocol of Radford et al., 2021, "Learning Transferable Visual Models From Natural
Language Supervision" (CLIP): L-BFGS logistic regression, L2 strength chosen on held-out data).

:func:`solve_probe` does, on the training features ``X`` ``(N, D)`` and labels ``y``:

1. **standardise** (:func:`standardise`) — ``Z = (X - mean) / s`` with the training features' own means and one
   scale ``s`` for all features (the RMS of the centred features), so C means the same whatever the backbone's
   feature magnitude while the features keep their relative sizes (``per_feature=True``: each feature's own std, as
   scikit-learn's ``StandardScaler`` — measured worse with few labels, see :func:`standardise`);
2. **solve** (:func:`fit_logistic`) — minimise ``Σ s_i·CE(W z_i + b, y_i) / Σ s_i + ||W||² / (2·C·Σ s_i)`` (the
   objective of scikit-learn's ``LogisticRegression(C=C)``, multinomial; ``s_i`` = 1, or inverse class frequency
   for balanced class weights; the intercept ``b`` is not penalised) with full-batch L-BFGS in float64 (strong-Wolfe
   line search) until the largest gradient entry is below ``tol``;
3. **choose C** — with ``C="auto"``, stratified k-fold cross-validation on the training labels (k = min(5, the
   smallest class count), scikit-learn's ``StratifiedKFold``) over a log grid (:data:`C_GRID`, 10⁻⁴ … 10⁴ by
   decades), each fold walking the grid from strong to weak regularisation with warm starts; the C with the best
   mean held-out score (:data:`SCORINGS`: log-loss) wins and is **refit on all training labels**. With fewer than
   two examples in every class (one label per class) there is nothing to hold out: :data:`DEFAULT_C`, and the
   record says so (a class with one example among larger ones stays in every training part, and it is said);
   each fold is solved on its rows' principal axes (:func:`principal_basis`: at most N unknowns per class, not D);
4. **fold the standardisation into the head** — ``W' = W / s``, ``b' = b - W' · mean``, so the saved
   ``nn.Linear`` reads raw features and ``predict``/``export`` need nothing new.

Classes absent from the training labels get weight 0 and bias −10⁴ (never predicted). Non-finite features raise a
``ValueError`` naming the data, before any work.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["C_GRID", "DEFAULT_C", "SCORINGS", "LogisticFit", "ProbeSolution", "check_finite", "choose_c", "cv_folds",
           "fit_logistic", "principal_basis", "solve_probe", "standardise"]

C_GRID: tuple[float, ...] = tuple(10.0 ** e for e in range(-4, 5))  # 1e-4 … 1e4 (half-decade steps: no better)
CV_TOL = 1e-4  # gradient tolerance of the cross-validation fits (held-out scores do not move; the refit uses 1e-6)
DEFAULT_C = 1e-3  # one label per class (no cross-validation possible): strong, near-prototype regularisation
MAX_FOLDS = 5
# held-out log-loss chooses C (smooth, no ties; ≥ accuracy-scored at 5 and 10 labels per class, 0.5 point below at 2,
# over 9 development seeds); accuracy ties are broken by the lower log-loss
SCORINGS = ("log_loss", "accuracy")
ABSENT_BIAS = -1e4  # the bias of a class without training labels: never predicted
SMALL_PROBLEM = 1 << 24  # rows × coordinates × classes below which one thread solves fastest


@dataclass
class LogisticFit:
    """One solve: ``weight`` ``(k, D)`` and ``bias`` ``(k,)`` (float64, standardised features), the objective at the
    end, L-BFGS iterations, and whether it stopped before ``max_iter`` (:func:`fit_logistic`)."""

    weight: torch.Tensor
    bias: torch.Tensor
    loss: float
    iterations: int
    converged: bool


@dataclass
class ProbeSolution:
    """The solved head on **raw** features (``weight`` ``(num_classes, D)``, ``bias``, float32) and what was chosen
    (``record``: C, how it was chosen, the CV table, folds, fallback, iterations, seconds)."""

    weight: torch.Tensor
    bias: torch.Tensor
    record: dict[str, Any] = field(default_factory=dict)


def check_finite(features: torch.Tensor, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` when ``features`` hold NaN or ±inf (how many values, in how many rows):
    a solver would return NaN weights, or stop at once, without saying why."""
    bad = ~torch.isfinite(features)
    if bool(bad.any()):
        rows = int(bad.reshape(len(features), -1).any(1).sum()) if features.ndim > 1 else int(bad.sum())
        raise ValueError(f"{name}: {int(bad.sum())} NaN/inf value(s) in {rows} of {len(features)} feature vectors; "
                         "the source model gives non-finite features for this data (check its weights and inputs)")


def standardise(x: torch.Tensor, per_feature: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, scale)`` ``(D,)`` of the rows of ``x``: the features' means, and one scale for all of them — the root
    mean square of the centred features — or, with ``per_feature``, each feature's own (population) std, as
    scikit-learn's ``StandardScaler``. A scale of 0 becomes 1 (nothing to scale).

    One common scale is the default: it makes C mean the same for any backbone's feature magnitude, yet keeps the
    relative sizes of the features, which carry information — per-feature scaling blows up features that are rarely
    active, whose std 10–50 examples estimate badly (measured on MobileNetV2 features of Fashion-MNIST, C by the
    same cross-validation: 10, 1.5 and 0.6 points lower test accuracy with 2, 5 and 10 labels per class;
    ``benchmarks/bench_probe.py``)."""
    mean = x.mean(0)
    centred = x - mean
    if per_feature:
        std = centred.pow(2).mean(0).sqrt()
        return mean, torch.where(std > 1e-12 * (1.0 + mean.abs()), std, torch.ones_like(std))
    rms = float(centred.pow(2).mean().sqrt())
    return mean, torch.full_like(mean, rms if rms > 1e-12 * (1.0 + float(mean.abs().max())) else 1.0)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float,
                 sample_weight: torch.Tensor | None = None, init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 max_iter: int = 1000, tol: float = 1e-6, penalty: torch.Tensor | None = None) -> LogisticFit:
    """Multinomial logistic regression with an L2 penalty of strength ``1/C`` on ``W`` (not on the intercept), solved
    by full-batch L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search).

    ``x`` ``(N, D)`` float64 (standardised), ``y`` ``(N,)`` int64 in ``[0, num_classes)``; minimises
    ``Σ s_i·CE_i / Σ s_i + ||W||² / (2·C·Σ s_i)`` — scikit-learn's ``LogisticRegression(C=C)`` objective divided by
    ``C·Σ s_i`` (same optimum). ``init`` = ``(W, b)`` warm-starts it (a neighbouring C's solution); stops when the
    largest gradient entry is ≤ ``tol``, when an iteration changes the objective or a weight by less than 1e-10 (the
    objective is then within float64 rounding of its optimum: strongly regularised problems stall there before the
    gradient reaches ``tol``), or after ``max_iter`` iterations (``converged`` false). ``penalty`` ``(D,)`` weighs
    each column of ``W`` in the penalty (``Σ_j penalty_j·||W_j||²``; a rescaled problem, see :func:`solve_probe`).
    """
    if not C > 0:
        raise ValueError(f"C must be a positive number (the inverse L2 strength), got {C}")
    n, d = x.shape
    w = torch.ones(n, dtype=x.dtype) if sample_weight is None else sample_weight.to(x.dtype)
    wsum = float(w.sum())
    alpha = 1.0 / (C * wsum)
    W = (torch.zeros(num_classes, d, dtype=x.dtype) if init is None else init[0].detach().clone()).requires_grad_()
    b = (torch.zeros(num_classes, dtype=x.dtype) if init is None else init[1].detach().clone()).requires_grad_()
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=tol,
                            tolerance_change=1e-10, history_size=10, line_search_fn="strong_wolfe")

    onehot = F.one_hot(y, num_classes).to(x.dtype)
    ws = (w / wsum)[:, None]
    pen = alpha * (torch.ones(d, dtype=x.dtype) if penalty is None else penalty.to(x.dtype))

    @torch.no_grad()
    def objective() -> torch.Tensor:  # loss and gradient by hand: autograd's bookkeeping would cost more than the maths
        logits = torch.addmm(b, x, W.T)
        logp = torch.log_softmax(logits, 1)
        g = (logp.exp() - onehot) * ws  # d loss / d logits
        wp = W * pen
        W.grad = torch.addmm(wp, g.T, x)
        b.grad = g.sum(0)
        return -(logp * onehot * ws).sum() + 0.5 * (wp * W).sum()

    opt.step(objective)
    loss = objective()  # the gradient at the final point (the line search's last evaluation may differ)
    grad = max(float(W.grad.abs().max()), float(b.grad.abs().max()))
    iterations = int(opt.state[W].get("n_iter", 0))
    return LogisticFit(W.detach(), b.detach(), float(loss), iterations, grad <= tol or iterations < max_iter)


def cv_folds(y: np.ndarray, seed: int, max_folds: int = MAX_FOLDS) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Stratified folds ``[(train rows, held-out rows)]`` on labels ``y``, and a note on how they were made.

    k = min(``max_folds``, smallest class count) folds of scikit-learn's ``StratifiedKFold`` (shuffled with
    ``seed``), so every held-out part holds every class and every training part too. Classes with a single example
    cannot be on both sides: they stay in every training part and are never held out (the note says which). Fewer
    than two classes with two or more examples: no folds (``[]``). Every fold is checked, so a stratification that
    misses a class fails loudly instead of scoring a C on a fold that cannot show the class.
    """
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(y, return_counts=True)
    multi = classes[counts >= 2]
    if len(multi) < 2:
        return [], (f"no cross-validation: {'no class has' if not len(multi) else 'only one class has'} two or more "
                    "training examples")
    k = int(min(max_folds, counts[counts >= 2].min()))
    singles = classes[counts < 2]
    pool = np.flatnonzero(np.isin(y, multi))
    kept = np.flatnonzero(np.isin(y, singles))
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [(np.sort(np.concatenate([pool[tr], kept])), np.sort(pool[te])) for tr, te in skf.split(pool, y[pool])]
    for i, (tr, te) in enumerate(folds):
        if set(np.unique(y[tr])) != set(classes) or set(np.unique(y[te])) != set(multi):
            raise RuntimeError(f"stratified fold {i + 1} of {k} lacks a class (training part "
                               f"{sorted(np.unique(y[tr]).tolist())}, held-out part {sorted(np.unique(y[te]).tolist())}"
                               f", expected {sorted(classes.tolist())})")
    note = f"stratified {k}-fold"
    if len(singles):
        note += (f"; fallback: class(es) {sorted(singles.tolist())} have one example, kept in every training part and "
                 "never held out")
    return folds, note


def principal_basis(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(coords (N, r), V (D, r), variance (r,))``: the rows of ``x`` ``(N, D)`` in an orthonormal basis ``V`` of
    their span, by principal axes (``x = coords Vᵀ`` up to directions with under 10⁻¹⁰ of the largest variance), and
    the mean square of each coordinate. From the eigen-decomposition of the Gram matrix ``x xᵀ`` when ``N < D``, of
    ``xᵀ x`` otherwise.

    Two gains, the problem unchanged: the L2-penalised optimum's ``W`` lies in the span of the training rows (its
    gradient ``Gᵀx + W/(C·Σs)`` vanishes only there — the representer theorem), so ``r ≤ N`` unknowns per class
    replace ``D``; and along principal axes the curvature of each unknown is known in advance (its variance), which
    :func:`solve_probe` uses to rescale them — L-BFGS then needs a few dozen iterations where pretrained features,
    whose variances span four decades, took hundreds."""
    n, d = x.shape
    lam, u = torch.linalg.eigh(x @ x.T if n < d else x.T @ x)  # ascending
    keep = lam > max(float(lam[-1]), 0.0) * 1e-10
    if not bool(keep.any()):  # every row zero (after centring): one dummy direction
        keep[-1] = True
    lam, u = lam[keep].flip(0).clamp_min(1e-300), u[:, keep].flip(1)
    if n < d:
        root = lam.sqrt()
        return u * root, (x.T @ u) / root, lam / n
    return x @ u, u, lam / n


def _fit(y: torch.Tensor, k: int, c: float, w: torch.Tensor | None, init: LogisticFit | None,
         basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor], max_iter: int, tol: float) -> LogisticFit:
    """:func:`fit_logistic` on the training rows given as their :func:`principal_basis`, each coordinate rescaled by
    ``(variance/k + 1/(C·Σs))^(-1/4)`` with the penalty weighed to match, so the problem is the same; the weight comes
    back in the rows' own coordinates (and ``init`` is given in them).

    ``variance/k + 1/(C·Σs)`` is about each coordinate's curvature (data term + penalty); dividing by its square root
    would equalise them if the softmax curvature were constant — it is not, and the fourth root, half way, measured
    best (1.7× fewer L-BFGS iterations than none on MobileNetV2 features, 400 rows, against 1.2× for the square
    root)."""
    coords, v, var = basis
    wsum = float(len(y) if w is None else w.sum())
    scale = (var / k + 1.0 / (c * wsum)).pow(-0.25)
    start = None if init is None else ((init.weight @ v) / scale, init.bias)
    fit = fit_logistic(coords * scale, y, k, c, w, start, max_iter, tol, penalty=scale * scale)
    fit.weight = (fit.weight * scale) @ v.T
    return fit


def _held_out(fit: LogisticFit, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = torch.addmm(fit.bias, x, fit.weight.T)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean())


def _best(log_loss: list[float], accuracy: list[float], scoring: str) -> int:
    if scoring == "log_loss":
        return int(np.nanargmin(log_loss))
    top = max(accuracy)
    return min((i for i, a in enumerate(accuracy) if a >= top - 1e-12), key=lambda i: log_loss[i])


@contextlib.contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """One intra-op thread for small problems (many tiny operations: extra threads only wait for each other, and
    far longer when other jobs load the CPU), the process's setting for large ones."""
    before = torch.get_num_threads()
    if work < SMALL_PROBLEM:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def choose_c(x: torch.Tensor, y: torch.Tensor, k: int, weight: torch.Tensor | None, grid: Sequence[float],
             scoring: str, seed: int, name: str, max_iter: int = 1000, tol: float = CV_TOL) -> dict[str, Any]:
    """Cross-validate the inverse L2 strength on standardised ``x`` with labels ``y`` in ``[0, k)``: every fold of
    :func:`cv_folds` walks ``grid`` from strong to weak regularisation (warm starts); the best mean held-out
    ``scoring`` wins. Returns the record: ``C``, ``chosen_by``, ``folds``, ``grid``, ``cv_log_loss``, ``cv_accuracy``,
    ``fallback`` (``None``, or what was done instead — also warned), ``iterations``."""
    folds, note = cv_folds(y.numpy(), seed)
    record: dict[str, Any] = {"cv": note, "folds": len(folds), "fallback": None, "iterations": 0}
    if not folds or "fallback" in note:
        record["fallback"] = note if folds else f"{note}: C={DEFAULT_C:g} (the default), not cross-validated"
        warnings.warn(f"{name}: {record['fallback']}", stacklevel=3)
    if not folds:
        return {**record, "C": DEFAULT_C, "chosen_by": f"default C={DEFAULT_C:g} ({note})"}
    grid = sorted(float(c) for c in grid)
    losses, accs = np.zeros((len(folds), len(grid))), np.zeros((len(folds), len(grid)))
    converged = True
    for f, (tr, te) in enumerate(folds):
        tr_t, te_t = torch.from_numpy(tr), torch.from_numpy(te)
        xt, yt, wt = x[tr_t], y[tr_t], None if weight is None else weight[tr_t]
        basis, prev = principal_basis(xt), None
        for j, c in enumerate(grid):  # strong → weak regularisation, each solve starting from the last
            prev = _fit(yt, k, c, wt, prev, basis, max_iter, tol)
            record["iterations"] += prev.iterations
            converged &= prev.converged
            losses[f, j], accs[f, j] = _held_out(prev, x[te_t], y[te_t])
    mean_loss, mean_acc = losses.mean(0).tolist(), accs.mean(0).tolist()
    best = _best(mean_loss, mean_acc, scoring)
    record.update({"C": grid[best], "scoring": scoring, "grid": grid, "cv_log_loss": mean_loss,
                   "cv_accuracy": mean_acc, "cv_converged": converged, "at_grid_edge": best in (0, len(grid) - 1),
                   "chosen_by": f"{note} cross-validation, best mean held-out {scoring.replace('_', '-')}"})
    return record


def solve_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, C: float | str = "auto",
                grid: Sequence[float] = C_GRID, scoring: str = "log_loss", seed: int = 0, balanced: bool = False,
                name: str = "the training features", max_iter: int = 1000, tol: float = 1e-6,
                per_feature: bool = False) -> ProbeSolution:
    """Solve a linear probe on ``features`` ``(N, D)`` with integer ``labels`` ``(N,)``: see the module docstring.

    ``C="auto"`` chooses the inverse L2 strength by stratified cross-validation over ``grid`` (:func:`choose_c`;
    ``scoring``: mean held-out ``log_loss`` or ``accuracy``); a number fixes it. ``balanced`` weights examples by
    inverse class frequency; ``per_feature`` scales each feature by its own std (:func:`standardise`). ``name``
    names the data in errors and warnings. The cross-validation fits stop at gradient tolerance :data:`CV_TOL`, the
    refit at ``tol``. Returns the head on raw features and a record of the choice (``C``, ``chosen_by``, the CV
    table, ``fallback``, ``iterations``, ``fit_s``, …).
    """
    start = time.perf_counter()
    if scoring not in SCORINGS:
        raise ValueError(f"scoring: unknown '{scoring}'; valid choices: {', '.join(SCORINGS)}")
    if not (C == "auto" or (isinstance(C, (int, float)) and not isinstance(C, bool) and C > 0 and math.isfinite(C))):
        raise ValueError(f"C: expected 'auto' or a positive number (the inverse L2 strength), got {C!r}")
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"{name}: expected features (N, D) and labels (N,), got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    check_finite(features, name)
    y_all = labels.long().cpu()
    present = torch.unique(y_all)
    if len(present) < 2:
        raise ValueError(f"{name}: a linear probe needs training examples of at least 2 classes, got "
                         f"{present.tolist()}")
    if int(present.min()) < 0 or int(present.max()) >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got {present.tolist()}")
    remap = torch.full((num_classes,), -1, dtype=torch.long)
    remap[present] = torch.arange(len(present))
    y, k = remap[y_all], len(present)
    x_raw = features.detach().cpu().double()
    mean, std = standardise(x_raw, per_feature)
    x = (x_raw - mean) / std
    n, d = x.shape
    weight = (n / (k * torch.bincount(y, minlength=k).double()))[y] if balanced else None
    record: dict[str, Any] = {"solver": "lbfgs", "scaling": "per feature" if per_feature else "one scale",
                              "balanced": balanced, "n": n, "features": d,
                              "classes": k, "fallback": None, "iterations": 0}
    with _threads_for(n * min(n, d) * k):
        if C == "auto":
            record.update(choose_c(x, y, k, weight, grid, scoring, seed, name, max_iter, max(tol, CV_TOL)))
        else:
            record.update({"C": float(C), "folds": 0, "chosen_by": "given"})
        fit = _fit(y, k, record["C"], weight, None, principal_basis(x), max_iter, tol)
    w_raw = fit.weight / std  # fold the standardisation into the head: it reads raw features
    b_raw = fit.bias - w_raw @ mean
    out_w = torch.zeros(num_classes, d)
    out_b = torch.full((num_classes,), ABSENT_BIAS)
    out_w[present], out_b[present] = w_raw.float(), b_raw.float()
    if k < num_classes:
        record["absent_classes"] = sorted(set(range(num_classes)) - set(present.tolist()))
    record.update({"iterations": record["iterations"] + fit.iterations, "final_iterations": fit.iterations,
                   "converged": fit.converged, "train_objective": fit.loss, "fit_s": time.perf_counter() - start})
    return ProbeSolution(out_w, out_b, record)
