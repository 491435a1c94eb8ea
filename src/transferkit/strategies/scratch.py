"""Structure transfer: the source's architecture, randomly initialised, trained on the target alone.

The honest baseline every transfer result is compared against: if a transfer strategy does not beat
training the same network from scratch on the same labels, nothing was transferred.
"""

from __future__ import annotations

import torch

from transferkit.backbones.base import Backbone
from transferkit.backbones.registry import build_from_config
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy


@register_strategy
class Scratch(Strategy):
    """Same architecture as the source, random weights, every parameter trained."""

    name = "scratch"
    aliases = ("structure",)
    kind = "structure transfer (baseline)"
    default_lr = 1e-3

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg)
        torch.manual_seed(cfg.seed)  # the random init depends on the seed alone
        model = build_from_config({**source.config(), "num_classes": num_classes, "cut_at": None})
        model.input_spec = source.input_spec
        groups = [{"params": list(model.parameters()), "lr": cfg.lr, "name": "all"}]
        return TrainingPlan(model, groups, train, val, cfg, self.name, dict(self.options))
