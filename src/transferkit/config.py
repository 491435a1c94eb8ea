"""Typed configuration objects that round-trip through YAML, the run directory and the bundle."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from transferkit.errors import ConfigError
from transferkit.lazy import lazy_module

tyro = lazy_module("tyro")  # flags are made only when a command line is parsed

Optimizer = Literal["adamw", "adam", "sgd"]
Schedule = Literal["constant", "cosine", "onecycle"]
AugmentPreset = Literal["none", "light", "standard", "strong"]
ClassWeight = Literal["none", "balanced"]
Sampler = Literal["random", "balanced"]
Distributed = Literal["auto", "ddp", "ddp_find_unused_parameters_true"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
# the choices, declared once as the types above (the command line takes its choices from the same types)
OPTIMIZERS, SCHEDULES, AUGMENT_PRESETS = get_args(Optimizer), get_args(Schedule), get_args(AugmentPreset)
CLASS_WEIGHTS, SAMPLERS, DISTRIBUTED = get_args(ClassWeight), get_args(Sampler), get_args(Distributed)
ACCELERATORS, PRECISIONS = get_args(Accelerator), get_args(Precision)
FitT = TypeVar("FitT", bound="FitOptions")
DEFAULT_EPOCHS = 30  # epochs of a configuration that names no budget and is trained without a strategy's recipe


def either_flag(deterministic: bool = False, no_deterministic: bool = False) -> bool | None:
    """``--deterministic`` / ``--no-deterministic`` / neither (``None``: the default, on for CPU runs)."""
    if deterministic and no_deterministic:
        raise ConfigError("deterministic", "its flag or its no- flag, not both", "both")
    return True if deterministic else False if no_deterministic else None


@dataclass(frozen=True)
class OptimiserOptions:
    """The optimiser, its batches and the seed: what every job that takes optimiser steps sets."""

    batch_size: int | None = None
    """the global batch size (default: the strategy's own)"""
    optimizer: Optimizer = "adamw"
    """the optimiser"""
    weight_decay: float = 1e-4
    """weight decay of the optimiser"""
    seed: int = 0
    """seed of the label draw, the initialisation and the batches"""


@dataclass(frozen=True)
class FitOptions(OptimiserOptions):
    """How the model is fitted: budget, optimiser, schedule, early stopping, devices and seed."""

    # A job's ``train`` part (or, with the batch-side options, :class:`TrainOptions`); :class:`TrainConfig` adds what
    # the jobs set. Each field's docstring is its help on the command line (generated from these fields; one line
    # each: tyro keeps a docstring's line breaks), the choices are the ``Literal`` types. Values are checked when a
    # job turns the options into a :class:`TrainConfig` (a :class:`~transferkit.errors.ConfigError` naming the field).

    steps: int | None = None
    """optimiser steps whatever the dataset size (default: the strategy's recipe: finetune 100), not with epochs"""
    epochs: int | None = None
    """passes over the training set instead of steps (default: derived from the steps)"""
    lr: float | None = None
    """learning rate (default: the strategy's own)"""
    patience: int | None = None
    """early-stopping patience in epochs on the validation loss (default off; needs a validation set)"""
    schedule: Schedule | None = None
    """learning-rate schedule (default: the strategy's recipe: warm-up + cosine for finetune, scratch, lora)"""
    warmup_epochs: int = 0
    """linear warm-up epochs before the schedule"""
    accelerator: Accelerator = "auto"
    """auto: a CUDA GPU when one is visible, else the CPU; or cpu, gpu (= cuda), mps"""
    precision: Precision = "32-true"
    """bf16-mixed or 16-mixed: mixed-precision training (16-mixed needs a GPU; bf16-mixed also runs on a CPU)"""
    devices: int | str = 1
    """passed to Lightning"""
    progress: bool = True
    """show the progress bar"""
    checkpoint_every: int | None = 200
    """write a resume checkpoint every this many optimiser steps, besides every epoch end"""
    num_nodes: int = 1
    """machines for DDP (see the README)"""
    distributed: Distributed = "auto"
    """Lightning strategy when devices × num_nodes > 1: auto = ddp (gloo on CPU); batch_size is the global batch"""
    deterministic: Annotated[bool | None, tyro.conf.arg(constructor=either_flag)] = None
    """deterministic algorithms: bit-identical metrics for a seed (default: on for CPU)"""


@dataclass(frozen=True)
class TrainOptions(FitOptions):
    """How the model is trained: budget, optimiser, schedule, augmentation, class balance, devices and seed."""

    augment: AugmentPreset | None = None
    """augmentation of training batches (default: the strategy's recipe: light for scratch, none otherwise)"""
    mixup: float = 0.0
    """Mixup Beta(α, α) parameter; 0 = off"""
    cutmix: float = 0.0
    """CutMix Beta(α, α) parameter; 0 = off"""
    class_weight: ClassWeight = "none"
    """balanced: weight the loss by inverse class frequency"""
    sampler: Sampler = "random"
    """balanced: draw every class equally often"""


@dataclass(frozen=True)
class TrainConfig(TrainOptions):
    """How the engine trains — a job's :class:`TrainOptions` plus what the job sets (``monitor``,
    ``checkpoints``, ``warmup_steps``, ``sync_batchnorm``, ``resume_from``): the budget (optimiser steps or epochs),
    batch size, optimiser and schedule, early stopping, devices, seed, augmentation (training batches only) and
    class-imbalance handling.

    **Budget.** ``steps`` is the number of optimiser steps; ``epochs`` (given explicitly) the number of passes
    over the training set instead — give one, not both (:func:`check_budget`; once resolved, a step budget also
    carries the epochs derived from it). With neither, the strategy's recipe decides
    (:meth:`transferkit.strategies.base.Strategy.resolve`: a floor of steps whatever the dataset size, e.g. 300 for
    ``finetune``), and the epochs are derived from the steps and the number of batches per epoch
    (:func:`resolve_budget`). A budget in steps makes training with 50 labelled images take as many updates as with
    5000 — an epoch budget gave 50 images one step per epoch.

    ``schedule``: ``None`` (default) = the strategy's recipe (``cosine`` after a linear warm-up over
    ``warmup_steps`` for the stepped strategies), ``constant``, ``cosine`` (cosine decay to 0 over the run, after
    ``warmup_epochs`` of linear warm-up) or ``onecycle`` (Smith & Topin, 2017, "Super-Convergence").
    ``augment``: ``None`` (default) = the strategy's recipe (``none`` unless it says otherwise; ``scratch``
    trains with ``light``), or a torchvision ``transforms.v2`` preset (``none``/``light``/``standard``/``strong``);
    ``mixup``/``cutmix``: Beta(α, α) parameter, 0 = off (Zhang et al., 2018; Yun et al., 2019).
    ``class_weight="balanced"`` weights the loss by inverse class frequency; ``sampler="balanced"`` draws
    classes equally often instead.

    Scale and faults: ``devices`` × ``num_nodes`` processes train with ``distributed`` (Lightning's strategy:
    ``auto`` picks DDP for more than one device; gloo on CPU); ``batch_size`` is the **global** batch, split
    over the processes, with BatchNorm synchronised (``sync_batchnorm``), so a 2-process run takes the same
    steps as a 1-process one. ``deterministic=None`` means on for CPU runs (bit-identical for a seed).
    ``checkpoint_every`` optimiser steps (and at every epoch end) a resume checkpoint is written when the
    job gives a run directory; ``resume_from`` continues from one (set by the jobs' ``resume``).

    ``lr=None`` and ``batch_size=None`` let the strategy choose its own defaults (a linear probe on cached
    features takes larger, cheaper batches than fine-tuning a network). Early stopping (only with ``patience``;
    off by default: with a handful of validation images it listens to noise) and the best checkpoint both follow
    ``monitor`` on the **validation** split (never the test split); without validation data the final weights
    are kept.
    """

    monitor: str = "val_loss"
    checkpoints: bool = True
    warmup_steps: int | None = None  # set by the recipe (a share of the steps); None: from warmup_epochs
    sync_batchnorm: bool = True
    resume_from: str | None = None

    @property
    def processes(self) -> int:
        """How many training processes the devices and nodes make (1 for ``devices`` like ``"auto"``)."""
        d = self.devices
        n = len(d) if isinstance(d, list | tuple) else (int(d) if str(d).isdigit() else 1)
        return max(n, 1) * max(self.num_nodes, 1)

    def __post_init__(self) -> None:
        """Refuse a value no run can take, naming the parameter (:class:`~transferkit.errors.ConfigError`)."""
        if self.epochs is not None and self.epochs < 1:  # both may be set: a resolved budget carries its epochs
            raise ConfigError("epochs", "at least 1", self.epochs)
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise ConfigError("steps", "at least 1 optimiser step", self.steps)
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError("warmup_steps", "≥ 0", self.warmup_steps)
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("batch_size", "at least 1", self.batch_size)
        if self.lr is not None and self.lr <= 0:
            raise ConfigError("lr", "a positive learning rate", self.lr)
        for name, value, choices in (("optimizer", self.optimizer, OPTIMIZERS),
                                     ("monitor", self.monitor, ("val_loss", "val_acc")),
                                     ("schedule", self.schedule, SCHEDULES), ("augment", self.augment, AUGMENT_PRESETS),
                                     ("class_weight", self.class_weight, CLASS_WEIGHTS),
                                     ("sampler", self.sampler, SAMPLERS),
                                     ("distributed", self.distributed, DISTRIBUTED),
                                     ("accelerator", self.accelerator, ACCELERATORS),
                                     ("precision", self.precision, PRECISIONS)):
            if value is not None and value not in choices:
                raise ConfigError(name, f"one of {', '.join(choices)}", value)
        if self.warmup_epochs < 0 or (self.epochs is not None and self.warmup_epochs >= self.epochs):
            limit = f"epochs - 1 ({self.epochs - 1})" if self.epochs is not None else "the epochs run - 1"
            raise ConfigError("warmup_epochs", f"between 0 and {limit}", self.warmup_epochs)
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ConfigError("warmup_epochs", "0 with schedule onecycle (it has its own warm-up)", self.warmup_epochs,
                              "use it with cosine or constant")
        for name, value in (("mixup", self.mixup), ("cutmix", self.cutmix)):
            if not value >= 0:
                raise ConfigError(name, "the Beta(α, α) parameter, ≥ 0 (0 = off)", value)
        if self.num_nodes < 1:
            raise ConfigError("num_nodes", "at least 1", self.num_nodes)
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError("checkpoint_every", "at least 1 step (or None: epoch ends only)", self.checkpoint_every)
        if self.batch_size is not None and self.batch_size < self.processes:
            raise ConfigError("batch_size", f"the global batch, at least the number of processes ({self.processes})",
                              self.batch_size)
        if self.class_weight == "balanced" and self.sampler == "balanced":
            raise ConfigError("sampler", "not 'balanced' together with class_weight 'balanced' (both correct class "
                              "imbalance; applying both over-corrects)", self.sampler)

    @property
    def max_epochs(self) -> int:
        """The epochs the loop may run: ``epochs`` once resolved, else :data:`DEFAULT_EPOCHS` (a configuration
        trained without a strategy's recipe, e.g. by the multi-task or adaptation loops)."""
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, options: OptimiserOptions, **settings: Any) -> TrainConfig:
        """The engine's configuration from a job's :class:`TrainOptions` (or its :class:`FitOptions` or
        :class:`OptimiserOptions` part) and what the job sets itself."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(options)}, **settings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**d)


def read_structured_file(path: str | Path, option: str) -> Any:
    """The content of a YAML file (or JSON, by its ``.json`` suffix) given as ``option`` (e.g. ``--class-map``);
    an unreadable or malformed file is a ``ValueError`` naming the option, the file and the parser's message."""
    import yaml

    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{option} {p}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    is_json = p.suffix.lower() == ".json"
    try:
        return json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{option} {p}: not valid {'JSON' if is_json else 'YAML'} ({exc})") from None


