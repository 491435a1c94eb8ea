"""The regulariser interface and registry.

A regulariser is an ``nn.Module`` loss term with the engine's loss-term signature
``term(model, x, y, logits) -> scalar``, so a strategy can put it in :attr:`TrainingPlan.loss_terms` and
the engine adds it to the cross-entropy without knowing what it is. Before training the strategy calls
:meth:`Regularizer.attach` once with the model about to train and the source it was copied from (the
regulariser copies what it needs: starting weights, a frozen source network, forward hooks); after
training :meth:`Regularizer.detach` removes any hooks so the finished model is a plain model again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from transferkit.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]


class Regularizer(nn.Module):
    """Base class: ``attach`` once before training, then call as ``term(model, x, y, logits) -> scalar``.

    Subclasses set ``name`` and implement :meth:`forward`; those that read activations register forward
    hooks in :meth:`attach` through :meth:`_hook` so that :meth:`detach` can remove them.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # as `transferkit list regularizers` shows it
    #: how a strategy's ``reg_<key>`` options map to this class's coefficients (``reg_alpha`` → ``eta`` for BSS)
    strategy_options: ClassVar[dict[str, str]] = {}
    #: whether the method replaces the optimiser's weight decay (L2-SP, DELTA: the papers train without it)
    replaces_weight_decay: ClassVar[bool] = False
    #: whether :meth:`attach` needs a labelled sample of the training set
    needs_data: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self, model: nn.Module, source: nn.Module | None = None, data: Batch | None = None) -> Regularizer:
        """Prepare for training ``model``, which starts from ``source`` (default: ``model`` as it is now).

        ``data`` is a labelled sample ``(x, y)`` of the target training set for methods that calibrate on
        it (DELTA's channel attention); the others ignore it. Returns ``self``.
        """
        return self

    def detach(self) -> None:
        """Remove the forward hooks :meth:`attach` registered (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self._handles.append(handle)

    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The penalty (a scalar tensor) for the batch ``x`` ``(B, …)`` with labels ``y`` ``(B,)`` and ``logits``
        ``(B, C)`` that ``model`` just produced."""
        raise NotImplementedError


def head_prefix(model: nn.Module, head: str) -> str:
    """``"<head>."``, checked: ``model`` must have a submodule called ``head`` (the new classifier)."""
    if not isinstance(getattr(model, head, None), nn.Module):
        raise ValueError(f"the model has no '{head}' submodule; regularisers need the classifier's attribute name")
    return head + "."


def coefficient(owner: str, name: str, value: object) -> float:
    """``value`` as a float ``≥ 0``; anything else is a ``ValueError`` naming ``owner`` and ``name``."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not out >= 0:
        raise ValueError(f"{owner}: {name} must be a number ≥ 0, got {value!r}")
    return out


def squared_norm(tensors: list[torch.Tensor], device: torch.device | None = None) -> torch.Tensor:
    """``Σ ||t||²`` over ``tensors`` (a zero scalar on ``device`` when empty)."""
    if not tensors:
        return torch.zeros((), device=device)
    return torch.stack([t.pow(2).sum() for t in tensors]).sum()


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizers", "regularizer")


def register_regularizer(cls: type[Regularizer]) -> type[Regularizer]:
    """Class decorator: make ``cls`` available to :func:`get_regularizer` by its ``name``."""
    return REGULARIZERS.register()(cls)


def list_regularizers() -> list[str]:
    return REGULARIZERS.names()


def regularizer_class(name: str) -> type[Regularizer]:
    """The class registered as ``name``; an unknown name lists the valid ones."""
    return REGULARIZERS.get(name)


def coefficient_names(name: str) -> list[str]:
    """The keyword arguments regulariser ``name`` accepts."""
    return [p for p in inspect.signature(regularizer_class(name).__init__).parameters if p != "self"]


def get_regularizer(name: str, **coeffs: object) -> Regularizer:
    """Regulariser ``name`` (``l2sp``, ``delta``, ``bss``) with its coefficients; unknown names or coefficients
    are errors that list the valid ones. ``None`` coefficients take the method's default."""
    cls = regularizer_class(name)
    valid = coefficient_names(name)
    unknown = sorted(set(coeffs) - set(valid))
    if unknown:
        raise ValueError(f"regularizer '{name}' has no coefficient(s) {unknown}; valid: {', '.join(valid)}")
    factory: Callable[..., Regularizer] = cls
    return factory(**{k: v for k, v in coeffs.items() if v is not None})
