"""Structure transfer: the source's architecture, randomly initialised, trained on the target alone.

The honest baseline every transfer result is compared against: if a transfer strategy does not beat
training the same network from scratch on the same labels, nothing was transferred — so the baseline must
itself be trained properly. Its recipe (issue 26) differs from fine-tuning's: random weights need many more
updates and a higher rate than a pretrained network, and with a few dozen images augmentation is what keeps
them from memorising: :attr:`Scratch.default_steps` optimiser steps whatever the dataset size, AdamW at
``default_lr`` with linear warm-up and cosine decay (Loshchilov & Hutter, 2017, "SGDR"), the ``light``
augmentation (flip + padded random crop) on image batches, BatchNorm in train mode (there are no source
statistics to keep), and the final weights (no early stopping unless ``--patience`` is given).
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
    default_lr = 3e-3
    default_batch_size = 32
    default_steps = 300  # a floor of optimiser steps, whatever the dataset size
    min_epochs = 1
    default_schedule = "cosine"
    warmup = 0.05
    default_augment = "light"

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg, train)
        torch.manual_seed(cfg.seed)  # the random init depends on the seed alone
        model = build_from_config({**source.config(), "num_classes": num_classes, "cut_at": None})
        model.input_spec = source.input_spec
        groups = [{"params": list(model.parameters()), "lr": cfg.lr, "name": "all"}]
        return TrainingPlan(model, groups, train, val, cfg, self.name, dict(self.options),
                            recipe={"head_init": "random", "bn": "train"})
