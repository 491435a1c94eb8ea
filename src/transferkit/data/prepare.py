"""Turn an :class:`ImageSet` into batches a backbone accepts, fast.

Preprocessing follows the backbone's input spec (channels, size, mean/std and the resize mode; any object with
those attributes). Resizing (the evaluation transform of :mod:`transferkit.data.resize`) and channel conversion
happen **once** per dataset into a ``uint8`` tensor; the float conversion and normalisation happen per batch, so
memory stays at one byte per pixel even at 224 px. A ``shorter_crop`` spec keeps a border around the evaluation
crop (``floor(size / crop_pct)`` square, 1.31× the pixels at crop_pct 0.875) for random-resized-crop training;
batches are served its centre crop unless an augmentation is set. Batches are fetched by slicing tensors
(``__getitems__``) instead of collating single samples, which keeps the data pipeline's cost near that of a
hand-written loop over in-memory tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from transferkit.data.balance import balanced_weights
from transferkit.data.base import AnyDataset, ImageSet
from transferkit.data.lazy import LazyImages
from transferkit.data.prepared import DiskImages, prepared_images
from transferkit.data.resize import all_keep_whole, convert_channels, inner_box, resize_images, to_nchw
from transferkit.data.sampling import EpochBatchSampler, SeededBatch
from transferkit.data.tokens import TokenRows, encode_rows
from transferkit.errors import ConfigError


class SpecLike(Protocol):
    channels: int
    size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


def image_shapes(ds: ImageSet) -> list[tuple[int, int]]:
    """``(h, w)`` of every image of ``ds`` (streamed images: from their index, nothing decoded)."""
    if isinstance(ds.images, np.ndarray):
        return [tuple(ds.images.shape[1:3])] * len(ds.images)
    if isinstance(ds.images, LazyImages):
        return ds.images.shapes
    return [im.shape[:2] for im in ds.images]


def prepare_images(ds: ImageSet, spec: SpecLike, border: bool = False) -> torch.Tensor:
    """``uint8`` tensor ``(N, spec.channels, H, W)`` at ``spec.size`` (native size when ``None``), resized by the
    spec's evaluation transform (:func:`~transferkit.data.resize.resize_images`); ``border=True`` keeps a
    ``shorter_crop`` spec's border around the crop (training data; see :func:`to_batches`). A streamed folder
    (:class:`~transferkit.data.lazy.LazyImages`) gives a :class:`~transferkit.data.prepared.DiskImages` instead, read
    batch by batch from the prepared cache."""
    if isinstance(ds.images, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(ds.images))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = convert_channels(x, spec.channels)
        return (resize_images(x, spec, border) if spec.size else x).contiguous()
    if isinstance(ds.images, LazyImages) and spec.size:
        return prepared_images(ds.images, spec, border, ds.name)  # type: ignore[return-value]  (reads like a tensor)
    if not spec.size:
        shapes = sorted(set(image_shapes(ds)))
        raise ValueError(f"{ds.name}: images have different sizes {shapes[:3]}…; the model needs a fixed image_size=N")
    return torch.cat([resize_images(convert_channels(to_nchw(im).unsqueeze(0), spec.channels), spec, border)
                      for im in ds.images])


class TensorBatches(Dataset):
    """In-memory tensors served a batch at a time; images normalised on the fly.

    ``x`` is ``uint8`` images ``(N, C, H, W)`` (normalised with ``mean``/``std`` per batch) or already-float
    features ``(N, D)`` (``mean=None``: served as they are), or a streamed folder's
    :class:`~transferkit.data.prepared.DiskImages` that reads the rows a batch asks for (in DataLoader workers).
    ``y`` holds int64 labels or is ``None``.
    ``key`` names the content (``ImageSet.fingerprint()``) so that extracted features can be cached.
    Text is token ids: :class:`~transferkit.data.tokens.TokenRows` (ragged; a batch is padded with the tokenizer's
    pad id to its own longest text) or an ``int64`` tensor ``(N, L)`` already padded; ``lengths`` holds the counts.
    ``view`` = ``(top, left, height, width)``: ``x`` holds larger images (a ``shorter_crop`` spec's training border,
    :func:`to_batches`) and batches are served that box of them (the evaluation crop, an exact slice).
    ``transform`` (set through :meth:`with_transform`, training data only) maps each fetched ``uint8`` batch
    to an augmented one *before* normalisation. ``extras`` are further per-item tensors (e.g. a teacher's
    logits for distillation) served after the labels: a batch is then ``(x, y, *extras)``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        key: str | None = None,
        extras: Sequence[torch.Tensor] = (),
        lengths: torch.Tensor | None = None,
        view: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.x, self.y = x, y
        if view is not None and (x.ndim != 4 or view[0] < 0 or view[1] < 0 or view[0] + view[2] > x.shape[2]
                                 or view[1] + view[3] > x.shape[3]):
            raise ValueError(f"view {view} (top, left, height, width) does not fit images of shape {tuple(x.shape)}")
        self.view = tuple(int(v) for v in view) if view is not None else None
        self.lengths = lengths  # token counts of text items (batching by length), None for images
        self.extras = tuple(extras)
        if any(len(e) != len(x) for e in self.extras):
            raise ValueError(f"extras must have one row per item ({len(x)}), got {[len(e) for e in self.extras]}")
        self.key = key  # content fingerprint of the source data (feature-cache key), when known
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        if mean is not None:
            c = x.shape[1]
            m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
            s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
            # one fused multiply-add per batch: x/255 → (x - mean)/std
            self._scale = (1.0 / (255.0 * s)).expand(1, c, 1, 1).contiguous()
            self._shift = (-m / s).expand(1, c, 1, 1).contiguous()
        else:
            self._scale = self._shift = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images served (the ``view``'s size when there is one; image data only)."""
        return (self.view[2], self.view[3]) if self.view else (int(self.x.shape[-2]), int(self.x.shape[-1]))

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> TensorBatches:
        """A shallow copy (same tensors, no data copied) whose batches pass through ``transform`` first.

        ``transform`` receives the raw batch ``(B, C, H, W)`` (``uint8`` images, the whole stored images: with a
        ``view``, bordered) and must return a new ``uint8`` tensor of the served size (:attr:`image_size`) without
        modifying its input (which may be a view of the dataset); normalisation follows. ``self`` is left
        untouched, so validation and test data, or the same data used elsewhere, are never augmented.
        """
        out = copy.copy(self)
        out.transform = transform
        return out

    def _fetch(self, idx, seed: int | None = None) -> tuple[torch.Tensor, ...] | torch.Tensor:
        x = self.x[idx]
        if self.transform is not None:
            if seed is None:
                x = self.transform(x)
            else:  # the batch's own random stream: what it sees cannot depend on when it was fetched
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    x = self.transform(x)
        elif self.view is not None:
            top, left, h, w = self.view
            x = x[..., top : top + h, left : left + w]
        if self._scale is not None:
            x = torch.addcmul(self._shift, x.float(), self._scale)
        if self.y is None:
            return x
        return (x, self.y[idx], *(e[idx] for e in self.extras)) if self.extras else (x, self.y[idx])

    def __getitem__(self, i: int):
        out = self._fetch(slice(i, i + 1))
        return tuple(t[0] for t in out) if isinstance(out, tuple) else out[0]

    def __getitems__(self, indices: list[int]):
        seed = indices.seed if isinstance(indices, SeededBatch) else None
        idx = torch.as_tensor(indices)
        # contiguous runs (no shuffling) are served as views, not gathers; the cheap end-points test comes
        # first, the exact one only when it passes (shuffled or resampled batches may repeat indices)
        n = len(indices)
        if n and indices[-1] - indices[0] == n - 1 and list(indices) == list(range(indices[0], indices[0] + n)):
            idx = slice(indices[0], indices[-1] + 1)
        return self._fetch(idx, seed)


def keep_batch(batch):
    """A batch as :class:`TensorBatches` fetched it (the loaders' collate function: nothing to collate)."""
    return batch


def make_loader(data: TensorBatches, batch_size: int, shuffle: bool, seed: int = 0,
                sampler: str = "random", weights: torch.Tensor | None = None, pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over :class:`TensorBatches`: seeded, resumable, DDP-sharded batches fetched by slicing.

    The order comes from :class:`~transferkit.data.sampling.EpochBatchSampler` (a permutation per epoch
    derived from ``seed`` and the epoch; ``shuffle=False`` keeps the data's order, for evaluation).
    ``sampler="balanced"`` draws examples with replacement so that every class is seen equally often
    (weights from :func:`~transferkit.data.balance.balanced_weights`; the order is random whatever
    ``shuffle`` says); ``weights`` (one per example) draws in proportion to them instead (multi-task sampling).
    ``batch_size`` is the global batch: under DDP each process loads its share of it. ``pin_memory`` (training
    on a GPU) puts each batch in page-locked memory, so its copy to the device overlaps the computation. Streamed
    images are read in worker processes (:func:`loader_workers`); the order and each batch's augmentation seed
    still come from the sampler in this process, so resuming and sharding work as for in-memory data.
    """
    if weights is not None:
        order = EpochBatchSampler(len(data), batch_size, "weighted", seed, weights=weights)
    elif sampler == "balanced":
        if data.y is None:
            raise ConfigError("sampler", "random for unlabelled training data (balanced needs labels)", sampler)
        order = EpochBatchSampler(len(data), batch_size, "weighted", seed, weights=balanced_weights(data.y))
    elif sampler != "random":
        raise ConfigError("sampler", "one of random, balanced", sampler)
    else:
        order = EpochBatchSampler(len(data), batch_size, "shuffle" if shuffle else "sequential", seed, train=shuffle)
    workers = loader_workers(data)
    return DataLoader(data, batch_sampler=order, collate_fn=keep_batch, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0, prefetch_factor=2 if workers else None)


Rows = torch.Tensor | DiskImages | TokenRows  # what a TensorBatches' x can be


def take_rows(x: Rows, idx: torch.Tensor | slice) -> Rows:
    """Rows ``idx`` of a batches' ``x``: a tensor's are indexed, a streamed folder's stay on disk (nothing read), ragged
    token ids stay ragged."""
    return x.take(idx) if isinstance(x, (DiskImages, TokenRows)) else x[idx]


def data_loading(data: TensorBatches) -> dict[str, object]:
    """How ``data`` is read, for a run's record: ``{"mode": "in memory"}``, or ``{"mode": "streamed", "prepared_cache":
    FILE, "workers": N}`` for a folder streamed from the prepared cache."""
    if isinstance(data.x, DiskImages):
        return {"mode": "streamed", "prepared_cache": str(data.x.path), "workers": data.x.workers}
    return {"mode": "in memory"}


def loader_workers(data: TensorBatches) -> int:
    """DataLoader worker processes for ``data``: those of streamed images (reading, augmenting and normalising
    batches beside the training), none for in-memory tensors (slicing them is faster than a worker's round trip)."""
    return int(getattr(data.x, "workers", 0))


def to_batches(ds: AnyDataset, spec: SpecLike) -> TensorBatches:
    """``ds`` preprocessed for a model with input spec ``spec``, as labelled :class:`TensorBatches`: images resized
    and converted (:func:`prepare_images`), texts tokenised (:func:`~transferkit.data.tokens.encode_rows`, kept ragged).

    Images of a ``shorter_crop`` spec are stored with their border (``border=True``) and served the evaluation
    crop (``view`` = :func:`~transferkit.data.resize.inner_box`), pixel for pixel what :func:`prepare_images`
    gives without the border — so validation, test and feature extraction see the evaluation transform, and an
    augmentation (:func:`~transferkit.data.augment.augmented`) can crop from the whole bordered image. Data whose
    images are all resized whole (small squares, :func:`~transferkit.data.resize.keeps_whole`) keep no border: they
    are prepared, served and augmented exactly as under ``squash``."""
    data_kind, model_kind = getattr(ds, "modality", "image"), getattr(spec, "modality", "image")
    if data_kind != model_kind:
        raise ValueError(f"the data {ds.name} is {data_kind} but the model takes {model_kind} input; choose a "
                         f"{data_kind} backbone ('transferkit backbones' lists them) or {model_kind} data")
    if data_kind == "text":
        ids = encode_rows(ds.texts, spec, ds.name)
        return TensorBatches(ids, torch.from_numpy(ds.labels), key=ds.fingerprint(), lengths=ids.lengths)
    shapes = [ds.images.shape[1:3]] if isinstance(ds.images, np.ndarray) else image_shapes(ds)
    view = None if all_keep_whole(shapes, spec) else inner_box(spec)  # MNIST-like data: no border, as before
    return TensorBatches(prepare_images(ds, spec, border=view is not None), torch.from_numpy(ds.labels), spec.mean,
                         spec.std, ds.fingerprint(), view=view)
