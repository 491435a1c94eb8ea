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
    "bundle-formats": "transferkit.backbones.formats",
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
    module = importlib.import_module(FAMILY_MODULES[family])
    if hasattr(module, "load_entry_points"):  # a family that installed packages extend (bundle formats)
        module.load_entry_points()
    return FAMILIES[family]


def families() -> dict[str, int]:
    """Every family ``list`` knows and how many entries it holds."""
    return {name: len(get_family(name)) for name in family_names()}


def list_family(family: str) -> list[dict[str, Any]]:
    """The entries of ``family`` as rows: ``name``, ``aliases``, ``summary``, ``paper`` and ``file``."""
    return [{"name": e.name, "aliases": list(e.aliases), "summary": e.summary, "paper": e.paper, "file": e.where}
            for e in get_family(family).entries()]


# -- the richer listings of `transferkit datasets | backbones | strategies` and `adapt --list-methods` -----------
def dataset_rows() -> list[dict[str, Any]]:
    """Every dataset: ``usage`` (``name`` or ``name:PATH``), ``splits``, ``description``."""
    from transferkit.data import list_datasets

    return [{"usage": i.usage, "splits": list(i.splits), "description": i.description} for i in list_datasets()]


def backbone_rows() -> list[dict[str, Any]]:
    """Every built-in backbone, built once with random weights to measure it: ``name``, ``parameters``,
    ``feature_dim``, ``input`` (what it reads), ``weights`` (whether pretrained weights are here), ``description``."""
    from transferkit.backbones import create_backbone, list_backbones

    rows = []
    for info in list_backbones():
        model = create_backbone(info.name, pretrained=False)
        spec = model.input_spec
        size = (f"text, ≤{spec.extra.get('max_length')} tokens" if spec.modality == "text"
                else f"{spec.channels}×{spec.size[0]}×{spec.size[1]}" if spec.size else f"{spec.channels}×any")
        rows.append({"name": info.name, "parameters": model.num_parameters(), "feature_dim": model.feature_dim,
                     "input": size, "weights": info.weights_available(), "description": info.description})
    return rows


def backbone_family_rows() -> list[dict[str, str]]:
    """The ``family:NAME`` backbones (``timm:``, ``torchvision:``, ``hf:``): ``prefix``, ``description``."""
    from transferkit.backbones import list_backbone_families

    return [{"prefix": f.prefix, "description": f.description} for f in list_backbone_families()]


def strategy_rows() -> list[dict[str, Any]]:
    """Every strategy: ``name``, ``aliases``, ``kind`` (of transfer), ``options``."""
    from transferkit.strategies import list_strategies

    return [{"name": c.name, "aliases": list(c.aliases), "kind": c.kind, "options": list(c.option_defaults)}
            for c in list_strategies()]


def adaptation_method_rows() -> list[dict[str, Any]]:
    """Every domain-adaptation method: ``name``, ``summary``, ``options`` (with defaults), ``paper``."""
    from transferkit.adaptation import list_methods

    return [{"name": c.name, "summary": c.summary, "options": dict(c.option_defaults), "paper": c.paper}
            for c in list_methods()]


def show(what: str, console: Any, family: str | None = None) -> None:
    """Print a listing on ``console``: ``list`` (the families, or ``family``'s entries with papers and files),
    ``datasets``, ``backbones`` (and the ``family:NAME`` prefixes), ``strategies`` or ``adaptation-methods``."""
    from transferkit.report import listing as tables

    if what == "list":
        console.print(tables.family_table(family, list_family(family)) if family else
                      tables.families_table(families()))
    elif what == "datasets":
        console.print(tables.datasets_table(dataset_rows()))
    elif what == "backbones":
        console.print(tables.backbones_table(backbone_rows()))
        for row in backbone_family_rows():
            console.print(f"  {row['prefix']}:<name>  {row['description']}")
    elif what == "strategies":
        console.print(tables.strategies_table(strategy_rows()))
    elif what == "adaptation-methods":
        console.print(tables.adaptation_methods_table(adaptation_method_rows()))
    else:
        valid = ["list", "datasets", "backbones", "strategies", "adaptation-methods"]
        raise UnknownNameError(f"unknown listing '{what}'; valid: {', '.join(valid)}", "listing", what, valid)
