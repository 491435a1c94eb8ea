"""The data of the ``adapt`` job (:mod:`transferkit.api.adapt_job`): the check that source and target can be
adapted between, its splits — the labelled source's training and validation parts, the target's unlabelled
training images, held-out images for label-free selection and a fixed test subset — and the label-free views of
prepared batches (labels dropped, seeded subsets).

The target's labels never reach training or selection through these helpers: :func:`random_split` does not consult
them and :func:`unlabelled` drops them.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from transferkit.data.base import ImageSet
from transferkit.data.job_task import load_task, require_images
from transferkit.data.prepare import TensorBatches, take_rows
from transferkit.data.registry import has_split
from transferkit.data.splits import labelled_budget_split


def check_domains(source: ImageSet, target: ImageSet, resize: bool) -> None:
    """Source and target must share their classes (names, in order); different image sizes need ``resize``."""
    if list(source.classes) != list(target.classes):
        raise ValueError(f"source {source.name} and target {target.name} have different classes: source "
                         f"{list(source.classes)}, target {list(target.classes)}; choose classes=… so both have "
                         "the same ones (in the same order)")
    shapes = {d.name: (sorted({im.shape[:2] for im in d.images[:256]}) if isinstance(d.images, list)
                       else [tuple(d.images.shape[1:3])]) for d in (source, target)}
    if shapes[source.name] != shapes[target.name] and not resize:
        raise ValueError(f"source {source.name} has images of size {shapes[source.name][0]} but target {target.name} "
                         f"has {shapes[target.name][0]}; pass resize=True to resize both to the model's input "
                         "size (image_size=…)")


def random_split(ds: ImageSet, n_val: int, limit: int | None, seed: int) -> tuple[ImageSet, ImageSet]:
    """Unlabelled-style split (labels not consulted): ``n_val`` random held-out images, then up to ``limit``."""
    rng = np.random.default_rng(seed + 104729)
    order = rng.permutation(len(ds))
    val, rest = order[:n_val], order[n_val:]
    if limit is not None:
        rest = rest[:limit]
    return ds.subset(np.sort(rest), ds.name + "[train]"), ds.subset(np.sort(val), ds.name + "[val]")


def unlabelled(batches: TensorBatches) -> TensorBatches:
    """The same images without labels (a shallow copy): what the adaptation loop sees of the target."""
    out = copy.copy(batches)
    out.y = None
    return out


def sample_batches(data: TensorBatches, n: int, seed: int = 0) -> TensorBatches:
    """A seeded random subset of at most ``n`` items (splits may be ordered by class: never take the first n)."""
    if len(data) <= n:
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    out = copy.copy(data)
    out.x, out.y = take_rows(data.x, idx), None if data.y is None else data.y[idx]
    return out


@dataclasses.dataclass
class AdaptDomains:
    """The labelled source (training and validation parts) and the target: unlabelled training images, held-out
    images for label-free selection, and the test split — the target's labels stay out of training and selection."""

    source: ImageSet
    s_train: ImageSet
    s_val: ImageSet
    t_train: ImageSet
    t_val: ImageSet
    t_test: ImageSet
    channels: int

    @classmethod
    def load(cls, source: str, target: str, classes: str | list[int] | None, strict: bool, resize: bool,
             test_limit: int | None, source_per_class: int | None, val_fraction: float, target_val: int,
             target_limit: int | None, seed: int) -> AdaptDomains:
        """Load the source's and the target's training splits (images only, the same classes; sizes that differ
        need ``resize``) and the target's test split — a fixed ``test_limit`` subset of it (seed 0 for every run) —
        and split them: the source's labelled budget (``source_per_class``, validation ``max(source_per_class // 5,
        5)`` per class), the target's random held-out images (``target_val``, at most half) and up to
        ``target_limit`` unlabelled training images."""
        src_full = load_task(source, "train", classes, strict)
        tgt_full = load_task(target, "train", classes, strict)
        require_images(src_full, f"source={source}", "domain adaptation")
        require_images(tgt_full, f"target={target}", "domain adaptation")
        check_domains(src_full, tgt_full, resize)
        if not has_split(target, "test"):
            raise ValueError(f"target={target} has no test split to score the adapted model on")
        test = load_task(target, "test", classes, strict)
        if test_limit is not None and test_limit < len(test):  # fixed subset: seed 0 for every run
            keep = np.sort(np.random.default_rng(0).permutation(len(test))[:test_limit])
            test = test.subset(keep, f"{test.name}[{test_limit}]")
        val_per_class = None if source_per_class is None else max(source_per_class // 5, 5)
        s_train, s_val = labelled_budget_split(src_full, source_per_class, val_per_class, val_fraction, seed)
        t_train, t_val = random_split(tgt_full, min(target_val, len(tgt_full) // 2), target_limit, seed)
        # grey → colour by repetition (lossless)
        return cls(src_full, s_train, s_val, t_train, t_val, test, max(src_full.channels, tgt_full.channels))
