"""Structure transfer: the source's architecture, randomly initialised, trained on the target alone.

The honest baseline every transfer result is compared against: if a transfer strategy does not beat
training the same network from scratch on the same labels, nothing was transferred.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.backbones.base import Backbone
from transferkit.backbones.registry import build_from_config
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.trainer import fit
from transferkit.strategies.base import Strategy, TrainedModel, register_strategy


@register_strategy
class Scratch(Strategy):
    """Same architecture as the source, random weights, every parameter trained."""

    name = "scratch"
    aliases = ("structure",)
    kind = "structure transfer (baseline)"
    default_lr = 1e-3

    def fit(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
            cfg: TrainConfig, run_dir: Path | None = None) -> TrainedModel:
        import lightning as L

        cfg = self.resolve(cfg)
        L.seed_everything(cfg.seed, verbose=False)  # the random init depends on the seed alone
        config = {**source.config(), "num_classes": num_classes, "cut_at": None}
        model = build_from_config(config)
        groups = [{"params": list(model.parameters()), "lr": self.lr(cfg), "name": "all"}]
        result = fit(model, groups, train, val, cfg, run_dir)
        return TrainedModel(model, result, self.name, dict(self.options), model.num_parameters())
