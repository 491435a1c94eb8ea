"""The in-memory dataset types every loader returns: :class:`ImageSet` and :class:`TextSet`.

Transfer-learning targets are small by nature, and the sources we ship (Fashion-MNIST, MNIST, digits, …)
fit in memory as ``uint8``, so a dataset here is simply arrays plus class names. Keeping the raw
``uint8`` pixels (not floats) means a split, a k-shot subset or a class subset is a cheap index view, and
the preprocessing that a backbone needs (resize, channels, mean/std) is applied once, later, by
:func:`transferkit.data.prepare.prepare_images`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from transferkit.data.lazy import LazyImages


class _Labelled:
    """What :class:`ImageSet` and :class:`TextSet` share: label checks, length, class count and counts."""

    labels: np.ndarray
    classes: list[str]
    name: str

    def _check_labels(self, n_items: int, what: str) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if n_items != len(self.labels):
            raise ValueError(f"{self.name}: {n_items} {what} but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {len(self.classes)}), got "
                f"[{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)


@dataclass
class ImageSet(_Labelled):
    """Images with integer labels and class names.

    Attributes
    ----------
    images:
        ``uint8`` array of shape ``(N, H, W)`` (grayscale) or ``(N, H, W, C)``, or a list of ``N`` such
        arrays of varying sizes (image folders), or :class:`~transferkit.data.lazy.LazyImages` (a folder too large
        to decode in memory: decoded when a model needs it, into the prepared cache).
    labels:
        ``int64`` array of shape ``(N,)`` with values in ``[0, len(classes))``.
    classes:
        Class names; ``labels == i`` means ``classes[i]``.
    name:
        Where the data came from (dataset spec and split), recorded in run lineage.
    paths:
        Source file per image when loaded from files (used in error messages and predictions).
    """

    images: np.ndarray | list[np.ndarray] | LazyImages
    labels: np.ndarray
    classes: list[str]
    name: str
    paths: list[str] | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    modality = "image"

    def __post_init__(self) -> None:
        self._check_labels(len(self.images), "images")

    @property
    def channels(self) -> int:
        """Number of colour channels of the stored images (1 for ``(H, W)`` images)."""
        if isinstance(self.images, LazyImages):
            return self.images.channels
        first = self.images[0] if len(self.images) else np.zeros((1, 1), np.uint8)
        return 1 if first.ndim == 2 else int(first.shape[-1])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> ImageSet:
        """Return the images at ``indices`` (same classes, same label values)."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            images: np.ndarray | list[np.ndarray] | LazyImages = self.images[idx]
        elif isinstance(self.images, LazyImages):
            images = self.images.take(idx)
        else:
            images = [self.images[i] for i in idx]
        paths = [self.paths[i] for i in idx] if self.paths is not None else None
        return ImageSet(images, self.labels[idx], list(self.classes), name or self.name, paths)

    def relabelled(self, labels: np.ndarray, classes: list[str], name: str | None = None) -> ImageSet:
        """The same images with new ``labels`` over new ``classes`` (class subsets, class maps)."""
        return ImageSet(self.images, labels, classes, name or self.name, self.paths)

    def fingerprint(self) -> str:
        """A content hash (pixels, labels, class names): equal data ⇒ equal fingerprint."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\x1f".join(self.classes).encode())
            h.update(self.labels.tobytes())
            if isinstance(self.images, LazyImages):  # the files' paths, sizes and modification times
                h.update(self.images.content())
            elif isinstance(self.images, np.ndarray):
                h.update(str(self.images.shape).encode())
                h.update(np.ascontiguousarray(self.images).tobytes())
            else:
                for img in self.images:
                    h.update(str(img.shape).encode())
                    h.update(np.ascontiguousarray(img).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


@dataclass
class TextSet(_Labelled):
    """Texts with integer labels and class names: the text counterpart of :class:`ImageSet`.

    It offers the same interface (``labels``, ``classes``, ``name``, ``subset``, ``class_counts``,
    ``fingerprint``), so splits, k-per-class sampling and class subsets work on it unchanged; tokenisation
    for a model happens later (:func:`transferkit.data.tokens.encode_texts`).

    Attributes
    ----------
    texts:
        ``N`` strings (several text columns already joined).
    labels, classes, name:
        As for :class:`ImageSet`.
    rows:
        Where each text came from (``file:line``), used in error messages and predictions.
    """

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str
    rows: list[str] | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    modality = "text"

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self._check_labels(len(self.texts), "texts")

    @property
    def channels(self) -> int:
        """0: texts have no colour channels (so image-only checks pass them by)."""
        return 0

    @property
    def paths(self) -> list[str] | None:
        """Same role as :attr:`ImageSet.paths`: where each item came from."""
        return self.rows

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> TextSet:
        """Return the texts at ``indices`` (same classes, same label values)."""
        idx = np.asarray(indices, dtype=np.int64)
        rows = [self.rows[i] for i in idx] if self.rows is not None else None
        return TextSet([self.texts[i] for i in idx], self.labels[idx], list(self.classes), name or self.name, rows)

    def relabelled(self, labels: np.ndarray, classes: list[str], name: str | None = None) -> TextSet:
        """The same texts with new ``labels`` over new ``classes`` (class subsets, class maps)."""
        return TextSet(self.texts, labels, classes, name or self.name, self.rows)

    def fingerprint(self) -> str:
        """A content hash (texts, labels, class names): equal data ⇒ equal fingerprint."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\x1f".join(self.classes).encode())
            h.update(self.labels.tobytes())
            for text in self.texts:
                h.update(text.encode("utf-8", "surrogatepass"))
                h.update(b"\x1e")
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


AnyDataset = ImageSet | TextSet  # what a dataset loader returns
