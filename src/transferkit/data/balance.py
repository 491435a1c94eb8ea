"""Class-imbalance handling: inverse-frequency loss weights and a class-balanced, seeded sampler.

Two standard corrections for a training set whose classes are unevenly represented; choose one
(``TrainConfig`` refuses both at once, which over-corrects):

* ``--class-weight balanced`` weights each example's loss by ``n / (C · count_c)`` — scikit-learn's
  ``class_weight="balanced"`` heuristic (King & Zeng, 2001) — so every class contributes the same total
  weight and the weighted mean over the training samples is 1 (the loss keeps its usual scale).
* ``--sampler balanced`` keeps the loss unweighted and instead draws training examples with probability
  ``∝ 1 / count_c`` (with replacement, ``len(data)`` draws per epoch), so each class is seen equally often.
  Reweighting keeps every example once per epoch; resampling shows rare examples several times per epoch
  (and skips some frequent ones), which pairs well with augmentation.
"""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import WeightedRandomSampler


def class_counts(y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """How many examples each class has: int64 ``(num_classes,)`` (``num_classes`` defaults to ``max(y) + 1``)."""
    y = torch.as_tensor(y).long().flatten()
    n = int(y.max()) + 1 if num_classes is None and len(y) else int(num_classes or 0)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
        raise ValueError(f"labels must lie in 0..{n - 1}, got {int(y.min())}..{int(y.max())}")
    return torch.bincount(y, minlength=n)


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights ``n / (C · count_c)``, float32 ``(num_classes,)``.

    ``C`` counts the classes **present** in ``y`` (as scikit-learn does), so that the weight averaged over the
    training examples, ``Σ_c count_c · w_c / n``, is exactly 1 and the weighted loss keeps the scale of the
    unweighted one. A class with no training example gets weight 0 — its weight is never used by a loss over
    these examples (no example carries that label, and Mixup/CutMix targets only mix labels that occur) — and
    a warning, because the model cannot learn a class it never sees; reweighting cannot fix that.
    """
    counts = class_counts(y, num_classes)
    n, present = int(counts.sum()), int((counts > 0).sum())
    if n == 0:
        raise ValueError("class weights need at least one labelled training example")
    missing = torch.nonzero(counts == 0).flatten().tolist()
    if missing:
        warnings.warn(f"class(es) {missing} have no training examples: their class weight is 0 and the model "
                      "cannot learn them; check the training split (classes, labels_per_class)", stacklevel=2)
    w = torch.zeros(len(counts), dtype=torch.float32)
    seen = counts > 0
    w[seen] = n / (present * counts[seen].double()).float()
    return w


def balanced_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-example draw weights ``∝ 1 / count_{y_i}``: sampling with them draws every class present in ``y``
    equally often in expectation (``--sampler balanced``;
    :class:`~transferkit.data.sampling.EpochBatchSampler` draws ``len(y)`` examples per epoch with them)."""
    y = torch.as_tensor(y).long().flatten()
    if len(y) == 0:
        raise ValueError("balanced sampling needs at least one labelled training example")
    return (1.0 / class_counts(y).double())[y]


def balanced_sampler(y: torch.Tensor, seed: int = 0, num_samples: int | None = None) -> WeightedRandomSampler:
    """A seeded ``WeightedRandomSampler`` with :func:`balanced_weights` (for code outside the training loop).

    Draws ``num_samples`` times per epoch (default ``len(y)``, so an epoch keeps its length), with its own
    generator seeded with ``seed``.
    """
    weights = balanced_weights(y)
    gen = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples or len(weights), replacement=True, generator=gen)
