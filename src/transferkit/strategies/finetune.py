"""Parameter transfer: initialise from the source weights, new head, fine-tune.

Yosinski et al., 2014, "How transferable are features in deep neural networks?" — copying the first
layers and fine-tuning beats training from scratch, and freezing the first ``N`` groups (the most generic
features) is the classic way to trade target-specific accuracy for fewer trainable parameters.

Options beyond ``freeze`` (every default leaves plain fine-tuning exactly as it was):

* ``freeze_pattern`` — also freeze groups/modules/parameters by name (:func:`freeze_matching`).
* ``bn`` — ``"train"`` (default: BatchNorm statistics and affine parameters keep training) or ``"frozen"``
  (BatchNorm in eval mode with the source's statistics, affine frozen; :func:`freeze_batchnorm`).
* ``lr_decay`` / ``group_lrs`` — discriminative learning rates (:func:`param_group_lrs`): the head at the
  strategy's learning rate, each earlier group × ``lr_decay``; ``group_lrs`` sets named groups explicitly.
* ``regularizer`` — ``l2sp``, ``delta`` or ``bss`` (:mod:`transferkit.regularizers`), with ``reg_alpha``
  (L2-SP/DELTA α, BSS η), ``reg_beta`` (L2-SP/DELTA β on the head), ``reg_k`` (BSS k), ``reg_layers`` and
  ``reg_attention`` (DELTA). L2-SP and DELTA replace weight decay, as in their papers: the optimiser groups
  get ``weight_decay=0``.
"""

from __future__ import annotations

from typing import Any

import torch

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.regularizers import Regularizer, get_regularizer, list_regularizers
from transferkit.regularizers.base import regularizer_class
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy
from transferkit.strategies.freezing import freeze_batchnorm, freeze_groups, freeze_matching, split_patterns
from transferkit.strategies.lr_groups import param_group_lrs, parse_group_lrs

__all__ = ["BN_POLICIES", "Finetune", "freeze_groups"]

BN_POLICIES = ("train", "frozen")
REG_OPTIONS = ("reg_alpha", "reg_beta", "reg_k", "reg_layers", "reg_attention")
ATTENTION_SAMPLE = 128  # training examples DELTA's channel attention is measured on (once, before training)


def training_sample(data: TensorBatches, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random sample of at most ``n`` labelled examples ``(x, y)`` of ``data`` (classes mixed)."""
    if len(data) == 0:
        raise ValueError("the training set is empty")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:n].sort().values.tolist()
    x, y = data.__getitems__(idx)
    return x, y


@register_strategy
class Finetune(Strategy):
    """Every weight from the source, a new head; ``freeze=N`` freezes the first N parameter groups.

    See the module docstring for ``freeze_pattern``, ``bn``, ``lr_decay``, ``group_lrs`` and ``regularizer``
    with its ``reg_*`` coefficients. Options are checked here, before any data or model is touched; those
    that depend on the model (group names, patterns, how many groups exist) are checked by :meth:`plan`
    before training starts.
    """

    name = "finetune"
    aliases = ("parameter",)
    kind = "parameter transfer"
    default_lr = 1e-3
    option_defaults = {"freeze": 0, "freeze_pattern": None, "bn": "train", "lr_decay": None, "group_lrs": None,
                       "regularizer": None, **dict.fromkeys(REG_OPTIONS)}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if o["freeze_pattern"] is not None and not split_patterns(o["freeze_pattern"]):
            raise ValueError("finetune: freeze_pattern is empty; give fnmatch patterns such as 'conv1' or 'stages.*'")
        if o["bn"] not in BN_POLICIES:
            raise ValueError(f"finetune: bn='{o['bn']}' is not a BatchNorm policy; valid choices: "
                             f"{', '.join(BN_POLICIES)} (default train)")
        decay = o["lr_decay"]
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0):
            raise ValueError(f"finetune: lr_decay must be a positive number (e.g. 0.5: each earlier group at half "
                             f"the rate), got {decay!r}")
        if o["group_lrs"] is not None:
            o["group_lrs"] = parse_group_lrs(o["group_lrs"], "finetune: group_lrs")
        self._check_regularizer()

    def _check_regularizer(self) -> None:
        o, choices = self.options, ", ".join(list_regularizers())
        given = [k for k in REG_OPTIONS if o[k] is not None]
        if o["regularizer"] is None:
            if given:
                raise ValueError(f"finetune: {', '.join(given)} needs regularizer= (valid choices: {choices})")
            return
        if o["regularizer"] not in list_regularizers():
            raise ValueError(f"finetune: regularizer '{o['regularizer']}' is unknown; valid choices: {choices}")
        accepted = ["reg_" + k for k in regularizer_class(o["regularizer"]).strategy_options]
        wrong = [k for k in given if k not in accepted]
        if wrong:
            raise ValueError(f"finetune: {', '.join(wrong)} does not apply to regularizer '{o['regularizer']}'; "
                             f"its options: {', '.join(accepted)}")
        try:
            self.build_regularizer()
        except ValueError as e:
            raise ValueError(f"finetune: {', '.join(given)}: {e}") from None

    def build_regularizer(self) -> Regularizer | None:
        """The configured regulariser, not yet attached (``None`` without ``regularizer``)."""
        o = self.options
        if o["regularizer"] is None:
            return None
        mapping = regularizer_class(o["regularizer"]).strategy_options
        return get_regularizer(o["regularizer"], **{coeff: o["reg_" + key] for key, coeff in mapping.items()})

    def recorded_options(self) -> dict[str, Any]:
        """``freeze`` plus every option set away from its default (what runs and reports record)."""
        return {k: v for k, v in self.options.items() if k == "freeze" or v != self.option_defaults[k]}

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg)
        o = self.options
        torch.manual_seed(cfg.seed)  # the new head's init depends on the seed alone
        model = self.copy_source(source)
        model.reset_classifier(num_classes)
        frozen = freeze_groups(model, int(o["freeze"]))
        if o["freeze_pattern"] is not None:
            frozen += freeze_matching(model, o["freeze_pattern"])
        if o["bn"] == "frozen":
            frozen += freeze_batchnorm(model)
        if o["lr_decay"] is None and o["group_lrs"] is None:
            params = [p for p in model.parameters() if p.requires_grad]
            groups = [{"params": params, "lr": cfg.lr, "name": "trainable"}]
        else:
            groups = param_group_lrs(model, cfg.lr, o["lr_decay"], o["group_lrs"])
        plan = TrainingPlan(model, groups, train, val, cfg, self.name, self.recorded_options(), eval_modules=frozen)
        reg = self.build_regularizer()
        if reg is not None:
            data = training_sample(train, ATTENTION_SAMPLE, cfg.seed) if reg.needs_data else None
            reg.attach(model, source, data)
            if reg.replaces_weight_decay:
                for g in groups:
                    g["weight_decay"] = 0.0

            def detach_hooks() -> Backbone:
                reg.detach()  # the finished model carries no training hooks
                return model

            plan.loss_terms, plan.finalize = [reg], detach_hooks
        return plan
