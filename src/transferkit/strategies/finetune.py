"""Parameter transfer: initialise from the source weights, new head, fine-tune (optionally freezing early groups).

Yosinski et al., 2014, "How transferable are features in deep neural networks?" — copying the first
layers and fine-tuning beats training from scratch, and freezing the first ``N`` groups (the most generic
features) is the classic way to trade target-specific accuracy for fewer trainable parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy


def freeze_groups(model: Backbone, n: int) -> list[nn.Module]:
    """Freeze the first ``n`` parameter groups (``requires_grad=False``); return the frozen modules.

    The head must stay trainable, so ``n`` may be at most ``len(param_groups) - 1``.
    """
    groups = model.param_groups()
    if not 0 <= n <= len(groups) - 1:
        raise ValueError(
            f"freeze={n}: {model.arch} has {len(groups)} parameter groups "
            f"({', '.join(g.name for g in groups)}); freeze must be between 0 and {len(groups) - 1} "
            "so that the head still trains"
        )
    frozen: list[nn.Module] = []
    for g in groups[:n]:
        for p in g.params:
            p.requires_grad_(False)
        frozen.extend(g.modules)
    return frozen


@register_strategy
class Finetune(Strategy):
    """Every weight from the source, a new head; ``freeze=N`` freezes the first N parameter groups."""

    name = "finetune"
    aliases = ("parameter",)
    kind = "parameter transfer"
    default_lr = 1e-3
    option_defaults = {"freeze": 0}

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg)
        torch.manual_seed(cfg.seed)  # the new head's init depends on the seed alone
        model = self.copy_source(source)
        model.reset_classifier(num_classes)
        frozen = freeze_groups(model, int(self.options["freeze"]))
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": cfg.lr, "name": "trainable"}]
        return TrainingPlan(model, groups, train, val, cfg, self.name, dict(self.options), eval_modules=frozen)
