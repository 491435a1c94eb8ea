"""Typed configuration objects that round-trip through YAML, the run directory and the bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class TrainConfig:
    """How the engine trains: epochs, batch size, optimiser, early stopping, devices, seed.

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**d)
