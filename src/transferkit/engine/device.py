"""Which device a run trains on: ``accelerator="auto"`` resolved once, the same way everywhere.

``auto`` (the default) is a CUDA GPU when PyTorch sees one and the CPU otherwise — never Apple's ``mps``, which
still lacks operations and deterministic kernels some strategies use; ask for it by name. Resolving here rather
than leaving ``auto`` to Lightning matters on a CPU machine: the defaults keyed on the CPU (deterministic kernels,
one thread share per DDP process) would otherwise not apply to an ``auto`` run. A GPU asked for on a machine
without one, and ``16-mixed`` precision on the CPU (PyTorch has no float16 autocast there), are refused before
anything trains, naming the option.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from transferkit.errors import ConfigError


def resolve_accelerator(name: str) -> str:
    """Lightning's accelerator for ``name``: ``auto`` → ``gpu`` when CUDA is available, else ``cpu``; ``cuda`` →
    ``gpu``; a GPU without CUDA is a :class:`~transferkit.errors.ConfigError`."""
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("accelerator", "auto or cpu on this machine (PyTorch sees no CUDA device)", name)
        return "gpu"
    return name


def inference_device(accelerator: str) -> torch.device | None:
    """Where a run's frozen features are extracted: ``cuda`` when ``accelerator`` resolves to the GPU, else
    ``None`` (where the model is: the CPU)."""
    return torch.device("cuda") if resolve_accelerator(accelerator) == "gpu" else None


def describe(accelerator: str, precision: str) -> dict[str, Any]:
    """What a run's provenance records of its device: the resolved accelerator, the device's name (the GPU's, or
    the CPU's processor), the precision and the CPU threads."""
    resolved = resolve_accelerator(accelerator)
    name = torch.cuda.get_device_name() if resolved == "gpu" else (platform.processor() or platform.machine())
    return {"accelerator": resolved, "name": name, "precision": precision, "threads": torch.get_num_threads()}


def check_precision(precision: str, accelerator: str) -> None:
    """Refuse a precision the resolved ``accelerator`` cannot train in."""
    if precision == "16-mixed" and accelerator == "cpu":
        raise ConfigError("precision", "32-true or bf16-mixed on the CPU (16-mixed needs a GPU)", precision)
