"""Discriminative learning rates: one learning rate per parameter group of a backbone.

Howard & Ruder, 2018, "Universal Language Model Fine-tuning for Text Classification" (ULMFiT): the early
groups hold general features that need little change, the late ones task-specific features, so each
earlier group trains at a lower rate (ULMFiT divides by 2.6 per layer; fastai's ``slice(lo, hi)`` spreads
rates the same way). TLlib's ``get_parameters(base_lr)`` gives the backbone 0.1× the head's rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transferkit.backbones.base import Backbone


def parse_group_lrs(value: str | Mapping[str, float], option: str = "group_lrs") -> dict[str, float]:
    """``"conv1=1e-4,head=1e-2"`` or a mapping → ``{"conv1": 1e-4, "head": 1e-2}``, every rate positive."""
    if isinstance(value, str):
        out: dict[str, float] = {}
        for item in (s.strip() for s in value.split(",")):
            if not item:
                continue
            name, sep, rate = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"{option}: expected 'group=rate' items separated by commas, got '{item}'")
            try:
                out[name.strip()] = float(rate)
            except ValueError:
                raise ValueError(f"{option}: rate '{rate}' of group '{name.strip()}' is not a number") from None
    elif isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{option}: rate of group '{k}' must be a number, got {v!r}")
            out[str(k)] = float(v)
    else:
        raise ValueError(f"{option}: expected a mapping {{group: rate}} or 'group=rate,…', got {value!r}")
    bad = {k: v for k, v in out.items() if not v > 0}
    if bad:
        raise ValueError(f"{option}: learning rates must be positive (freeze a group instead of rate 0), got {bad}")
    if not out:
        raise ValueError(f"{option}: no group=rate given")
    return out


def param_group_lrs(model: Backbone, base_lr: float, decay: float | None = None,
                    rates: Mapping[str, float] | str | None = None) -> list[dict[str, Any]]:
    """Optimiser parameter groups ``[{"params", "lr", "name"}]``, one per :meth:`Backbone.param_groups` group.

    Parameters
    ----------
    model:
        The backbone about to train; frozen parameters (``requires_grad=False``) are left out, and a group
        with no trainable parameter is dropped.
    base_lr:
        The head's learning rate.
    decay:
        Layer-wise factor: the head gets ``base_lr``, the group before it ``base_lr·decay``, the one before
        that ``base_lr·decay²``, … (``None``: every group at ``base_lr``). Must be positive.
    rates:
        Explicit learning rates by group name (``{"conv1": 1e-5}`` or ``"conv1=1e-5"``); they override the
        decayed rate of the groups they name. Unknown or fully frozen group names are errors listing the
        valid ones.

    Trainable parameters outside every group (none in the built-in backbones) form a last group ``other``
    at ``base_lr``.
    """
    if not base_lr > 0:
        raise ValueError(f"base learning rate must be positive, got {base_lr}")
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0):
        raise ValueError(f"lr_decay must be a positive number (e.g. 0.5: each earlier group at half the rate), "
                         f"got {decay!r}")
    groups = model.param_groups()
    names = [g.name for g in groups]
    explicit = parse_group_lrs(rates) if rates is not None else {}
    unknown = [n for n in explicit if n not in names]
    if unknown:
        raise ValueError(f"group_lrs: unknown group(s) {unknown}; valid groups of {model.arch}: {', '.join(names)}")
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, g in enumerate(groups):
        seen.update(id(p) for p in g.params)
        params = [p for p in g.params if p.requires_grad]
        if not params:
            if g.name in explicit:
                raise ValueError(f"group_lrs: group '{g.name}' is frozen; give rates only to trainable groups "
                                 f"({', '.join(h.name for h in groups if any(p.requires_grad for p in h.params))})")
            continue
        lr = explicit.get(g.name, base_lr * (decay ** (len(groups) - 1 - i) if decay is not None else 1.0))
        out.append({"params": params, "lr": float(lr), "name": g.name})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        out.append({"params": rest, "lr": float(base_lr), "name": "other"})
    return out
