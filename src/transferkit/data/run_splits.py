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
from transferkit.data.splits import k_per_class, labelled_budget_indices, labelled_budget_split


def job_split(
    full: AnyDataset, labels_per_class: int | None, val_per_class: int | None, val_fraction: float, seed: int,
    split_indices: tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray] | None = None,
) -> tuple[AnyDataset, AnyDataset, np.ndarray | None]:
    """``(training set, validation set, given training positions)`` of a training job on the training split ``full``.

    ``split_indices=(train, validation)`` — positions in ``full`` chosen by a calling job (``auto``'s inner split of
    its K labels) — is used as given, and its training positions are returned as the third item (``None`` otherwise),
    since the run's ``labels`` record lists them; without it, the seeded labelled-budget draw of
    :func:`~transferkit.data.splits.labelled_budget_split`."""
    if split_indices is not None:
        tr_given, va_given = (np.asarray(i, dtype=np.int64) for i in split_indices)
        train_set = full.subset(tr_given, f"{full.name}[inner fit]")
        return train_set, full.subset(va_given, f"{full.name}[inner selection]"), tr_given
    train_set, val_set = labelled_budget_split(full, labels_per_class, val_per_class, val_fraction, seed)
    return train_set, val_set, None


def final_train_indices(
    full: AnyDataset, labels_per_class: int | None, val_per_class: int | None, val_fraction: float, seed: int,
    given: np.ndarray | None = None,
) -> np.ndarray | None:
    """Positions in ``full`` of the examples that trained a job's final model, for its ``labels`` record: ``given``
    (from :func:`job_split`) when a calling job chose them, else — with a labelled budget — the same seeded draw as
    :func:`job_split`'s training set; ``None`` for the whole training split (not listed)."""
    if given is not None:
        return given
    if labels_per_class is None:
        return None
    return labelled_budget_indices(full, labels_per_class, val_per_class, val_fraction, seed)[0]


def labelled_pool(full: AnyDataset, labels_per_class: int | None, seed: int) -> tuple[np.ndarray, Any]:
    """``(positions, subset)`` of the labelled pool that ``transfer --cv`` splits into folds: the seeded
    ``labels_per_class`` images per class of :func:`~transferkit.data.splits.k_per_class` (the labelled budget), or
    the whole training split ``full``."""
    pool_idx = k_per_class(full, labels_per_class, seed) if labels_per_class is not None else np.arange(len(full))
    return pool_idx, full.subset(pool_idx, f"{full.name}[{labels_per_class or 'all'}/class]")
