"""The in-memory dataset type every loader returns.

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


@dataclass
class ImageSet:
    """Images with integer labels and class names.

    Attributes
    ----------
    images:
        ``uint8`` array of shape ``(N, H, W)`` (grayscale) or ``(N, H, W, C)``, or a list of ``N`` such
        arrays of varying sizes (image folders).
    labels:
        ``int64`` array of shape ``(N,)`` with values in ``[0, len(classes))``.
    classes:
        Class names; ``labels == i`` means ``classes[i]``.
    name:
        Where the data came from (dataset spec and split), recorded in run lineage.
    paths:
        Source file per image when loaded from files (used in error messages and predictions).
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    name: str
    paths: list[str] | None = None
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
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

    @property
    def channels(self) -> int:
        """Number of colour channels of the stored images (1 for ``(H, W)`` images)."""
        first = self.images[0] if len(self.images) else np.zeros((1, 1), np.uint8)
        return 1 if first.ndim == 2 else int(first.shape[-1])

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> ImageSet:
        """Return the images at ``indices`` (same classes, same label values)."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            images: np.ndarray | list[np.ndarray] = self.images[idx]
        else:
            images = [self.images[i] for i in idx]
        paths = [self.paths[i] for i in idx] if self.paths is not None else None
        return ImageSet(images, self.labels[idx], list(self.classes), name or self.name, paths)

    def class_counts(self) -> np.ndarray:
        """Number of images per class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def fingerprint(self) -> str:
        """A content hash (pixels, labels, class names): equal data ⇒ equal fingerprint."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update("\x1f".join(self.classes).encode())
            h.update(self.labels.tobytes())
            if isinstance(self.images, np.ndarray):
                h.update(str(self.images.shape).encode())
                h.update(np.ascontiguousarray(self.images).tobytes())
            else:
                for img in self.images:
                    h.update(str(img.shape).encode())
                    h.update(np.ascontiguousarray(img).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint
