"""Start a new head from the source head's rows for the classes both tasks share.

When a target class is also a source class (ImageNet's "sandal" and Fashion-MNIST's "Sandal"), the source
classifier already holds a weight vector for it on the same features; copying that row (and bias) into the
new head gives the class a trained starting point instead of a random one — the "use the label overlap"
trick of You et al., 2020, "Co-Tuning for Transfer Learning" in its simplest, exact-match form. Rows of
classes without a match keep their random initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def _linear(module: nn.Module | None) -> nn.Linear | None:
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Sequential):  # an MLP head: its last layer holds the class rows
        last = [m for m in module if isinstance(m, nn.Linear)]
        return last[-1] if last else None
    return None


def init_head_rows(head: nn.Module | None, source_head: nn.Module | None, mapping: Mapping[int, int],
                   source_classes: list[str] | None = None, target_classes: list[str] | None = None,
                   ) -> dict[str, Any]:
    """Copy ``source_head``'s row ``j`` (weight and bias) into ``head``'s row ``i`` for every ``i → j`` in
    ``mapping``; return a report ``{"applied", "matched", "reason"}``.

    Nothing is copied (``applied`` false, with the reason) when either head is not a linear layer or their
    input widths differ (e.g. a linear probe on an earlier layer than the source head's).
    """
    report: dict[str, Any] = {"applied": False, "matched": {}, "reason": ""}
    if not mapping:
        report["reason"] = "no target class shares a name with a source class"
        return report
    names = {int(i): (target_classes[i] if target_classes else str(i),
                      source_classes[j] if source_classes else str(j)) for i, j in mapping.items()}
    report["matched"] = {t: s for t, s in names.values()}
    new, old = _linear(head), _linear(source_head)
    if new is None or old is None:
        report["reason"] = "the new or the source head is not a linear classifier"
        return report
    if new.in_features != old.in_features:
        report["reason"] = (f"the heads read different features ({new.in_features} vs the source's "
                            f"{old.in_features})")
        return report
    bad = [(i, j) for i, j in mapping.items() if not (0 <= i < new.out_features and 0 <= j < old.out_features)]
    if bad:
        raise ValueError(f"head init: class index pairs {bad} lie outside the heads "
                         f"({new.out_features} target, {old.out_features} source classes)")
    with torch.no_grad():
        for i, j in mapping.items():
            new.weight[i].copy_(old.weight[j])
            if new.bias is not None and old.bias is not None:
                new.bias[i].copy_(old.bias[j])
    report["applied"] = True
    return report