def check_budget(epochs: int | None, steps: int | None) -> None:
    """Refuse a run given both budgets, or a budget below 1 (``steps``/``epochs``), before anything loads."""
    if epochs is not None and steps is not None:
        raise ConfigError("steps", f"no epochs budget beside it (epochs={epochs}: two budgets for the same run)",
                          steps, "give one — steps: optimiser steps; epochs: passes over the training set")
    if steps is not None and (isinstance(steps, bool) or steps < 1):
        raise ConfigError("steps", "at least 1 optimiser step", steps)
    if epochs is not None and epochs < 1:
        raise ConfigError("epochs", "at least 1", epochs)


def steps_replace_default_epochs(options: FitT, default: FitOptions) -> FitT:
    """``options`` whose ``steps`` budget replaces the job's declared default ``epochs`` (a job like ``pretrain``
    declares epochs; ``--steps 500`` then means 500 steps, not both budgets); epochs given explicitly stay, and
    :func:`check_budget` refuses the two together."""
    if options.steps is not None and default.epochs is not None and options.epochs == default.epochs:
        return dataclasses.replace(options, epochs=None)
    return options


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one pass over ``n_train`` examples at global batch ``batch_size`` (the last batch short)."""
    return max(math.ceil(n_train / max(batch_size, 1)), 1)


def resolve_budget(cfg: TrainConfig, n_train: int, steps: int | None, min_epochs: int = 1, schedule: str = "constant",
                   warmup: float = 0.0, augment: str = "none") -> TrainConfig:
    """``cfg`` with a concrete budget, schedule and augmentation: a strategy's recipe fills in what ``cfg`` leaves
    unset (``cfg.batch_size`` must be set).

    Budget: ``cfg.steps`` given → that many steps; ``cfg.epochs`` given → those epochs (``steps`` stays ``None``:
    every batch of every epoch); neither → ``max(steps, min_epochs × batches per epoch)`` steps — a floor of
    ``steps`` whatever the dataset size, at least ``min_epochs`` passes over a large one — or, for a recipe without a
    step budget (``steps=None``), :data:`DEFAULT_EPOCHS` epochs. With a step budget, ``epochs`` becomes
    ``ceil(steps / batches per epoch)`` (the loop stops at the step budget, part-way through the last epoch if need
    be). ``schedule``/``augment`` fill ``cfg``'s ``None``; when the schedule comes from the recipe and no
    ``warmup_epochs`` were given, ``warmup`` (a share of the steps) sets ``warmup_steps`` (linear warm-up, Goyal et
    al., 2017, "Accurate, Large Minibatch SGD").
    """
    if cfg.batch_size is None:
        raise ValueError("resolve_budget needs a concrete batch_size (Strategy.resolve fills it in)")
    per_epoch = batches_per_epoch(n_train, cfg.batch_size)
    budget: dict[str, Any] = {}
    if cfg.steps is not None:
        budget = {"steps": cfg.steps, "epochs": math.ceil(cfg.steps / per_epoch)}
    elif cfg.epochs is None:
        if steps is None:
            budget = {"epochs": DEFAULT_EPOCHS}
        else:
            total = max(int(steps), int(min_epochs) * per_epoch)
            budget = {"steps": total, "epochs": math.ceil(total / per_epoch)}
    out = dataclasses.replace(cfg, **budget)
    total_steps = out.steps if out.steps is not None else out.max_epochs * per_epoch
    extra: dict[str, Any] = {}
    if cfg.schedule is None:
        extra["schedule"] = schedule
        if cfg.warmup_epochs == 0 and cfg.warmup_steps is None and schedule != "onecycle":
            extra["warmup_steps"] = min(int(round(warmup * total_steps)), max(total_steps - 1, 0))
    if cfg.augment is None:
        extra["augment"] = augment
    return dataclasses.replace(out, **extra)
