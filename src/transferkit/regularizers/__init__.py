"""Regularised fine-tuning: loss terms that keep the fine-tuned network close to its source.

Each method is one file with its paper — ``l2sp`` (weights toward the pretrained weights), ``delta``
(feature maps toward the source network's, attention-weighted per channel), ``bss`` (shrink the smallest
singular values of the batch features) — and one class implementing :class:`Regularizer`: ``attach(model,
source, data)`` once before training, then ``term(model, x, y, logits) -> scalar`` in a strategy's
``TrainingPlan.loss_terms``. They sit beside the strategies (which compose them) and never import the engine.
``get_regularizer("l2sp", alpha=0.1)`` builds one by name.
"""

from transferkit.regularizers.base import (
    Regularizer,
    coefficient_names,
    get_regularizer,
    list_regularizers,
    register_regularizer,
)
from transferkit.regularizers.bss import BatchSpectralShrinkage, batch_spectral_shrinkage
from transferkit.regularizers.delta import DELTA, feature_map_distance
from transferkit.regularizers.l2sp import L2SP

__all__ = [
    "DELTA", "L2SP", "BatchSpectralShrinkage", "Regularizer", "batch_spectral_shrinkage", "coefficient_names",
    "feature_map_distance", "get_regularizer", "list_regularizers", "register_regularizer",
]
