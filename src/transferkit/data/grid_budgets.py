"""The labelled budgets of a ``compare`` / ``curve`` grid (:func:`transferkit.api.grid_job.run_grid_job`): every
budget is checked against the training split before the first cell trains, so that a grid never fails half-way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transferkit.errors import ConfigError


def check_budgets(full: Any, budgets: Sequence[int | None], val_per_class: int | None) -> None:
    """Refuse, before the first cell trains, a budget the smallest class of ``full`` cannot hold: ``k`` labels per
    class, plus ``val_per_class`` for a separate validation set when given (none by default: K is the budget)."""
    counts = full.class_counts()
    small = int(counts.argmin())
    for k in (k for k in budgets if k is not None):
        need = k + (val_per_class or 0)
        if counts[small] < need:
            parts = (f"{k} to train, {need - k} for validation" if need > k else "K is the whole budget")
            raise ConfigError("labels_per_class", f"budgets of at most {int(counts[small]) - (need - k)} per class",
                              k, f"needs {need} training-split images per class ({parts}) but class "
                              f"'{full.classes[small]}' of {full.name} has {counts[small]}; drop {k}"
                              + (" or lower val_per_class" if need > k else ""))
