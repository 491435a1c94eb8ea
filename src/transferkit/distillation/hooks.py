"""Reading intermediate outputs of a model by module name, for feature-based distillation.

FitNets-style hints (Romero et al., ICLR 2015) match a student's intermediate layer to a teacher's; these helpers
expose such a layer without changing the model's code: :class:`FeatureTap` keeps the latest output of a module
named as in ``model.named_modules()`` (for a :class:`~transferkit.backbones.base.Backbone`, e.g.
``"stages.conv2"``), and :func:`probe_shape` tells that output's shape so that a
:class:`~transferkit.distillation.losses.HintLoss` can be built before training starts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_MAX_LISTED = 20


def module_names(model: nn.Module) -> list[str]:
    """Dotted names of all submodules of ``model`` in definition order (the root, named ``""``, left out)."""
    return [name for name, _ in model.named_modules() if name]


def _find(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = [n for n in names if name.lower() in n.lower()] if name else []
    shown = (close or names)[:_MAX_LISTED]
    more = len(close or names) - len(shown)
    kind = "modules containing it" if close else "valid module names"
    listing = ", ".join(shown) + (f", … ({more} more)" if more > 0 else "") if shown else "(none)"
    raise ValueError(f"no module named '{name}' in {type(model).__name__}; {kind}: {listing}")


class FeatureTap:
    """A forward hook on the module ``name`` of ``model`` keeping its latest output in :attr:`output`.

    The hook is registered on construction and removed by :meth:`remove` or on leaving a ``with`` block. The
    output is stored as the module returned it (not detached), so a loss on it trains the tapped network::

        with FeatureTap(student, "stages.conv2") as tap:
            logits = student(x)
            loss = hint(tap.output, teacher_features)

    Raises ``ValueError`` for an unknown name, listing up to 20 module names that contain it (or, if none do,
    the first 20 names).
    """

    def __init__(self, model: nn.Module, name: str) -> None:
        self.name = name
        self.module = _find(model, name)
        self.output: Any = None
        self._handle: torch.utils.hooks.RemovableHandle | None = self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self.output = output

    def remove(self) -> None:
        """Remove the hook (idempotent); :attr:`output` keeps the last value seen."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self._handle is not None else "removed"
        return f"FeatureTap(name={self.name!r}, module={type(self.module).__name__}, {state})"


def probe_shape(model: nn.Module, name: str, example_input: torch.Tensor) -> tuple[int, ...]:
    """Shape (without the batch dimension) of module ``name``'s output for ``example_input`` (a batch).

    Runs one forward pass in eval mode under ``torch.no_grad()`` (no BatchNorm statistics updated, no dropout),
    then restores every submodule's own training flag (so layers deliberately left in eval mode stay so).
    """
    modes = {m: m.training for m in model.modules()}
    tap = FeatureTap(model, name)
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        tap.remove()
        for m, training in modes.items():
            m.training = training
    out = tap.output
    if out is None:
        raise RuntimeError(f"module '{name}' was not called in the forward pass of {type(model).__name__}")
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"module '{name}' returned {type(out).__name__}, not a tensor; tap a module whose output "
                        f"is a single tensor")
    return tuple(out.shape[1:])
