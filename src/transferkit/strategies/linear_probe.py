"""Feature transfer: a frozen source feature extractor and a new linear head trained on its features.

Features are extracted **once** (inference mode, batched) and the head is trained on the cached
features, so each epoch costs a matrix multiply instead of a pass through the network — the reason
feature transfer is the fast option (Donahue et al., 2014, "DeCAF"; Kornblith et al., 2019, "Do Better
ImageNet Models Transfer Better?", which uses exactly this linear-probe protocol).
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.trainer import fit
from transferkit.strategies.base import Strategy, TrainedModel, register_strategy


@register_strategy
class LinearProbe(Strategy):
    """Frozen extractor up to stage ``layer`` (default: the backbone's ``default_probe_layer``) + linear head.

    The returned model is the source truncated after ``layer`` with the trained head: a complete model
    that ``predict`` and ``evaluate`` use like any other.
    """

    name = "linear_probe"
    aliases = ("feature",)
    kind = "feature transfer"
    default_lr = 1e-2
    option_defaults = {"layer": None}

    def fit(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
            cfg: TrainConfig, run_dir: Path | None = None) -> TrainedModel:
        import lightning as L

        model = self.copy_source(source)
        layer = self.options["layer"] or source.default_probe_layer or list(source.stages)[-1]
        model.truncate(layer)  # validates the layer name and resets the head
        for p in model.stages.parameters():
            p.requires_grad_(False)
        start = time.perf_counter()
        f_train = extract_features(model, train)
        f_val = extract_features(model, val) if val is not None and len(val) else None
        extract_s = time.perf_counter() - start
        L.seed_everything(cfg.seed, verbose=False)
        head = nn.Linear(model.feature_dim, num_classes)
        feats_train = TensorBatches(f_train, train.y)
        feats_val = TensorBatches(f_val, val.y) if f_val is not None else None
        groups = [{"params": list(head.parameters()), "lr": self.lr(cfg), "name": "head"}]
        result = fit(head, groups, feats_train, feats_val, cfg, run_dir)
        model.head = head
        model.eval()
        options = {**self.options, "layer": layer}
        return TrainedModel(model, result, self.name, options, sum(p.numel() for p in head.parameters()), extract_s)

