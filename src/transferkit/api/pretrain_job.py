"""``pretrain``: train a source model on a dataset and write a run directory with its bundle.

The run is the one ``transfer`` runs (:mod:`transferkit.api.train_run`); the run directory, the budget and the scale
and fault options are described in :mod:`transferkit.api.train`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transferkit.api.runs import RunResult
from transferkit.api.train_run import _train_job
from transferkit.backbones.registry import backbone_info
from transferkit.config import TrainConfig, check_budget, steps_replace_default_epochs
from transferkit.data.job_task import load_task
from transferkit.options import PretrainConfig, TaskOptions
from transferkit.source_loading import backbone_for_data
from transferkit.strategies.base import get_strategy
from transferkit.terminal import Console


def pretrain(*args: Any, config: PretrainConfig | None = None, console: Console | None = None,
             **options: Any) -> RunResult:
    """Train a source model on ``data`` (restricted to ``classes``) and write a run directory with its bundle.

    The options are :class:`~transferkit.options.PretrainConfig`'s fields by their flat names (``data``,
    ``classes`` also by position; ``backbone``, ``pretrained``, ``weights``, ``image_size``, ``val_fraction``, the
    training options of :class:`~transferkit.config.TrainOptions` — default 3 epochs at batch 128 —, ``out``,
    ``resume``, ``overwrite``), or a built ``config``. The model is ``backbone`` with random weights
    (``pretrained=True`` starts from its shipped weights, or from ``weights`` for ``timm:``/``torchvision:``
    architectures), trained on the training split minus a stratified ``val_fraction`` held out for checkpoint
    selection.

    Scale and faults (as for :func:`~transferkit.api.train.transfer`; see :mod:`transferkit.api.train`):
    ``devices``/``num_nodes``/``distributed`` (DDP), ``deterministic``, ``checkpoint_every``, ``resume``,
    ``overwrite``.
    """
    c = PretrainConfig.given(config, args, options)
    record = c.record("pretrain")
    train_options = steps_replace_default_epochs(c.train, PretrainConfig().train)
    check_budget(train_options.epochs, train_options.steps)
    cfg = TrainConfig.of(train_options)
    d = c.data
    probe = load_task(d.data, "train", d.classes, d.strict, workers=d.workers)  # fail fast on bad data, classes
    backbone_info(c.backbone)  # fail fast on an unknown name, listing the valid ones
    kwargs: dict[str, Any] = {"weights": str(c.weights)} if c.weights is not None else {}
    import lightning as L

    L.seed_everything(cfg.seed, verbose=False)
    model = backbone_for_data(c.backbone, probe.channels, probe.num_classes, c.pretrained, c.image_size, **kwargs)
    strategy = get_strategy("finetune" if c.pretrained else "scratch")
    meta = {"source": f"pretrained:{c.backbone}" if c.pretrained else f"scratch:{c.backbone}"}
    task = TaskOptions(**{f.name: getattr(d, f.name) for f in dataclasses.fields(d)}, val_fraction=c.val_fraction)
    return _train_job("pretrain", model, meta, strategy, task, cfg, c.run, record, console)
