"""The training subsets of the distill job: its transfer set (labelled budget plus images whose labels the teacher
supplies) and the labelled rows of it. (The per-task rows and label columns of a multi-task label matrix are in
:mod:`transferkit.multi_task.data`, beside the label matrix.)"""

from __future__ import annotations

import numpy as np

from transferkit.data.base import ImageSet
from transferkit.data.prepare import SpecLike, TensorBatches, take_rows
from transferkit.data.splits import labelled_budget_indices
from transferkit.errors import ConfigError


def transfer_set(full: ImageSet, labels_per_class: int | None, val_per_class: int | None, unlabelled: int,
                 val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet, np.ndarray]:
    """(training images incl. hidden-label ones, validation images, labels with ``-1`` where hidden)."""
    if labels_per_class is None and unlabelled:
        raise ConfigError("unlabelled", "0 without labels_per_class", unlabelled, "without labels_per_class every "
                          "training image is labelled and none is left for the teacher to label; give labels_per_class")
    tr, va = labelled_budget_indices(full, labels_per_class, val_per_class, val_fraction, seed)
    extra = np.array([], dtype=np.int64)
    if unlabelled:
        rest = np.setdiff1d(np.arange(len(full)), np.concatenate([tr, va]))
        if unlabelled > len(rest):
            raise ConfigError("unlabelled", f"at most {len(rest)} (the further training images left)", unlabelled)
        extra = np.sort(np.random.default_rng(seed + 31337).choice(rest, unlabelled, replace=False))
    idx = np.concatenate([tr, extra])
    labels = full.labels[idx].astype(np.int64)
    labels[len(tr):] = -1
    return full.subset(idx, full.name + "[transfer set]"), full.subset(va, full.name + "[val]"), labels


def labelled_prefix(data: TensorBatches, labels: np.ndarray, spec: SpecLike) -> TensorBatches:
    """The rows of a transfer set's ``data`` (prepared for input spec ``spec``) that have a label — the first ones:
    :func:`transfer_set` puts the hidden-label rows last — without any extras: the labels-only student's data."""
    n = int((labels >= 0).sum())
    return TensorBatches(take_rows(data.x, slice(0, n)), data.y[:n], spec.mean, spec.std, view=data.view)
