"""transferkit — deep transfer learning on PyTorch.

Pretrain a source model, transfer it to a new task with the three classic kinds of transfer (parameter,
feature, structure), compare them honestly over seeds, and read the report::

    import transferkit as tk
    src = tk.pretrain(data="fashion_mnist", classes="0,1,5,8,9", backbone="seed_cnn", epochs=3,
                      out="runs/src")
    tgt = tk.transfer(source="runs/src", data="fashion_mnist", classes="2,3,4,6,7", labels_per_class=10,
                      strategy="finetune", out="runs/tgt")
    print(tgt.metrics["accuracy"])

Which source to start from? ``tk.select(["runs/src", "mobilenet_v2", "random:seed_cnn"], data=..., classes=...,
labels_per_class=10)`` ranks candidates by transferability scores (LogME, H-score, LEEP, NCE) without fine-tuning.
Which learning rate, weight decay, freezing? ``tk.tune("runs/src", data=..., classes=..., labels_per_class=10,
n_trials=20, out="runs/tune")`` searches them (Optuna, TPE) on the validation split and writes ``best_config.yaml``.

Text works the same way with a text backbone: ``tk.transfer("minilm", data="text:news.csv?text=title+description",
labels_per_class=8, strategy="linear_probe")``; ``tk.fewshot("minilm", data=..., method="setfit",
labels_per_class=8)`` (SetFit-style contrastive fine-tuning, or ``prototypes``/``episodes``) and
``tk.zeroshot("minilm", data=..., templates="This news article is about {label}.")`` (no labels at all).

Every job prints through the ``console=`` it is given (a :class:`rich.console.Console`); ``tk.transfer(...,
console=tk.silent(), progress=False)`` runs without printing anything.

The names below are imported on first use (PEP 562), so ``import transferkit.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunResult": "transferkit.api", "compare": "transferkit.api", "demo": "transferkit.api",
    "evaluate": "transferkit.api", "predict": "transferkit.api", "pretrain": "transferkit.api",
    "transfer": "transferkit.api", "curve": "transferkit.api", "lr_find": "transferkit.api",
    "merge": "transferkit.api", "adapt": "transferkit.api", "adapt_compare": "transferkit.api",
    "distill": "transferkit.api", "fuse": "transferkit.api", "select": "transferkit.api", "tune": "transferkit.api",
    "resume": "transferkit.api", "export": "transferkit.api", "serve": "transferkit.api",
    "fewshot": "transferkit.api", "zeroshot": "transferkit.api", "multitask": "transferkit.api",
    "auto": "transferkit.api", "cache": "transferkit.api",
    "list_family": "transferkit.api", "families": "transferkit.api",
    "create_backbone": "transferkit.backbones",
    "list_backbones": "transferkit.backbones",
    "load_bundle": "transferkit.bundle", "save_bundle": "transferkit.bundle", "get_dataset": "transferkit.data",
    "list_datasets": "transferkit.data", "get_strategy": "transferkit.strategies",
    "list_strategies": "transferkit.strategies", "silent": "transferkit.terminal",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'transferkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
