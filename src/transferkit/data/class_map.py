"""Label mapping: rename or merge the target's classes from a user file, and match them to the source's.

A mapping file (YAML or JSON) maps target class names (or indices) to new names::

    Sneaker: running shoe       # rename (now it matches an ImageNet class of the source)
    Ankle boot: footwear        # two classes mapped to one name are merged
    Sandal: footwear

Classes the file does not mention keep their names. :func:`match_classes` then pairs target classes with
source classes of the same name (case, ``_``/``-`` and synonyms after commas ignored), which is what lets a
new head start from the source head's rows for shared classes (:func:`transferkit.engine.train`'s
``head_init``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from transferkit.config import read_structured_file
from transferkit.data.base import AnyDataset
from transferkit.errors import ConfigError

__all__ = ["apply_class_map", "class_map_of", "load_class_map", "match_classes", "normalise_name"]


def load_class_map(path: str | Path) -> dict[str, str]:
    """Read a ``{target class: new name}`` mapping from a YAML/JSON file; errors name the file and the entry."""
    p = Path(path).expanduser()
    data = read_structured_file(p, "--class-map")
    if not isinstance(data, dict) or not data:
        raise ConfigError("class_map", "a non-empty mapping 'target class: new name', e.g. 'Sneaker: running shoe'",
                          str(p))
    out: dict[str, str] = {}
    for k, v in data.items():
        if v is None or (isinstance(v, str) and not v.strip()) or isinstance(v, (dict, list)):
            raise ConfigError("class_map", f"a new class name for entry '{k}'", v, f"in {p}")
        out[str(k)] = str(v).strip()
    return out


def class_map_of(value: str | Path | Mapping[str, str] | None) -> dict[str, str] | None:
    """A job's ``class_map`` option as a mapping: a YAML/JSON file is read (:func:`load_class_map`), a mapping
    copied, nothing stays ``None``."""
    if not value:
        return None
    return load_class_map(value) if isinstance(value, (str, Path)) else dict(value)


def apply_class_map(ds: AnyDataset, mapping: Mapping[str, str], source: str = "--class-map") -> AnyDataset:
    """``ds`` with its classes renamed/merged by ``mapping`` (keys: class names, or indices as text).

    The new classes keep the order of their first original class; merged classes share a label. A key that
    names no class is an error listing the valid names.
    """
    index = {name: i for i, name in enumerate(ds.classes)}
    renamed = list(ds.classes)
    for key, new in mapping.items():
        i = index.get(key)
        if i is None and key.strip().isdigit() and int(key) < len(ds.classes):
            i = int(key)
        if i is None:
            raise ValueError(f"{source}: '{key}' is not a class of {ds.name}; valid names: "
                             f"{', '.join(ds.classes)} (or indices 0-{len(ds.classes) - 1})")
        renamed[i] = new
    new_classes: list[str] = []
    for name in renamed:
        if name not in new_classes:
            new_classes.append(name)
    lookup = np.array([new_classes.index(n) for n in renamed], dtype=np.int64)
    return ds.relabelled(lookup[ds.labels], new_classes, ds.name + "[mapped]")


def normalise_name(name: str) -> str:
    """``"Ankle_boot"`` → ``"ankle boot"``: lower case, ``_``/``-`` as spaces, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name).lower())).strip()


def match_classes(target: Sequence[str], source: Sequence[str]) -> dict[int, int]:
    """``{target index: source index}`` for target classes whose name equals a source class name or one of its
    comma-separated synonyms (``"jersey, T-shirt, tee shirt"``), after :func:`normalise_name`. The first
    matching source class wins."""
    names: dict[str, int] = {}
    for j, s in enumerate(source):
        for syn in [str(s), *str(s).split(",")]:
            names.setdefault(normalise_name(syn), j)
    return {i: names[normalise_name(t)] for i, t in enumerate(target) if normalise_name(t) in names}
