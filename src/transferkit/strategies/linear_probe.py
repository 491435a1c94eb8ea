"""Feature transfer: a frozen source feature extractor and a new linear head trained on its features.

Features are extracted **once** (inference mode, batched, and cached on disk keyed by the backbone's
weights, the data and the preprocessing) and the head is trained on them, so each epoch costs a matrix
multiply instead of a pass through the network — the reason feature transfer is the fast option (Donahue
et al., 2014, "DeCAF"; Kornblith et al., 2019, "Do Better ImageNet Models Transfer Better?", which uses
this linear-probe protocol).
"""

from __future__ import annotations

import time

import torch

from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.features import extract_features
from transferkit.config import TrainConfig
from transferkit.data.augment import refuse_pixel_options
from transferkit.data.prepare import TensorBatches
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy


def frozen_features(model: Backbone, data: TensorBatches) -> tuple[torch.Tensor, bool]:
    """Features of ``data`` through ``model`` (whole extractor), from the disk cache when the data has a key."""
    if getattr(data, "key", None):
        return cached_features(model, data, data.key)
    return extract_features(model, data), False


@register_strategy
class LinearProbe(Strategy):
    """Frozen extractor up to stage ``layer`` (default: the backbone's ``default_probe_layer``) + linear head
    (:meth:`Backbone.probe_head`: a feature-fusion backbone puts its trainable fusion layer before it).

    The engine trains only the head, on cached features; the target model is the source truncated after
    ``layer`` with that head — a complete model that ``predict`` and ``evaluate`` use like any other.
    """

    name = "linear_probe"
    aliases = ("feature",)
    kind = "feature transfer"
    default_lr = 1e-2
    default_batch_size = 256  # a step on cached features costs microseconds: fewer, larger steps
    option_defaults = {"layer": None}

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg)
        # checked before the (slow) feature extraction; the engine checks again for any strategy
        refuse_pixel_options(cfg, "linear_probe trains a head on cached features, not images")
        model = self.copy_source(source)
        stages = list(source.stages)
        layer = self.options["layer"] or source.default_probe_layer or (stages[-1] if stages else None)
        if layer is not None and (layer != stages[-1] if stages else True):
            model.truncate(layer)  # validates the name; external backbones refuse with a clear message
        model.reset_classifier(num_classes)
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        start = time.perf_counter()
        f_train, hit_train = frozen_features(model, train)
        f_val, hit_val = frozen_features(model, val) if val is not None and len(val) else (None, True)
        extract_s = time.perf_counter() - start
        torch.manual_seed(cfg.seed)
        head = model.probe_head(num_classes)

        def attach_head() -> Backbone:
            model.head = head
            return model.eval()

        return TrainingPlan(
            head, [{"params": list(head.parameters()), "lr": cfg.lr, "name": "head"}],
            TensorBatches(f_train, train.y), TensorBatches(f_val, val.y) if f_val is not None else None, cfg,
            self.name, {**self.options, "layer": layer}, finalize=attach_head, extra_time_s=extract_s,
            feature_cache="hit" if hit_train and hit_val else "miss", head=head,
        )
