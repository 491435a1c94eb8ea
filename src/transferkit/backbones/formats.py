"""Bundle formats: how a model that is more than a registered architecture goes into a bundle and comes back.

A plain model is saved as its ``state_dict`` plus :meth:`~transferkit.backbones.base.Backbone.config`, and
rebuilt by :func:`~transferkit.backbones.registry.build_from_config`. Some models are more than that: a LoRA
model is stored as its adapters only and rebuilt on its source; a fused ensemble is built from its members'
configs by a class of its own. Such a kind of model *registers its own* :class:`BundleFormat` — its own save,
check, load and merge — so that :mod:`transferkit.bundle` (which reads and writes the files and checks them as
untrusted input) knows no internals of any of them, and a new kind of model needs no change there.

Which format a model or a bundle uses is a **name**: the adapter's ``type`` for models carrying an ``adapter``
(``"lora"``), otherwise the architecture's ``arch`` when a format of that name exists (``"fused"``). Formats are
found in this process's registry (:func:`register_bundle_format`, e.g. from a test or a plug-in) and then among
the installed packages' entry points in the group ``transferkit.bundle_formats`` — the standard Python plug-in
mechanism (``importlib.metadata``); transferkit declares its own two there (``pyproject.toml``), so a format's
module is imported only when a bundle of that kind is read or written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch

from transferkit.backbones.base import Backbone
from transferkit.registry import Registry, source_file

ENTRY_POINT_GROUP = "transferkit.bundle_formats"


class LoadContext(Protocol):
    """What :mod:`transferkit.bundle` offers a format while it loads one bundle (the checks stay there)."""

    path: Path
    """The bundle directory being loaded."""

    def error(self, message: str) -> Exception:
        """The exception to raise for a problem with this bundle (a ``BundleError``)."""

    def build(self, builder: Callable[[dict[str, Any]], Backbone]) -> Backbone:
        """Build ``meta["architecture"]`` with ``builder`` (first on the meta device, to compare its tensors with
        the weights file before allocating anything) and load the bundle's weights into it, checked."""

    def load_source(self, source: str) -> Backbone | None:
        """The model of the bundle (or run directory) ``source``, loaded and checked like this one — or ``None``
        when ``source`` is not a bundle. Chains of sources are bounded (a loop is refused)."""

    def check_weights(self, expected: dict[str, torch.Tensor], what: str = "weights") -> None:
        """The weights file must hold exactly these tensors' names, dtypes and shapes (finite floats)."""

    def read_weights(self) -> dict[str, torch.Tensor]:
        """Every tensor of the weights file (after :meth:`check_weights`)."""


@dataclass(frozen=True)
class BundleFormat:
    """One kind of model's bundle hooks; each is optional (``None``: the plain behaviour).

    * ``validate(meta)`` — check this kind's fields of ``transferkit.json`` before anything is built; raise
      ``ValueError`` naming the field;
    * ``state(model) -> (tensors, meta)`` — what to write: the tensors (e.g. only the adapters) and the fields to
      add to ``transferkit.json`` (e.g. ``{"adapter": …}``);
    * ``load(meta, context) -> model`` — rebuild the model (weights loaded) from a validated ``meta``;
    * ``merge(model) -> model`` — the same function as a plain network (for export and ``transferkit merge``).
    """

    name: str
    summary: str
    validate: Callable[[dict[str, Any]], None] | None = None
    state: Callable[[Backbone], tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None
    load: Callable[[dict[str, Any], LoadContext], Backbone] | None = None
    merge: Callable[[Backbone], Backbone] | None = None


BUNDLE_FORMATS: Registry[BundleFormat] = Registry("bundle-formats", "bundle format")
"""Formats registered in this process (entry points are added here when first looked up)."""


def register_bundle_format(fmt: BundleFormat, *, paper: str | None = None) -> BundleFormat:
    """Make ``fmt`` known under ``fmt.name`` in this process (a plug-in may instead declare an entry point in
    the group ``transferkit.bundle_formats``); returns ``fmt``."""
    if fmt.name not in BUNDLE_FORMATS:
        hook = next((h for h in (fmt.load, fmt.state, fmt.validate, fmt.merge) if h is not None), None)
        BUNDLE_FORMATS.add(fmt.name, fmt, summary=fmt.summary, paper=paper or "",
                           where=source_file(hook) if hook is not None else "")
    return fmt


@cache
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def bundle_format(name: str) -> BundleFormat | None:
    """The format called ``name``, or ``None`` when neither this process nor an installed package declares one."""
    if name in BUNDLE_FORMATS:
        return BUNDLE_FORMATS.get(name)
    ep = _entry_points().get(name)
    if ep is None:
        return None
    fmt = ep.load()
    if not isinstance(fmt, BundleFormat) or fmt.name != name:
        raise TypeError(f"entry point '{name}' in {ENTRY_POINT_GROUP} ({ep.value}) is not a BundleFormat "
                        f"named '{name}'")
    return register_bundle_format(fmt)


def load_entry_points() -> None:
    """Register every format an installed package declares (``transferkit list bundle-formats`` shows them all)."""
    for name in _entry_points():
        bundle_format(name)


def known_formats() -> list[str]:
    """Every format name this process can find (registered or declared by an installed package)."""
    return sorted({*BUNDLE_FORMATS.names(), *_entry_points()})


def format_name(model_or_meta: Backbone | dict[str, Any]) -> str | None:
    """The format a model (or a bundle's ``transferkit.json``) uses by name: its adapter's ``type`` when it has an
    adapter, else its architecture's ``arch``; ``None`` when there is neither."""
    if isinstance(model_or_meta, dict):
        adapter = model_or_meta.get("adapter")
        arch = (model_or_meta.get("architecture") or {}).get("arch")
    else:
        adapter = getattr(model_or_meta, "adapter", None)
        arch = getattr(model_or_meta, "arch", None)
    if adapter:
        return str(adapter.get("type", "lora")) if isinstance(adapter, dict) else None
    return str(arch) if isinstance(arch, str) else None


def format_of(model_or_meta: Backbone | dict[str, Any]) -> BundleFormat | None:
    """The registered format of a model or a bundle's ``transferkit.json``; ``None`` for a plain model."""
    name = format_name(model_or_meta)
    return bundle_format(name) if name else None
