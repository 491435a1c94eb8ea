"""``transfer``: train a model from a source on a new task and write a run directory (``pretrain``, which trains a
source model, is :mod:`transferkit.api.pretrain_job`; both run :mod:`transferkit.api.train_run`).

A run directory ``runs/<name>/`` holds ``config.yaml`` (the resolved options), ``metrics.json``,
``report.md``, PNG plots, ``bundle/`` (the model), ``checkpoints/`` and ``logs/metrics.csv``. It is built
in a temporary directory and renamed into place at the end, so an interrupted run (Ctrl-C) leaves the
previous run directory and bundle exactly as they were.

Options of :func:`transfer` that its docstring leaves to this one:

Budget and recipe: ``steps`` optimiser steps, or ``epochs`` passes over the training set (not both); with
neither, the strategy's recipe (``finetune``: 100 steps whatever the dataset size, warm-up + cosine, LP-FT;
``scratch``: 300 steps at a higher rate with light augmentation; see :mod:`transferkit.strategies`).
``schedule``/``augment`` ``None`` take the recipe's. ``patience`` (default off) stops early on the validation
loss when there is a validation set; without one the final weights are kept. metrics.json's ``fit.recipe``
records what was used.

``class_map`` (a YAML/JSON file or a mapping ``{target class: new name}``) renames or merges target
classes first. With ``head_init`` (default on), target classes whose names match a source class start
from the source head's rows (:mod:`transferkit.engine.head_init`); the report says which.

Scale and faults: ``devices`` × ``num_nodes`` processes train with DDP (``distributed``; ``batch_size`` is
the global batch; only rank 0 writes); ``deterministic`` (default: on for CPU) makes a seed reproduce its
metrics bit for bit; resume checkpoints are written every ``checkpoint_every`` steps and at epoch ends
(:mod:`transferkit.engine.checkpoints`); ``resume=True`` continues the interrupted run at ``out`` (same
options), ``overwrite=True`` discards one, or runs beside a live run holding ``out``
(:mod:`transferkit.rundir`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback

from transferkit.api.cv import cross_validate
from transferkit.api.runs import RunResult, make_strategy, require_one_process
from transferkit.api.train_run import _train_job
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, check_budget
from transferkit.data.class_map import class_map_of
from transferkit.errors import ConfigError
from transferkit.options import TransferConfig
from transferkit.rundir import check_output_dir
from transferkit.source_loading import load_source
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console


def transfer(
    *args: Any, config: TransferConfig | None = None, console: Console | None = None,
    callbacks: Sequence[Callback] = (), evaluate_test: bool = True, split_indices: tuple[Any, Any] | None = None,
    **options: Any,
) -> RunResult:
    """Transfer ``source`` (run dir, bundle dir or pretrained backbone name) to a new task and evaluate it.

    The options are :class:`~transferkit.options.TransferConfig`'s fields by their flat names (``source``,
    ``data``, ``classes`` also by position; each field's docstring says what it does), or a built ``config``:
    ``transfer("mobilenetv2_100", data="fashion_mnist", labels_per_class=10, strategy="linear_probe")``. Unknown
    names are refused, listing the valid ones.

    ``labels_per_class=k`` means ``k`` labelled images per class in total, all of which train the final model
    (a linear probe chooses its C by cross-validation on them; stepped strategies run a fixed recipe — K = 1 is
    allowed, with "no selection"); ``val_per_class=v`` adds ``v`` other training-split images per class as a fixed
    validation set (a budget of ``k + v``). metrics.json's ``labels`` records which labels trained the final model
    and how selection was done. The test split is only used for the final evaluation.
    ``strategy`` is ``scratch``/``structure``, ``linear_probe``/``feature`` or
    ``finetune``/``parameter``; ``options`` holds further strategy options (``transferkit strategies`` lists
    them). ``image_size`` sets the input size of a named pretrained backbone,
    ``weights`` a local weights file for ``timm:``/``torchvision:`` sources and ``max_length`` the token limit of a
    named text backbone (``minilm``, ``hf:…``; text data such as ``text:FILE.csv`` or ``ag_news``). ``source`` may
    also be a :class:`~transferkit.backbones.base.Backbone` object.

    The budget and recipe (``steps``, ``epochs``, ``schedule``, ``augment``, ``patience``), ``class_map`` and
    ``head_init``, and scale and faults (``devices``, ``num_nodes``, ``distributed``, ``deterministic``,
    ``checkpoint_every``, ``resume``, ``overwrite``) are described in the module docstring.

    ``cv=K`` runs stratified K-fold cross-validation on the labelled training set instead
    (:mod:`transferkit.api.cv`): per-fold and mean ± std scores, no test split, no bundle.

    Not options (not recorded in ``config.yaml``): ``callbacks``, further Lightning callbacks for the training
    loop; ``evaluate_test=False`` skips the test split entirely (metrics then come from the validation split — what
    a hyper-parameter search's trials must use); ``split_indices=(train, validation)`` — positions in the training
    split — replaces the labelled draw: for a job that selects inside its own budget (``auto``'s inner split of the
    K labels); ``labels_per_class`` then only labels the record.
    """
    c = TransferConfig.given(config, args, options)
    src, task, st, run = c.source, c.task, c.strategy, c.run
    record = c.record("transfer")
    if split_indices is not None:
        record["split_indices"] = f"given: {len(split_indices[0])} training, {len(split_indices[1])} validation"
    if isinstance(src.source, Backbone):  # a model object: its architecture, not its printout
        record["source"] = f"<{src.source.arch} model object>"
    strat = make_strategy(st.strategy, st.freeze, st.probe_layer, st.options)  # validate before loading anything
    check_output_dir(run.out, [src.source, task.data, src.weights, task.class_map])  # before the source loads
    check_budget(c.train.epochs, c.train.steps)
    cfg = TrainConfig.of(c.train)
    cmap = class_map_of(task.class_map)
    if c.cv is not None:  # K-fold cross-validation on the labelled training set: no test split, no bundle
        return _transfer_cv(c, strat, cfg, cmap, record, console)
    source_model, source_meta = load_source(src.source, src.image_size, src.weights, src.max_length)
    return _train_job("transfer", source_model, source_meta, strat, task, cfg, run, record, console, cmap,
                      c.head_init, callbacks, evaluate_test, split_indices)


def _transfer_cv(c: TransferConfig, strat: Strategy, cfg: TrainConfig, cmap: dict[str, str] | None,
                 record: dict[str, Any], console: Console | None) -> RunResult:
    """``transfer(cv=K)``: refuse what cross-validation does not support (several processes, ``max_length``), then
    run :func:`~transferkit.api.cv.cross_validate` with the checked options (no source loaded yet)."""
    src, task = c.source, c.task
    require_one_process(cfg, "cross-validation (cv)")
    if src.max_length is not None:
        raise ConfigError("max_length", "None with cv (not supported yet)", src.max_length,
                          "run without it: the backbone's default")
    return cross_validate(src.source, task.data, task.classes, c.cv, strat, cfg, task.labels_per_class,
                          task.val_per_class, task.val_fraction, c.run.out, task.strict, task.convert_channels,
                          record, console, src.image_size, src.weights, cmap, c.head_init)
