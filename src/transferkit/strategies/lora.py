"""LoRA: train low-rank adapters on the frozen source network plus a new head (Hugging Face ``peft``).

Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models": a frozen weight ``W`` gets a trainable
update ``(alpha / r) · B·A`` of rank ``r`` (``B`` starts at zero, so training starts exactly at the source
model). Only the adapters and the new head train — typically 1–5 % of the parameters — and the target
artefact is the adapters plus the head, a fraction of a full copy; :func:`merge_lora` folds the update back
into ``W`` for a plain model with no adapter overhead at inference.

The adapters are injected by ``peft`` (``LoraModel``) into the backbone's ``nn.Conv2d`` and ``nn.Linear``
layers; ``target="auto"`` picks every such layer outside the head, except grouped (depthwise) convolutions,
which ``peft`` cannot adapt at a rank that is not a multiple of the groups. ``target`` may instead list
``fnmatch`` patterns over module names (``stages.stage7.*,stages.conv_head.*``).

Options: ``r`` (rank, default 8), ``alpha`` (default ``r``: scale 1), ``dropout`` (on the adapter input,
default 0), ``target`` and ``bn`` (``frozen`` by default: BatchNorm keeps the source's statistics, so the
adapters and head are all that changes; ``train`` re-estimates the running statistics, which the bundle then
stores as well).

Recipe (issue 26): like ``finetune``, a budget in optimiser steps (:attr:`Lora.default_steps`, whatever the
dataset size; ``--steps``/``--epochs`` override it), linear warm-up and cosine decay, final weights.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from transferkit.backbones.adapters import ADAPTER_KEY, BN_POLICIES, adapter_state, inject_lora, merge_lora
from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import weights_hash
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy
from transferkit.strategies.freezing import split_patterns

__all__ = ["Lora", "adapter_state", "inject_lora", "lora_targets", "merge_lora"]

def _adaptable(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def lora_targets(model: Backbone, target: str = "auto") -> list[str]:
    """Names of the modules LoRA adapts: ``"auto"`` = the backbone's ``lora_default_targets`` when it names them
    (text encoders: the attention query and value projections), else every ``Linear`` and ungrouped ``Conv2d``
    outside the head; or the adaptable modules matching comma-separated ``fnmatch`` patterns.

    A pattern that matches no module, or matches only modules LoRA cannot adapt, is an error listing the
    adaptable module names.
    """
    candidates = [n for n, m in model.named_modules() if n and _adaptable(m) and not n.startswith("head")]
    if target == "auto" and getattr(model, "lora_default_targets", None):  # e.g. a transformer's query/value
        return [n for n in model.lora_default_targets if n in candidates]
    if target == "auto":
        if not candidates:
            raise ValueError(f"lora: {model.arch} has no Linear or Conv2d layer outside its head to adapt")
        return candidates
    pats = split_patterns(target)
    if not pats:
        raise ValueError("lora: target is empty; give 'auto' or module-name patterns such as 'stages.*'")
    chosen: list[str] = []
    for pat in pats:
        names = [n for n, _ in model.named_modules() if n and fnmatchcase(n, pat)]
        hits = [n for n in names if n in candidates]
        if not hits:
            what = (f"matches only modules LoRA cannot adapt ({', '.join(names[:5])})" if names
                    else "matches no module")
            shown = ", ".join(candidates[:30]) + (f", … ({len(candidates) - 30} more)" if len(candidates) > 30 else "")
            raise ValueError(f"lora: target pattern '{pat}' {what} of {model.arch}; adaptable modules "
                             f"(Linear, Conv2d with groups=1, outside the head): {shown}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


@register_strategy
class Lora(Strategy):
    """Low-rank adapters on the frozen source (``peft``) + a new head; see the module docstring."""

    name = "lora"
    aliases = ("adapters",)
    paper = "Hu et al., 2022 (LoRA)"
    kind = "parameter transfer (low-rank adapters)"
    default_lr = 5e-3  # the PEFT image-classification guide's rate for LoRA; adapters start at zero
    default_batch_size = 32
    default_steps = 100  # as finetune's floor
    min_epochs = 1
    default_schedule = "cosine"
    warmup = 0.1
    option_defaults = {"r": 8, "alpha": None, "dropout": 0.0, "target": "auto", "bn": "frozen"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if isinstance(o["r"], bool) or not isinstance(o["r"], int) or o["r"] < 1:
            raise ValueError(f"lora: r (the adapter rank) must be a whole number ≥ 1, got {o['r']!r}")
        if o["alpha"] is None:
            o["alpha"] = o["r"]
        if isinstance(o["alpha"], bool) or not isinstance(o["alpha"], (int, float)) or not o["alpha"] > 0:
            raise ValueError(f"lora: alpha must be a positive number (scale = alpha / r), got {o['alpha']!r}")
        if not isinstance(o["dropout"], (int, float)) or not 0 <= o["dropout"] < 1:
            raise ValueError(f"lora: dropout must be in [0, 1), got {o['dropout']!r}")
        if o["bn"] not in BN_POLICIES:
            raise ValueError(f"lora: bn='{o['bn']}' is not a BatchNorm policy; valid choices: frozen (default), train")
        if not isinstance(o["target"], str) or (o["target"] != "auto" and not split_patterns(o["target"])):
            raise ValueError(f"lora: target must be 'auto' or comma-separated module-name patterns, got "
                             f"{o['target']!r}")

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg, train)
        o = self.options
        targets = lora_targets(source, o["target"])  # fails before anything is copied
        torch.manual_seed(cfg.seed)  # the head's and the adapters' init depend on the seed alone
        model = self.copy_source(source)
        model.reset_classifier(num_classes)
        inject_lora(model, targets, o["r"], o["alpha"], o["dropout"])
        model.adapter["bn"] = o["bn"]
        model.adapter["base"] = {"architecture": source.config(), "weights_hash": weights_hash(source)}
        for p in model.head.parameters():
            p.requires_grad_(True)
        adapters = [p for n, p in model.named_parameters() if ADAPTER_KEY in n]
        frozen_bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] \
            if o["bn"] == "frozen" else []
        groups = [{"params": adapters, "lr": cfg.lr, "name": "lora"},
                  {"params": list(model.head.parameters()), "lr": cfg.lr, "name": "head"}]
        options = {**o, "targets": len(targets)}
        return TrainingPlan(model, groups, train, val, cfg, self.name, options, eval_modules=frozen_bn,
                            head=model.head, recipe={"head_init": "random", "bn": o["bn"]})
