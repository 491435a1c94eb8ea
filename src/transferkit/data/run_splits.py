"""Which labelled examples a training job uses: the split of ``transfer``/``pretrain`` (the seeded labelled budget, or
a split given by a calling job) and the labelled pool of ``transfer --cv``.

Thin wrappers over :mod:`transferkit.data.splits`, so that the jobs in :mod:`transferkit.api` only say *which* draw
they make; every draw is the same seeded one those helpers make (same seed ⇒ same examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.data.base import AnyDataset
from transferkit.data.splits import budget_subsets, k_per_class, labelled_budget_indices


def job_split(
    full: AnyDataset, labels_per_class: int | None, val_per_class: int | None, val_fraction: float, seed: int,
    split_indices: tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray] | None = None,
) -> tuple[AnyDataset, AnyDataset, np.ndarray | None, bool]:
    """``(training set, validation set, training positions, given)`` of a training job on the training split ``full``.

    ``split_indices=(train, validation)`` — positions in ``full`` chosen by a calling job (``auto``'s inner split of
    its K labels) — is used as given (``given`` true); without it, the seeded labelled-budget draw of
    :func:`~transferkit.data.splits.labelled_budget_split`. The training positions — the examples that train the
    final model, which the run's ``labels`` record lists — come from that one draw; ``None`` for the whole training
    split (no labelled budget: not listed)."""
    if split_indices is not None:
        tr_given, va_given = (np.asarray(i, dtype=np.int64) for i in split_indices)
        train_set = full.subset(tr_given, f"{full.name}[inner fit]")
        return train_set, full.subset(va_given, f"{full.name}[inner selection]"), tr_given, True
    tr, va = labelled_budget_indices(full, labels_per_class, val_per_class, val_fraction, seed)
    train_set, val_set = budget_subsets(full, tr, va, labels_per_class, val_per_class)
    return train_set, val_set, (tr if labels_per_class is not None else None), False


def labelled_pool(full: AnyDataset, labels_per_class: int | None, seed: int) -> tuple[np.ndarray, Any]:
    """``(positions, subset)`` of the labelled pool that ``transfer --cv`` splits into folds: the seeded
    ``labels_per_class`` images per class of :func:`~transferkit.data.splits.k_per_class` (the labelled budget), or
    the whole training split ``full``."""
    pool_idx = k_per_class(full, labels_per_class, seed) if labels_per_class is not None else np.arange(len(full))
    return pool_idx, full.subset(pool_idx, f"{full.name}[{labels_per_class or 'all'}/class]")
