"""Input validation shared by the transferability scores and the domain-similarity measures.

Every score here silently returns nonsense on bad input — a NaN feature poisons an SVD, a label ``C`` in a
``C``-class problem shifts every class-conditional estimate, an empty class divides by zero — so each public
function runs its arguments through these checks first. They convert to float64 (the scores are sums of many
small terms; float32 accumulation is not good enough) and raise :class:`ValueError` naming the argument and the
problem.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_SHOW = 10  # how many offending values / rows an error message lists


def _listing(values: np.ndarray) -> str:
    shown = ", ".join(repr(v.item()) if isinstance(v, np.generic) else repr(v) for v in values[:_SHOW])
    more = f", ... ({len(values) - _SHOW} more)" if len(values) > _SHOW else ""
    return f"[{shown}{more}]"


def check_features(features: ArrayLike, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """``features`` as a finite float64 ``(N, D)`` array with at least ``min_rows`` rows, or a ValueError."""
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric (N, D) array: {err}") from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got {x.ndim}-D with shape {x.shape}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns (shape {x.shape})")
    if len(x) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {len(x)}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} has {len(bad)} row(s) with NaN or inf values (of {len(x)}); rows {_listing(bad)}")
    return x


def _integer_ids(y: np.ndarray, name: str, what: str) -> np.ndarray:
    """A 1-D array of integer-valued ids (ints, or floats that are whole numbers) as int64, or a ValueError."""
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{name} must be {what}, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"{name} must be {what}; non-integer values: {_listing(np.unique(y[bad]))}")
    return y.astype(np.int64)


def check_labels(labels: ArrayLike, n: int | None = None, num_classes: int | None = None,
                 name: str = "labels", against: str = "features") -> tuple[np.ndarray, int]:
    """``labels`` as an int64 ``(N,)`` array covering every class ``0..C−1``, and ``C``.

    ``C`` is ``num_classes`` when given, else ``max(labels) + 1``. A class in ``0..C−1`` with no sample is an
    error: it would make class-conditional estimates undefined, and usually means the labels were not remapped
    to contiguous ids. ``n`` (the number of feature rows, described by ``against``) must equal ``len(labels)``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but {against} has {n} rows; they must match")
    if len(y) == 0:
        raise ValueError(f"{name} is empty")
    y = _integer_ids(y, name, "integer class ids in 0..C-1")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        c = int(num_classes)
        outside = (y < 0) | (y >= c)
    else:
        outside = y < 0
        c = int(y.max()) + 1
    if outside.any():
        top = c if num_classes is not None else max(c, 1)
        raise ValueError(f"{name} must be integers in 0..C-1 with C={top}; offending values: "
                         f"{_listing(np.unique(y[outside]))}")
    if c < 2:
        raise ValueError(f"{name} has a single class (C={c}); transferability needs at least 2 classes")
    if len(y) < c:
        raise ValueError(f"{name}: fewer samples ({len(y)}) than classes (C={c})")
    missing = np.setdiff1d(np.arange(c), y)
    if len(missing):
        raise ValueError(f"{name} must cover 0..C-1 with C={c}; missing: {_listing(missing)}")
    return y, c


def check_source_labels(source_labels: ArrayLike, name: str = "source_labels") -> np.ndarray:
    """Hard source-class ids as an int64 ``(N,)`` array: a 1-D array of integer ids is taken as is (any integers —
    they are only compared for equality), a 2-D ``(N, Z)`` matrix of probabilities (or logits) is argmaxed per row."""
    z = np.asarray(source_labels)
    if z.ndim == 2:
        return check_features(z, name).argmax(axis=1)
    if z.ndim != 1:
        raise ValueError(f"{name} must be 1-D class ids or a 2-D (N, Z) probability matrix, got shape {z.shape}")
    if len(z) == 0:
        raise ValueError(f"{name} is empty")
    return _integer_ids(z, name, "integer class ids")


def check_probs(probs: ArrayLike, name: str = "source_probs", atol: float = 1e-3) -> np.ndarray:
    """``probs`` as a float64 ``(N, Z)`` matrix of non-negative rows summing to 1 (within ``atol``), or a ValueError.

    The tolerance allows float32 softmax output; logits (rows not summing to 1) are rejected rather than
    silently renormalised, since passing logits where probabilities are expected is the usual mistake.
    """
    p = check_features(probs, name)
    negative = np.flatnonzero((p < 0).any(axis=1))
    if len(negative):
        raise ValueError(f"{name} must be probabilities; {len(negative)} row(s) have negative entries "
                         f"(rows {_listing(negative)}) — pass softmax outputs, not logits")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if len(off):
        raise ValueError(f"{name} rows must sum to 1 (tolerance {atol:g}); {len(off)} row(s) do not, e.g. row "
                         f"{off[0]} sums to {sums[off[0]]:.6g} — pass softmax outputs, not logits")
    return p


def check_pair(source: ArrayLike, target: ArrayLike, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two finite float64 feature matrices of the same width with at least ``min_rows`` rows each."""
    s = check_features(source, "source", min_rows=min_rows)
    t = check_features(target, "target", min_rows=min_rows)
    if s.shape[1] != t.shape[1]:
        raise ValueError(f"source and target must have the same feature width, got {s.shape[1]} and {t.shape[1]}")
    return s, t
