"""``list``: what every pluggable family holds — name, aliases, summary, paper and file — from the one
:class:`~transferkit.registry.Registry` each family keeps. The command line's listings go through here.

A family's registry is created when the module that defines the family is imported; :data:`FAMILY_MODULES` says
which one, so a listing loads one family, not all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

from transferkit.registry import FAMILIES, Registry, UnknownNameError

# family (as `transferkit list` takes it) → the module whose import creates its registry
FAMILY_MODULES: dict[str, str] = {
    "datasets": "transferkit.data",
    "backbones": "transferkit.backbones",
    "backbone-families": "transferkit.backbones",
    "strategies": "transferkit.strategies",
    "regularizers": "transferkit.regularizers",
    "adaptation-methods": "transferkit.adaptation.methods",
    "selection-criteria": "transferkit.adaptation.selection",
    "fusion-methods": "transferkit.fusion.methods",
    "few-shot-methods": "transferkit.few_shot.methods",
    "transferability-scores": "transferkit.transferability.scores",
    "similarity-measures": "transferkit.transferability.similarity",
}


def family_names() -> list[str]:
    """Every family ``list`` knows."""
    return sorted(FAMILY_MODULES)


def get_family(family: str) -> Registry[Any]:
    """The registry of ``family`` (``"strategies"``, ``"fusion-methods"``, …), its module imported on demand; an
    unknown family lists the valid ones."""
    if family not in FAMILY_MODULES:
        raise UnknownNameError(f"unknown family '{family}'; valid families: {', '.join(family_names())}",
                               "families", family, family_names())
    importlib.import_module(FAMILY_MODULES[family])
    return FAMILIES[family]


def families() -> dict[str, int]:
    """Every family ``list`` knows and how many entries it holds."""
    return {name: len(get_family(name)) for name in family_names()}


def list_family(family: str) -> list[dict[str, Any]]:
    """The entries of ``family`` as rows: ``name``, ``aliases``, ``summary``, ``paper`` and ``file``."""
    return [{"name": e.name, "aliases": list(e.aliases), "summary": e.summary, "paper": e.paper, "file": e.where}
            for e in get_family(family).entries()]
