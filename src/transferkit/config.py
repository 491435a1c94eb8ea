"""Typed configuration objects that round-trip through YAML, the run directory and the bundle."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
AUGMENT_PRESETS = ("none", "light", "standard", "strong")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLERS = ("random", "balanced")
DISTRIBUTED = ("auto", "ddp", "ddp_find_unused_parameters_true")


@dataclass
class TrainConfig:
    """How the engine trains: epochs, batch size, optimiser and schedule, early stopping, devices, seed,
    augmentation (training batches only) and class-imbalance handling.

    ``schedule``: ``constant`` (default), ``cosine`` (cosine decay to 0 over ``epochs``, after
    ``warmup_epochs`` of linear warm-up) or ``onecycle`` (Smith & Topin, 2017, "Super-Convergence").
    ``augment``: a torchvision ``transforms.v2`` preset (``none``/``light``/``standard``/``strong``);
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
    features takes larger, cheaper batches than fine-tuning a network). Early stopping and the best
    checkpoint both follow ``monitor`` on the **validation** split (never the test split).
    """

    epochs: int = 30
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    patience: int | None = 10
    monitor: str = "val_loss"
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    precision: str = "32-true"
    progress: bool = True
    checkpoints: bool = True
    schedule: str = "constant"
    warmup_epochs: int = 0
    augment: str = "none"
    mixup: float = 0.0
    cutmix: float = 0.0
    class_weight: str = "none"
    sampler: str = "random"
    distributed: str = "auto"
    num_nodes: int = 1
    deterministic: bool | None = None
    sync_batchnorm: bool = True
    checkpoint_every: int | None = 200
    resume_from: str | None = None

    @property
    def processes(self) -> int:
        """How many training processes the devices and nodes make (1 for ``devices`` like ``"auto"``)."""
        d = self.devices
        n = len(d) if isinstance(d, list | tuple) else (int(d) if str(d).isdigit() else 1)
        return max(n, 1) * max(self.num_nodes, 1)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer: unknown '{self.optimizer}'; valid choices: {', '.join(OPTIMIZERS)}")
        if self.monitor not in ("val_loss", "val_acc"):
            raise ValueError(f"--monitor: unknown '{self.monitor}'; valid choices: val_loss, val_acc")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        for flag, value, choices in (("--schedule", self.schedule, SCHEDULES), ("--augment", self.augment,
                                     AUGMENT_PRESETS), ("--class-weight", self.class_weight, CLASS_WEIGHTS),
                                     ("--sampler", self.sampler, SAMPLERS)):
            if value not in choices:
                raise ValueError(f"{flag}: unknown '{value}'; valid choices: {', '.join(choices)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"--warmup-epochs must be between 0 and --epochs - 1 ({self.epochs - 1}), "
                             f"got {self.warmup_epochs}")
        if self.warmup_epochs and self.schedule == "onecycle":
            raise ValueError("--warmup-epochs does not apply to --schedule onecycle (it has its own warm-up); "
                             "use it with cosine or constant")
        for flag, value in (("--mixup", self.mixup), ("--cutmix", self.cutmix)):
            if not value >= 0:
                raise ValueError(f"{flag} is the Beta(α, α) parameter and must be ≥ 0 (0 = off), got {value}")
        if self.distributed not in DISTRIBUTED:
            raise ValueError(f"--distributed: unknown '{self.distributed}'; valid choices: {', '.join(DISTRIBUTED)}")
        if self.num_nodes < 1:
            raise ValueError(f"--num-nodes must be at least 1, got {self.num_nodes}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be at least 1 step (or None for epoch ends only), "
                             f"got {self.checkpoint_every}")
        if self.batch_size is not None and self.batch_size < self.processes:
            raise ValueError(f"--batch-size {self.batch_size} is the global batch and must be at least the number "
                             f"of processes ({self.processes})")
        if self.class_weight == "balanced" and self.sampler == "balanced":
            raise ValueError("--class-weight balanced and --sampler balanced both correct class imbalance; "
                             "choose one (applying both over-corrects)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
