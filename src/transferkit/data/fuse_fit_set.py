"""The fit set of ``transferkit fuse``: the labelled images its weights, stacker, gate and greedy soup are fitted on.

Index bookkeeping only: a member's training and validation images are rebuilt from its lineage (the same seeded
draw as :func:`~transferkit.data.splits.labelled_budget_indices`), so that the fit set can exclude them — or, with
``fit_on="validation"``, be the members' shared validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.base import ImageSet
from transferkit.data.splits import k_per_class, labelled_budget_indices, parse_classes


def _member_split(full: ImageSet, lineage: dict[str, Any] | None, data: str,
                  classes: list[int] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(training, validation)`` indices of the training split a member used, rebuilt from its lineage (the same
    draw as :func:`~transferkit.data.splits.labelled_budget_indices`); empty when it trained on other data,
    ``None`` when it cannot be rebuilt (trained on the whole split, or no lineage)."""
    lin = lineage or {}
    if lin.get("data") != data or parse_classes(lin.get("classes")) != classes:
        if lin.get("data") not in (None, data):
            return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
        return None
    k = lin.get("labels_per_class")
    if k is None:
        return None  # trained on the whole split (minus a validation share): cannot be excluded
    v = lin.get("val_per_class")
    if v is None and "labels_rule" not in lin:  # a member trained before issue 26: no V then meant V = K
        v = k
    return labelled_budget_indices(full, k, v, float(lin.get("val_fraction") or 0.1), int(lin.get("seed", 0)))


def fit_set_indices(full: ImageSet, metas: Sequence[dict[str, Any]], members: Sequence[str | Path], data: str,
                     classes: list[int] | None, fit_on: str, fit_per_class: int,
                     seed: int) -> tuple[np.ndarray, list[str]]:
    """The fit set's indices and the members whose images could not be excluded (see
    :func:`transferkit.api.fuse_job.fuse`)."""
    splits = [_member_split(full, meta.get("lineage"), data, classes) for meta in metas]
    unknown = [str(members[i]) for i, sp in enumerate(splits) if sp is None]
    if fit_on == "validation":
        if unknown:
            raise ValueError(f"fit_on=validation: the validation images of {', '.join(unknown)} cannot be rebuilt "
                             "from their lineage (trained on another dataset or the whole split); use "
                             "fit_on=held_out")
        vals = [np.sort(sp[1]) for sp in splits]
        if any(len(v) == 0 for v in vals) or any(not np.array_equal(vals[0], v) for v in vals[1:]):
            raise ValueError("fit_on=validation needs members with one shared validation split (same data, "
                             "classes, labels per class, validation size and seed); these members differ — use "
                             "fit_on=held_out")
        trained = np.concatenate([sp[0] for sp in splits])
        return np.setdiff1d(vals[0], trained), []
    exclude = np.unique(np.concatenate([np.concatenate(sp) for sp in splits if sp is not None]
                                       or [np.array([], np.int64)]))
    return k_per_class(full, fit_per_class, seed + 424242, exclude=exclude.astype(np.int64),
                       option="fit_per_class"), unknown
