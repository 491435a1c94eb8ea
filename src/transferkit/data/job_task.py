"""The task a job trains or scores on: a dataset's split restricted to the chosen classes (and renamed by a class
map), and the checks of that data against the job and the source's metadata — no model is needed for any of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transferkit.data.base import AnyDataset
from transferkit.data.class_map import apply_class_map, match_classes
from transferkit.data.lazy import LazyImages
from transferkit.data.registry import get_dataset
from transferkit.data.splits import parse_classes, select_classes
from transferkit.errors import ConfigError


def load_task(data: str, split: str, classes: str | list[int] | None, strict: bool = False,
              class_map: dict[str, str] | None = None, workers: int | None = None) -> AnyDataset:
    """Dataset ``data``'s ``split`` restricted to ``classes`` (relabelled 0..k-1 in the given order), then renamed
    or merged by ``class_map`` (:func:`transferkit.data.class_map.apply_class_map`) when one is given. ``workers``:
    the processes that read a streamed image folder (:class:`~transferkit.data.lazy.LazyImages`; ``None``: the
    default), refused when negative."""
    if workers is not None and workers < 0:
        raise ConfigError("workers", "a number of processes ≥ 0 (0 = none: read in the job's own process)", workers)
    loaded = get_dataset(data, split, strict=strict)
    if workers is not None and isinstance(getattr(loaded, "images", None), LazyImages):
        loaded = dataclasses.replace(loaded, images=LazyImages(loaded.images.index, loaded.images.rows, workers))
    ds = select_classes(loaded, parse_classes(classes))
    return apply_class_map(ds, class_map) if class_map else ds


def require_images(ds: AnyDataset, option: str, job: str) -> None:
    """A clear refusal for jobs that handle images only so far (text goes through transfer, fewshot, zeroshot)."""
    if ds.modality != "image":
        raise ValueError(f"{option}: {job} supports image data only so far; {ds.name} is {ds.modality}. For text use "
                         "'transferkit transfer', 'fewshot' or 'zeroshot'")


def check_max_length(ds: AnyDataset, max_length: int | None) -> None:
    """Refuse ``--max-length`` (a token limit) for data that is not text, naming the data's kind."""
    if max_length is not None and ds.modality != "text":
        raise ConfigError("max_length", "text data", max_length, f"{ds.name} holds {ds.modality} examples")


def head_init_mapping(target_classes: list[str], source_meta: dict[str, Any],
                      on: bool) -> tuple[dict[int, int] | None, list[str]]:
    """``({target class: source class}, source classes)`` for the source-head row initialisation: classes matched
    by name (:func:`transferkit.data.class_map.match_classes`); ``None`` when off or the source names no classes."""
    source_classes = list(source_meta.get("classes") or [])
    return (match_classes(target_classes, source_classes) if on and source_classes else None), source_classes


def check_classes(ds: AnyDataset, meta: dict[str, Any], what: str) -> None:
    """The data must have the model's classes (same number; same names when both are known)."""
    model_classes = meta.get("classes") or []
    if len(model_classes) != ds.num_classes:
        raise ValueError(
            f"{what}: the model has {len(model_classes)} classes {model_classes} but the data {ds.name} has "
            f"{ds.num_classes} classes {ds.classes}; choose the matching classes=…"
        )
