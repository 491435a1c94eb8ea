"""The folds of ``transfer --cv K`` (:func:`transferkit.api.cv.cross_validate`): pure index bookkeeping on the labelled
pool, no models.

* :func:`check_fold_count` / :func:`check_cv` refuse a fold count before any data is read / that the smallest class of
  the pool cannot hold;
* :func:`cv_folds` splits the pool by ``StratifiedKFold(K, shuffle=True, random_state=seed)`` and carves each fold's
  validation part from its *training* part (never its held-out part);
* :func:`fold_positions` maps the folds back to positions in the target task's training split (``folds.json``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from transferkit.errors import ConfigError


@dataclasses.dataclass
class Fold:
    """One fold, as indices into the pool: ``train`` fits, ``val`` early-stops, ``eval`` is held out and scored."""

    train: np.ndarray
    val: np.ndarray
    eval: np.ndarray


def check_fold_count(k: Any) -> None:
    """Raise a :class:`~transferkit.errors.ConfigError` naming ``cv`` unless ``k`` is an integer ≥ 2 (checked
    before any data is read)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ConfigError("cv", "at least 2 folds (an integer)", k)


def check_cv(k: Any, labels: np.ndarray, classes: list[str]) -> None:
    """Raise a :class:`~transferkit.errors.ConfigError` naming ``cv`` unless ``2 ≤ k ≤`` the smallest class count
    of ``labels``."""
    check_fold_count(k)
    counts = np.bincount(labels, minlength=len(classes))
    small = int(np.argmin(counts))
    if k > counts[small]:
        limit = (f"use 2 to {counts[small]} folds" if counts[small] >= 2
                 else "every class needs at least 2 labelled images")
        raise ConfigError("cv", f"at most {counts[small]} folds", k, f"more folds than images in the smallest class "
                          f"of the labelled training set (class '{classes[small]}' has {counts[small]}); {limit}")


def cv_folds(labels: np.ndarray, k: int, seed: int, val_fraction: float = 0.1,
             val_per_class: int | None = None) -> list[Fold]:
    """Stratified K-fold split of ``labels`` (the pool), each fold's training part split again into train and
    validation: ``val_per_class`` images per class, or a stratified ``val_fraction`` of it with at least one
    image per class wherever the class has two or more (every class keeps at least one training image)."""
    labels = np.asarray(labels)
    if val_per_class is None and not 0.0 < val_fraction < 1.0:
        raise ConfigError("val_fraction", "a number strictly between 0 and 1", val_fraction)
    if val_per_class is not None and val_per_class < 0:
        raise ConfigError("val_per_class", "≥ 0", val_per_class)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (fit_idx, eval_idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        rng = np.random.default_rng([seed, i])
        train, val = [], []
        for c in np.unique(labels[fit_idx]):
            pool = rng.permutation(fit_idx[labels[fit_idx] == c])
            if val_per_class is not None:
                n_val = val_per_class
                if n_val > len(pool) - 1:
                    raise ConfigError("val_per_class", f"at most {len(pool) - 1}", val_per_class,
                                      f"fold {i + 1} of cv {k} has only {len(pool)} training images of class {c} "
                                      "(use fewer, or fewer folds)")
            else:
                n_val = min(max(1, int(round(len(pool) * val_fraction))), len(pool) - 1)
            val.append(pool[:n_val])
            train.append(pool[n_val:])
        folds.append(Fold(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), np.sort(eval_idx)))
    present = set(np.unique(labels).tolist())
    for i, f in enumerate(folds):  # a fold without every class must fail loudly, never score silently
        missing = (present - set(labels[f.train].tolist())) | (present - set(labels[f.eval].tolist()))
        if missing:
            raise ConfigError("cv", "at most the smallest class count", k, f"fold {i + 1} lacks class(es) "
                              f"{sorted(missing)} in its training or held-out part; use fewer folds")
    return folds


def fold_positions(pool_idx: np.ndarray, folds: list[Fold]) -> dict[str, Any]:
    """folds.json: the pool and every fold's parts as positions in the target task's training split (``folds``
    index into the pool), so that a fold's images can be found again without rerunning the draw."""
    return {"index_space": "positions in the target task's training split (after --classes)",
            "pool": pool_idx.tolist(),
            "folds": [{"train": pool_idx[f.train].tolist(), "val": pool_idx[f.val].tolist(),
                       "eval": pool_idx[f.eval].tolist()} for f in folds]}
