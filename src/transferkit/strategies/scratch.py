"""Structure transfer: the source's architecture, randomly initialised, trained on the target alone.

The honest baseline every transfer result is compared against: if a transfer strategy does not beat
training the same network from scratch on the same labels, nothing was transferred — so the baseline must
itself be trained properly. Its recipe (issue 26) differs from fine-tuning's: random weights need many more
updates and a higher rate than a pretrained network, and with a few dozen images augmentation is what keeps
them from memorising: :attr:`Scratch.default_steps` optimiser steps whatever the dataset size, AdamW at
``default_lr`` with linear warm-up and cosine decay (Loshchilov & Hutter, 2017, "SGDR"), the ``light``
augmentation (flip + padded random crop) on image batches, BatchNorm in train mode (there are no source
statistics to keep), and the final weights (no early stopping unless ``--patience`` is given).

Last, the BatchNorm statistics are **recomputed** with the final weights over the (un-augmented) training images,
"precise BN" (Wu & Johnson, 2021, "Rethinking 'Batch' in BatchNorm", §3): the running averages kept during a short
run mix statistics of weights that changed fast, and a network trained from random weights for a few dozen steps
then predicts one class for every evaluation image (measured: MobileNetV2 from scratch, 30 steps on 10 Fashion-MNIST
images per class, training loss 1.57 yet held-out accuracy 0.100; see ``benchmarks/RESULTS.md``, issue 26). Option
``bn_stats="running"`` keeps the running averages instead.
"""

from __future__ import annotations

import torch
from torch import nn

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
    paper = "the baseline (Yosinski et al., 2014)"
    kind = "structure transfer (baseline)"
    default_lr = 3e-3
    default_batch_size = 32
    default_steps = 300  # a floor of optimiser steps, whatever the dataset size
    min_epochs = 1
    default_schedule = "cosine"
    warmup = 0.05
    default_augment = "light"
    option_defaults = {"bn_stats": "precise"}

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        if self.options["bn_stats"] not in BN_STATS:
            raise ValueError(f"scratch option bn_stats: unknown '{self.options['bn_stats']}'; valid: "
                             f"{', '.join(BN_STATS)}")
        cfg = self.resolve(cfg, train)
        torch.manual_seed(cfg.seed)  # the random init depends on the seed alone
        model = build_from_config({**source.config(), "num_classes": num_classes, "cut_at": None})
        model.input_spec = source.input_spec
        groups = [{"params": list(model.parameters()), "lr": cfg.lr, "name": "all"}]
        precise = self.options["bn_stats"] == "precise" and has_batchnorm(model)
        batch = cfg.batch_size or self.default_batch_size

        def finalize():
            if precise:
                recompute_bn_stats(model, train, batch)
            return model

        return TrainingPlan(model, groups, train, val, cfg, self.name, dict(self.options), finalize=finalize,
                            recipe={"head_init": "random", "bn": "train",
                                    "bn_stats": "precise (recomputed on the training images after training)"
                                    if precise else "running averages"})


BN_STATS = ("precise", "running")


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has any BatchNorm layer (whose statistics :func:`recompute_bn_stats` would replace)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, data: TensorBatches, batch_size: int = 32) -> int:
    """Replace every BatchNorm layer's running mean/variance by their average over ``data`` with ``model``'s
    current weights ("precise BN", Wu & Johnson, 2021): the statistics are reset, accumulated as a cumulative
    (equal-weight) average over batches of ``batch_size`` in train mode without gradients, and the layers' momentum
    and every module's mode are restored. ``data`` is served without augmentation. Returns the images used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(data) == 0:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch weighs the same
        model.train()
        for start in range(0, len(data), batch_size):
            stop = min(start + batch_size, len(data))
            if stop - start < 2 and start > 0:
                break  # a 1-image remainder has no batch variance; the earlier batches already cover the data
            batch = data.__getitems__(list(range(start, stop)))
            model(batch[0] if isinstance(batch, tuple) else batch)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        for m, was in modes.items():
            m.train(was)
    return len(data)
