"""Datasets by name: ``register_dataset`` / ``get_dataset`` / ``list_datasets``.

A dataset spec is ``name`` or ``name:ARG`` (``image_folder:PATH``, ``npz:PATH``). Adding a dataset is one
loader function plus one ``@register_dataset`` line; it then shows up in ``transferkit datasets``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transferkit.data.base import ImageSet
from transferkit.registry import Registry, source_file

Loader = Callable[..., ImageSet]


@dataclass(frozen=True)
class DatasetInfo:
    """What ``transferkit datasets`` shows about a registered dataset."""

    name: str
    description: str
    splits: tuple[str, ...]
    takes_argument: bool
    modality: str = "image"
    splits_of: Callable[[str], tuple[str, ...]] | None = None  # splits of "name:ARG", decided by ARG
    arg_name: str = "PATH"  # what the ARG of "name:ARG" is, as listings and messages show it

    @property
    def usage(self) -> str:
        return self.name + (f":{self.arg_name}" if self.takes_argument else "")


DATASETS: Registry[tuple[DatasetInfo, Loader]] = Registry("datasets", "dataset", label=lambda e: e.obj[0].usage)
_CACHE: dict[tuple[str, str], ImageSet] = {}


def register_dataset(
    name: str,
    description: str,
    splits: tuple[str, ...] = ("train", "test"),
    takes_argument: bool = False,
    modality: str = "image",
    splits_of: Callable[[str], tuple[str, ...]] | None = None,
    arg_name: str = "PATH",
) -> Callable[[Loader], Loader]:
    """Register ``loader(split, arg, strict) -> ImageSet`` under ``name``.

    ``splits_of(arg)`` tells which splits a ``name:ARG`` dataset has (a folder's layout, an archive's keys).
    """

    def wrap(loader: Loader) -> Loader:
        info = DatasetInfo(name, description, splits, takes_argument, modality, splits_of, arg_name)
        DATASETS.add(name, (info, loader), summary=description, where=source_file(loader))
        return loader

    return wrap


def list_datasets() -> list[DatasetInfo]:
    """All registered datasets, sorted by name."""
    return [info for info, _ in (e.obj for e in DATASETS.entries())]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name:ARG"`` into ``("name", "ARG")``; an unknown name lists the valid ones."""
    name, sep, arg = spec.partition(":")
    if name not in DATASETS:
        raise DATASETS.unknown(spec)
    info = DATASETS.get(name)[0]
    if info.takes_argument and not arg:
        raise ValueError(f"dataset '{name}' needs an argument: '{info.usage}'")
    if not info.takes_argument and sep:
        raise ValueError(f"dataset '{name}' takes no argument (got '{spec}')")
    return name, (arg or None)


def get_dataset(spec: str, split: str = "train", strict: bool = False) -> ImageSet:
    """Load split ``split`` of dataset ``spec`` (e.g. ``"fashion_mnist"``, ``"image_folder:photos/"``).

    Built-in array datasets are read once per process and shared: treat the returned arrays as read-only.
    ``strict`` makes unreadable files an error instead of a skipped-with-warning count.
    """
    name, arg = parse_spec(spec)
    info, loader = DATASETS.get(name)
    if arg is None:
        if split not in info.splits:
            raise ValueError(f"dataset '{name}' has no split '{split}'; valid splits: {', '.join(info.splits)}")
        key = (name, split)
        if key not in _CACHE:
            _CACHE[key] = loader(split=split, arg=None, strict=strict)
        return _CACHE[key]
    return loader(split=split, arg=arg, strict=strict)


def has_split(spec: str, split: str) -> bool:
    """Whether ``spec`` provides ``split`` (image folders decide by their layout)."""
    name, arg = parse_spec(spec)
    info, _ = DATASETS.get(name)
    if arg is None or info.splits_of is None:
        return split in info.splits
    return split in info.splits_of(arg)
