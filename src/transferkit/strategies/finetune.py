"""Parameter transfer: initialise from the source weights, new head, fine-tune.

Yosinski et al., 2014, "How transferable are features in deep neural networks?" — copying the first
layers and fine-tuning beats training from scratch, and freezing the first ``N`` groups (the most generic
features) is the classic way to trade target-specific accuracy for fewer trainable parameters.

**Default recipe** (issue 26, chosen on development seeds 100–104, see ``benchmarks/RESULTS.md``): a budget in
optimiser steps (:attr:`Finetune.default_steps`, whatever the dataset size; ``--steps``/``--epochs`` override it),
linear warm-up then cosine decay, and **LP-FT** (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features
and Underperform Out-of-Distribution"): the new head starts from the linear probe solved on the frozen features of
the training images (:func:`~transferkit.strategies.probe_solver.solve_probe`, the same solver as ``linear_probe``),
then everything fine-tunes, the backbone at ``backbone_lr`` × the head's rate. A random head's gradients distort
the pretrained features before the head is any good; a head that already fits them makes the first steps refine
instead. ``head="random"`` turns LP-FT off (the plain fine-tuning of Yosinski et al.).

Options beyond ``freeze``:

* ``layer`` — ``"probe"`` (default: the new head reads the stage ``linear_probe`` reads, the source's
  ``default_probe_layer``, and the stages after it are dropped; a no-op for backbones without one, e.g. every
  pretrained ImageNet and text backbone), ``"all"`` (the whole network) or a stage name. Measured on the seed_cnn
  split task, development seeds 100–102 (``benchmarks/RESULTS.md``): with its head on ``fc`` (64 features trained
  for the 5 source classes) LP-FT ended 4 points *below* the probe on ``conv2`` at K = 50; on ``conv2`` it ends
  above it.
* ``head`` — ``"probe"`` (default: LP-FT, as above; the run's ``fit.recipe`` records the probe's C) or
  ``"random"`` (a freshly initialised head). A head that is not one linear layer (a bottleneck or cosine head) or
  multi-task labels start from a random head, and the record says why.
* ``backbone_lr`` — the backbone's learning rate as a factor of the head's (default
  :data:`DEFAULT_BACKBONE_LR`); not with ``lr_decay``/``group_lrs``, which set the rates themselves.

* ``freeze_pattern`` — also freeze groups/modules/parameters by name (:func:`freeze_matching`).
* ``bn`` — ``"frozen"`` (default: BatchNorm in eval mode with the source's statistics, affine frozen;
  :func:`freeze_batchnorm` — batch statistics of a handful of images are noise, and the probe head was solved on
  the features the source statistics give) or ``"train"`` (statistics and affine parameters keep training).
* ``lr_decay`` / ``group_lrs`` — discriminative learning rates (:func:`param_group_lrs`): the head at the
  strategy's learning rate, each earlier group × ``lr_decay``; ``group_lrs`` sets named groups explicitly.
* ``preset="two_phase"`` — the Keras guide's and fastai's ``fine_tune`` recipe: only the head trains for
  ``head_epochs`` epochs (default 3; fastai uses 1), then every (not otherwise frozen) group trains with the
  learning rates × ``phase2_lr`` (default 0.1; the Keras guide drops 1e-3 → 1e-5, fastai halves it).
* ``unfreeze_every=N`` — gradual unfreezing (Howard & Ruder, 2018, "Universal Language Model Fine-tuning",
  ULMFiT): the head trains alone, then every ``N`` epochs one more group, from the top down, joins it.
  Groups frozen by ``freeze``/``freeze_pattern`` never unfreeze. Still-frozen groups run in eval mode.
* ``regularizer`` — ``l2sp``, ``delta`` or ``bss`` (:mod:`transferkit.regularizers`), with ``reg_alpha``
  (L2-SP/DELTA α, BSS η), ``reg_beta`` (L2-SP/DELTA β on the head), ``reg_k`` (BSS k), ``reg_layers`` and
  ``reg_attention`` (DELTA). L2-SP and DELTA replace weight decay, as in their papers: the optimiser groups
  get ``weight_decay=0``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.regularizers import Regularizer, get_regularizer, list_regularizers
from transferkit.regularizers.base import regularizer_class
from transferkit.strategies.base import Phase, Strategy, TrainingPlan, register_strategy, truncation_stage
from transferkit.strategies.freezing import freeze_batchnorm, freeze_groups, freeze_matching, split_patterns
from transferkit.strategies.lr_groups import param_group_lrs, parse_group_lrs

__all__ = ["BN_POLICIES", "Finetune", "freeze_groups"]

BN_POLICIES = ("frozen", "train")
HEAD_INITS = ("probe", "random")
DEFAULT_BACKBONE_LR = 0.1  # the backbone's rate as a factor of the head's (LP-FT's features move slowly)
PRESETS = ("none", "two_phase")
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
    paper = "Yosinski et al., 2014; LP-FT: Kumar et al., 2022"
    kind = "parameter transfer"
    default_lr = 1e-3  # the head's rate; the backbone's is backbone_lr × this
    default_batch_size = 32
    default_steps = 100  # a floor of optimiser steps, whatever the dataset size (benchmarks/RESULTS.md, issue 26)
    min_epochs = 1
    default_schedule = "cosine"
    warmup = 0.1
    option_defaults = {"freeze": 0, "freeze_pattern": None, "bn": "frozen", "head": "probe", "layer": "probe",
                       "backbone_lr": None,
                       "lr_decay": None, "group_lrs": None,
                       "preset": "none", "head_epochs": None, "phase2_lr": None, "unfreeze_every": None,
                       "regularizer": None, **dict.fromkeys(REG_OPTIONS)}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if o["freeze_pattern"] is not None and not split_patterns(o["freeze_pattern"]):
            raise ValueError("finetune: freeze_pattern is empty; give fnmatch patterns such as 'conv1' or 'stages.*'")
        if o["bn"] not in BN_POLICIES:
            raise ValueError(f"finetune: bn='{o['bn']}' is not a BatchNorm policy; valid choices: "
                             f"{', '.join(BN_POLICIES)} (default frozen)")
        if o["head"] not in HEAD_INITS:
            raise ValueError(f"finetune: head='{o['head']}' is not a head initialisation; valid choices: "
                             f"{', '.join(HEAD_INITS)} (default probe: LP-FT)")
        f = o["backbone_lr"]
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0):
            raise ValueError(f"finetune: backbone_lr is the backbone's rate as a factor of the head's and must be "
                             f"> 0 (e.g. 0.1), got {f!r}")
        if f is not None and (o["lr_decay"] is not None or o["group_lrs"] is not None):
            raise ValueError("finetune: backbone_lr and lr_decay/group_lrs both set the backbone's rates; choose one")
        decay = o["lr_decay"]
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0):
            raise ValueError(f"finetune: lr_decay must be a positive number (e.g. 0.5: each earlier group at half "
                             f"the rate), got {decay!r}")
        if o["group_lrs"] is not None:
            o["group_lrs"] = parse_group_lrs(o["group_lrs"], "finetune: group_lrs")
        self._check_schedule()
        self._check_regularizer()

    def _check_schedule(self) -> None:
        o = self.options
        if o["preset"] not in PRESETS:
            raise ValueError(f"finetune: preset='{o['preset']}' is unknown; valid choices: {', '.join(PRESETS)}")
        for key in ("head_epochs", "unfreeze_every"):
            v = o[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"finetune: {key} must be a whole number of epochs ≥ 1, got {v!r}")
        v = o["phase2_lr"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"finetune: phase2_lr is a factor on the learning rates and must be > 0, got {v!r}")
        two = o["preset"] == "two_phase"
        wrong = [k for k in ("head_epochs", "phase2_lr") if o[k] is not None and not two]
        if wrong:
            raise ValueError(f"finetune: {', '.join(wrong)} applies to preset=two_phase only")
        if two and o["unfreeze_every"] is not None:
            raise ValueError("finetune: preset=two_phase and unfreeze_every are two different unfreezing "
                             "schedules; choose one")
        if two:
            o["head_epochs"] = o["head_epochs"] or 3
            o["phase2_lr"] = o["phase2_lr"] or 0.1

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

    def _phases(self, model: Backbone, cfg: TrainConfig) -> tuple[list[Phase], list[nn.Module]]:
        """Hold back the groups that unfreeze later (``preset=two_phase``, ``unfreeze_every``); return the
        phases that release them and the held modules (in eval mode until released).

        Call after the permanent freezing: groups already frozen are never released.
        """
        o = self.options
        if o["preset"] != "two_phase" and o["unfreeze_every"] is None:
            return [], []
        held = [g for g in model.param_groups() if g.name != "head" and any(p.requires_grad for p in g.params)]
        if not held:
            raise ValueError(f"finetune: {'preset=two_phase' if o['preset'] == 'two_phase' else 'unfreeze_every'} "
                             "has nothing to unfreeze: every group but the head is frozen (freeze/freeze_pattern)")
        released = [(g, [p for p in g.params if p.requires_grad]) for g in held]
        for _, params in released:
            for p in params:
                p.requires_grad_(False)
        bn_fixed = set()
        if o["bn"] == "frozen":
            bn_fixed = {id(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}

        def trainable_modules(g) -> list[nn.Module]:  # noqa: ANN001
            return [m for top in g.modules for m in top.modules() if id(m) not in bn_fixed]

        if o["preset"] == "two_phase":
            if o["head_epochs"] >= cfg.epochs:
                raise ValueError(f"finetune: head_epochs={o['head_epochs']} leaves no epoch for the second phase "
                                 f"(epochs={cfg.epochs}); use fewer head epochs or more epochs")
            phases = [Phase(o["head_epochs"], "all groups", [p for _, ps in released for p in ps],
                            [m for g, _ in released for m in trainable_modules(g)], float(o["phase2_lr"]))]
        else:
            n = int(o["unfreeze_every"])
            if n >= cfg.epochs:
                raise ValueError(f"finetune: unfreeze_every={n} unfreezes nothing within epochs={cfg.epochs}")
            phases = [Phase(n * (i + 1), f"+{g.name}", ps, trainable_modules(g))
                      for i, (g, ps) in enumerate(reversed(released)) if n * (i + 1) < cfg.epochs]
        held_modules = [m for g, _ in released for m in g.modules]
        return phases, held_modules

    def fine_tuned_layer(self, source: Backbone) -> str | None:
        """The stage whose output the new head reads, when it is not the source's last (``None``: the whole
        network). ``layer="probe"`` (default) is the stage ``linear_probe`` reads — the source's
        ``default_probe_layer`` (``seed_cnn``: ``conv2``; pretrained ImageNet and text backbones have none: their
        last stage) — so that LP-FT fine-tunes the very model its probe solved; ``"all"`` keeps every stage."""
        want = self.options["layer"]
        if want == "all":
            return None
        layer = truncation_stage(source, source.default_probe_layer if want == "probe" else str(want))
        stages = list(source.stages)
        if layer is not None and stages and layer not in stages:
            raise ValueError(f"finetune: layer={layer!r} is not a stage of {source.arch}; valid: probe, all, "
                             f"{', '.join(stages)}")
        return layer

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

    @staticmethod
    def fit_probe_head(model: Backbone, train: TensorBatches, num_classes: int, cfg: TrainConfig) -> dict[str, Any]:
        """LP-FT's first step: solve the linear probe on ``model``'s frozen features of the training images and
        load it into ``model.head`` (in place). Returns the record for ``fit.recipe``: ``head_init`` (``probe``, or
        ``random`` with ``head_init_reason`` when the head or labels do not allow it), the probe's ``C`` and how it
        was chosen, and the seconds it took."""
        from transferkit.strategies.linear_probe import frozen_features
        from transferkit.strategies.probe_solver import check_finite, solve_probe

        head = model.head
        if not isinstance(head, nn.Linear):
            return {"head_init": "random", "head_init_reason": f"the head is not one linear layer "
                                                               f"({type(head).__name__})"}
        if train.y.ndim != 1:
            return {"head_init": "random", "head_init_reason": "multi-task labels (one probe per task is not built)"}
        if len(torch.unique(train.y)) < 2:
            return {"head_init": "random", "head_init_reason": "fewer than 2 classes in the training labels"}
        start = time.perf_counter()
        features, _ = frozen_features(model, train, cfg.accelerator)
        check_finite(features, f"the training features of {model.arch} (finetune head=probe)")
        balanced = cfg.class_weight == "balanced" or cfg.sampler == "balanced"
        sol = solve_probe(features, train.y, num_classes, "auto", seed=cfg.seed, balanced=balanced,
                          name=f"the training features of {model.arch}")
        with torch.no_grad():
            head.weight.copy_(sol.weight.to(head.weight))
            head.bias.copy_(sol.bias.to(head.bias))
        return {"head_init": "probe", "probe_C": sol.record["C"], "probe_chosen_by": sol.record["chosen_by"],
                "probe_s": time.perf_counter() - start}

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        cfg = self.resolve(cfg, train)
        o = self.options
        torch.manual_seed(cfg.seed)  # the new head's init depends on the seed alone
        model = self.copy_source(source)
        layer = self.fine_tuned_layer(source)
        if layer is not None:  # the stages after it are dropped: the new head reads this stage, as the probe does
            model.truncate(layer)
        model.reset_classifier(num_classes)
        frozen = freeze_groups(model, int(o["freeze"]))
        if o["freeze_pattern"] is not None:
            frozen += freeze_matching(model, o["freeze_pattern"])
        if o["bn"] == "frozen":
            frozen += freeze_batchnorm(model)
        recipe: dict[str, Any] = {"bn": o["bn"], **({"layer": layer} if layer is not None else {})}
        if o["lr_decay"] is None and o["group_lrs"] is None:
            factor = float(o["backbone_lr"] if o["backbone_lr"] is not None else DEFAULT_BACKBONE_LR)
            head_ids = {id(p) for p in model.head.parameters()}
            body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
            top = [p for p in model.head.parameters() if p.requires_grad]
            groups = [g for g in ({"params": body, "lr": cfg.lr * factor, "name": "backbone"},
                                  {"params": top, "lr": cfg.lr, "name": "head"}) if g["params"]]
            recipe["backbone_lr"] = factor
        else:
            groups = param_group_lrs(model, cfg.lr, o["lr_decay"], o["group_lrs"])
        phases, held = self._phases(model, cfg)
        extra_s = 0.0
        if o["head"] == "probe":
            recipe.update(self.fit_probe_head(model, train, num_classes, cfg))
            extra_s = recipe.get("probe_s", 0.0)
        else:
            recipe["head_init"] = "random"
        plan = TrainingPlan(model, groups, train, val, cfg, self.name, self.recorded_options(),
                            eval_modules=frozen + held, phases=phases, head=model.head, recipe=recipe,
                            extra_time_s=extra_s)
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
