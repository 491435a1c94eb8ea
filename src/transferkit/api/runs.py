"""Shared pieces of the high-level jobs: run results, the one-process rule and threads, the run's YAML/JSON files,
building a strategy from options, scoring a model.

Loading a source model (and checking it takes the data) is :mod:`transferkit.source_loading`; loading the task and
checking it against the job is :mod:`transferkit.data.job_task`. ``load_source``, ``load_task`` and
``backbone_for_data`` stay importable from here for the scripts in ``benchmarks/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from transferkit import atomic
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import predict_logits
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.device import inference_device
from transferkit.engine.trainer import TrainedModel
from transferkit.errors import ConfigError
from transferkit.report.metrics import classification_metrics
from transferkit.strategies.base import Strategy, get_strategy, resolve_strategy_name


@dataclass
class RunResult:
    """What a job returns: where its run directory is, its metrics, and the trained model."""

    run_dir: Path | None
    metrics: dict[str, Any]
    model: Backbone | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bundle_dir(self) -> Path | None:
        return self.run_dir / "bundle" if self.run_dir else None


def require_one_process(cfg: TrainConfig, what: str) -> None:
    """Refuse DDP for a job that runs many trainings or writes from every process (compare, curve, cv, …)."""
    if cfg.processes > 1:
        raise ValueError(f"{what} runs in one process (it trains many models and writes their results as it goes); "
                         "use devices=1 num_nodes=1 here, and DDP for a single 'transfer' or 'pretrain' run")


def set_threads(num_threads: int | None = None) -> None:
    """Use every core for intra-op parallelism (or ``num_threads``); one inter-op thread avoids oversubscription."""
    n = num_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)



def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, yaml.safe_dump(_plain(data), sort_keys=False))


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, json.dumps(_plain(data), indent=2) + "\n")


def _plain(obj: Any) -> Any:
    """Make ``obj`` YAML/JSON-safe (paths → str, tuples → lists, numpy scalars → Python)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def score(model: Backbone, data: TensorBatches, classes: list[str], accelerator: str = "cpu") -> dict[str, Any]:
    """Classification metrics of ``model`` on ``data``, plus the mean cross-entropy as ``loss``; computed on the
    run's GPU when its ``accelerator`` resolves to one."""
    logits = predict_logits(model, data, device=inference_device(accelerator))
    metrics = classification_metrics(data.y.numpy(), logits.argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(logits, data.y)) if len(data) else float("nan")
    return metrics


def make_strategy(strategy: str, freeze: int | None = None, layer: str | None = None,
                  options: dict[str, Any] | None = None) -> Strategy:
    """The strategy with only the options that apply to it (``freeze`` for finetune, ``layer`` for the probe,
    plus any of its own ``options``, e.g. ``{"regularizer": "l2sp"}``); a wrong option lists the valid ones."""
    name = resolve_strategy_name(strategy)
    options = dict(options or {})
    if freeze is not None:
        if name != "finetune":
            raise ConfigError("freeze", "the finetune strategy", freeze, f"the strategy is '{strategy}'")
        options["freeze"] = freeze
    if layer is not None:
        if name != "linear_probe":
            raise ConfigError("probe_layer", "the linear_probe strategy", layer, f"the strategy is '{strategy}'")
        options["layer"] = layer
    return get_strategy(name, **options)


def best_val_accuracy(trained: TrainedModel) -> float:
    """Validation accuracy of the kept (best-epoch) weights, as the engine measured it: no second pass."""
    epoch = trained.fit.best_epoch
    return trained.fit.history[epoch].get("val_acc", float("nan")) if 0 <= epoch < len(trained.fit.history) \
        else float("nan")
