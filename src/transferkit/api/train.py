"""``pretrain`` and ``transfer``: the two jobs that train a model and write a run directory.

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

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import Callback

from transferkit import terminal
from transferkit.api.cv import cross_validate
from transferkit.api.runs import (
    RunResult,
    backbone_for_data,
    check_channels,
    head_init_mapping,
    load_source,
    load_task,
    make_strategy,
    require_one_process,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.backbones.registry import backbone_info
from transferkit.bundle import save_bundle
from transferkit.config import TrainConfig, check_budget, steps_replace_default_epochs
from transferkit.data.class_map import class_map_of
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.run_splits import final_train_indices, job_split
from transferkit.data.splits import LABELS_RULE, labels_record, parse_classes
from transferkit.engine.trainer import TrainedModel, train
from transferkit.errors import ConfigError
from transferkit.options import PretrainConfig, RunOptions, TaskOptions, TransferConfig
from transferkit.provenance import provenance
from transferkit.report.metrics import describe_selection, did_not_learn, majority_rate
from transferkit.report.tables import metrics_table
from transferkit.report.train import write_train_report
from transferkit.rundir import check_output_dir, run_session
from transferkit.strategies.base import Strategy, get_strategy
from transferkit.terminal import Console


def write_run(
    run_dir: Path, kind: str, trained: TrainedModel, classes: list[str], lineage: dict[str, Any],
    config: dict[str, Any], val: dict[str, Any], test: dict[str, Any] | None, data_sizes: dict[str, int],
    wall_s: float, provenance: dict[str, Any] | None = None, labels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write metrics.json, plots, bundle/ and report.md of a finished run into ``run_dir``; return the metrics.

    ``provenance`` (:func:`transferkit.provenance.provenance`: seed, data fingerprints, library versions, git
    commits) goes into metrics.json as it is; so does ``labels`` (:func:`~transferkit.data.splits.labels_record`:
    which labels trained the final model and how selection was done). An empty validation set (a labelled budget
    without ``--val-per-class``: the K labels are the whole budget) gives ``"validation": null``; with no test split
    either, ``split`` is ``"none"`` and nothing is scored. ``did_not_learn`` flags an accuracy at chance level
    (:func:`~transferkit.report.metrics.did_not_learn`)."""
    has_val = bool(val) and val.get("n", 0) > 0
    final = test if test is not None else val
    metrics = {
        "task": kind,
        "split": "test" if test is not None else "validation" if has_val else "none",
        **{k: final[k] for k in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "n")},
        "did_not_learn": did_not_learn(final["accuracy"], final["n"], majority_rate(final["confusion_matrix"]))
        if final["n"] else None,  # None: nothing was evaluated (no test split, no validation set)
        "validation": {"accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "loss": val["loss"], "n": val["n"]}
        if has_val else None,
        "labels": labels,
        "strategy": trained.strategy,
        "options": trained.options,
        "seed": config.get("seed"),
        **data_sizes,
        "trainable_params": trained.trainable_params,
        "total_params": trained.model.num_parameters(),
        "train_time_s": trained.fit.train_time_s,
        "feature_extraction_s": trained.extra_time_s,
        "feature_cache": trained.feature_cache,
        "head_init": trained.head_init,
        "total_time_s": wall_s,
        "fit": trained.fit.to_dict(),
        "history": trained.fit.history,  # per epoch: losses, accuracies, rate, and a regulariser's reg_ratio
        "provenance": provenance,
    }
    save_bundle(trained.model, {"classes": classes, "lineage": lineage, "metrics": {
        k: metrics[k] for k in ("split", "accuracy", "macro_f1", "n")}, "config": config}, run_dir / "bundle")
    write_json(run_dir / "metrics.json", metrics)
    write_train_report(run_dir, kind, metrics, classes, lineage)
    return metrics


def run_labels(trained: TrainedModel, labels_per_class: int | None, val_per_class: int | None, n_train: int,
               n_val: int, fingerprint: str | None, indices: Any = None) -> dict[str, Any]:
    """metrics.json's ``labels`` entry of a trained run (:func:`~transferkit.data.splits.labels_record`), with how
    selection was done (:func:`~transferkit.report.metrics.describe_selection`) and, for a probe whose C was
    cross-validated, that cross-validation's accuracy at the chosen C as ``selection_estimate`` (a held-out estimate
    from the training labels alone)."""
    fit = trained.fit
    record = labels_record(labels_per_class, val_per_class, n_train, n_val,
                           describe_selection(fit.solver, n_val, fit.best_epoch, fit.epochs_run, fit.stopped_early),
                           fingerprint, indices)
    solver = fit.solver or {}
    if solver.get("grid") and solver.get("cv_accuracy"):
        best = solver["grid"].index(solver["C"]) if solver["C"] in solver["grid"] else None
        if best is not None:
            record["selection_estimate"] = {"accuracy": float(solver["cv_accuracy"][best]),
                                            "log_loss": float(solver["cv_log_loss"][best]),
                                            "how": f"mean held-out accuracy of {solver.get('cv', 'cross-validation')}"
                                                   " at the chosen C"}
    return record


@dataclasses.dataclass
class _JobData:
    """What a training job trains and scores on, loaded before its run directory opens (so that bad data fails
    first): the training split ``full`` (after ``--classes`` and the class map), the training and validation sets and
    their batches, the test batches (``None`` without a test split or with ``evaluate_test=False``), the head-init
    ``mapping`` and ``source_classes``, and the training positions ``given`` by a calling job (``split_indices``)."""

    full: Any
    train_set: Any
    val_set: Any
    train_b: Any
    val_b: Any
    test_b: Any
    mapping: Any
    source_classes: Any
    given: np.ndarray | None


def _job_data(source_model: Backbone, source_meta: dict[str, Any], task: TaskOptions, seed: int,
              class_map: dict[str, str] | None, head_init: bool, evaluate_test: bool,
              split_indices: tuple[Any, Any] | None) -> _JobData:
    """Load and split a training job's data — the training split, the channel check, the head-init mapping, the
    labelled split (:func:`~transferkit.data.run_splits.job_split`), the batches, then the test split — in that
    order, as the job always did; the seeded draws depend on ``seed`` alone."""
    data, classes, strict = task.data, task.classes, task.strict
    full = load_task(data, "train", classes, strict, class_map)
    check_channels(full, source_model, task.convert_channels, f"--data {data}")
    mapping, source_classes = head_init_mapping(full.classes, source_meta, head_init)
    train_set, val_set, given = job_split(full, task.labels_per_class, task.val_per_class, task.val_fraction, seed,
                                          split_indices)
    spec = source_model.input_spec
    train_b, val_b = to_batches(train_set, spec), to_batches(val_set, spec)
    test_set = load_task(data, "test", classes, strict, class_map) \
        if evaluate_test and has_split(data, "test") else None
    test_b = to_batches(test_set, spec) if test_set is not None else None
    return _JobData(full, train_set, val_set, train_b, val_b, test_b, mapping, source_classes, given)


def _train_job(
    kind: str, source_model: Backbone, source_meta: dict[str, Any], strategy: Strategy, task: TaskOptions,
    cfg: TrainConfig, run: RunOptions, config: dict[str, Any], console: Console | None,
    class_map: dict[str, str] | None = None, head_init: bool = False, callbacks: Sequence[Callback] = (),
    evaluate_test: bool = True, split_indices: tuple[Any, Any] | None = None,
) -> RunResult:
    """Train ``strategy`` from ``source_model`` on ``task`` and write the run directory ``run.out`` (``config`` is what
    its config.yaml records): what ``pretrain`` and ``transfer`` (without ``cv``) run once their options are checked
    and the source is loaded. ``evaluate_test``/``split_indices`` act as in :func:`transfer`. A DDP process other
    than rank 0 trains, then returns without writing (``run_dir`` ``None``)."""
    console = terminal.resolve(console)
    inputs = [task.data, *(config.get(k) for k in ("source", "weights", "class_map"))]  # never written over
    check_output_dir(run.out, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    d = _job_data(source_model, source_meta, task, cfg.seed, class_map, head_init, evaluate_test, split_indices)
    out = Path(run.out)
    with run_session(out, run.resume, run.overwrite, config, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config)
        if session.resume_from is not None:
            cfg = dataclasses.replace(cfg, resume_from=str(session.resume_from))
            for reason in session.skipped:
                console.print(f"[yellow]skipped[/]: {reason}")
            console.print(f"resuming {out} from {session.resume_from.name}")
        trained = train(strategy, source_model, d.full.num_classes, d.train_b, d.val_b, cfg, tmp, head_init=d.mapping,
                        class_names=(d.full.classes, d.source_classes), callbacks=callbacks)
        if session.worker:  # a DDP process other than rank 0: rank 0 scores and writes
            return RunResult(None, {}, trained.model, {"classes": d.full.classes, "rank": trained.fit.rank})
        metrics, lineage = _finish_run(tmp, kind, trained, d, source_meta, task, cfg, config, class_map, start)
    console.print(metrics_table(metrics, f"{kind} → {out}  ({metrics['split']} split)"))
    console.print(f"report: {out / 'report.md'}   bundle: {out / 'bundle'}")
    return RunResult(out, metrics, trained.model, {"classes": d.full.classes, "lineage": lineage})


def _finish_run(tmp: Path, kind: str, trained: TrainedModel, d: _JobData, source_meta: dict[str, Any],
                task: TaskOptions, cfg: TrainConfig, config: dict[str, Any], class_map: dict[str, str] | None,
                start: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score a finished training (validation, then test) and write its metrics.json, plots, bundle and report into
    ``tmp`` (:func:`write_run`); return ``(metrics, lineage)``. ``total_time_s`` runs from ``start``."""
    val_m = score(trained.model, d.val_b, d.full.classes)
    test_m = score(trained.model, d.test_b, d.full.classes) if d.test_b is not None else None
    lineage = {
        "kind": kind, "source": source_meta.get("source", "scratch"),
        "source_lineage": source_meta.get("lineage"), "data": task.data, "classes": parse_classes(task.classes),
        "labels_per_class": task.labels_per_class, "val_per_class": task.val_per_class,
        "val_fraction": task.val_fraction,
        "labels_rule": LABELS_RULE,  # what val_per_class=None means (fuse rebuilds a member's draw from it)
        "strategy": trained.strategy, "options": trained.options,
        "seed": cfg.seed, "class_map": class_map or None,
    }
    sizes = {"n_train": len(d.train_set), "n_val": len(d.val_set), "n_test": len(d.test_b) if d.test_b else 0}
    prov = provenance(cfg.seed, {"train": d.train_b.key, "validation": d.val_b.key,
                                 "test": d.test_b.key if d.test_b is not None else None})
    labels = _job_labels(trained, d, task, cfg.seed)
    metrics = write_run(tmp, kind, trained, d.full.classes, lineage, config, val_m, test_m, sizes,
                        time.perf_counter() - start, prov, labels)
    return metrics, lineage


def _job_labels(trained: TrainedModel, d: _JobData, task: TaskOptions, seed: int) -> dict[str, Any]:
    """metrics.json's ``labels`` of a training job (:func:`run_labels`) with the positions of the examples that
    trained the final model; for a split given by a calling job, also what that split was (its record says so,
    since the job's own draw was not used)."""
    k, n_train, n_val = task.labels_per_class, len(d.train_set), len(d.val_set)
    tr_idx = final_train_indices(d.full, k, task.val_per_class, task.val_fraction, seed, d.given)
    labels = run_labels(trained, k, task.val_per_class, n_train, n_val, d.train_set.fingerprint(), tr_idx)
    if d.given is not None:
        labels.update(train_final_model=n_train, validation=n_val, validation_per_class=None,
                      indices=[int(i) for i in tr_idx], split="given by the calling job (an inner split of its "
                      f"{k} labels per class: {n_train} fit, {n_val} selection)")
    return labels


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

    Scale and faults (as for :func:`transfer`; see the module docstring): ``devices``/``num_nodes``/
    ``distributed`` (DDP), ``deterministic``, ``checkpoint_every``, ``resume``, ``overwrite``.
    """
    c = PretrainConfig.given(config, args, options)
    record = c.record("pretrain")
    train_options = steps_replace_default_epochs(c.train, PretrainConfig().train)
    check_budget(train_options.epochs, train_options.steps)
    cfg = TrainConfig.of(train_options)
    d = c.data
    probe = load_task(d.data, "train", d.classes, d.strict)  # fail fast on bad data / classes, before building
    backbone_info(c.backbone)  # fail fast on an unknown name, listing the valid ones
    kwargs: dict[str, Any] = {"weights": str(c.weights)} if c.weights is not None else {}
    import lightning as L

    L.seed_everything(cfg.seed, verbose=False)
    model = backbone_for_data(c.backbone, probe.channels, probe.num_classes, c.pretrained, c.image_size, **kwargs)
    strategy = get_strategy("finetune" if c.pretrained else "scratch")
    meta = {"source": f"pretrained:{c.backbone}" if c.pretrained else f"scratch:{c.backbone}"}
    task = TaskOptions(**{f.name: getattr(d, f.name) for f in dataclasses.fields(d)}, val_fraction=c.val_fraction)
    return _train_job("pretrain", model, meta, strategy, task, cfg, c.run, record, console)


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
    require_one_process(cfg, "--cv")
    if src.max_length is not None:
        raise ConfigError("max_length", "None with cv (not supported yet)", src.max_length,
                          "run without it: the backbone's default")
    return cross_validate(src.source, task.data, task.classes, c.cv, strat, cfg, task.labels_per_class,
                          task.val_per_class, task.val_fraction, c.run.out, task.strict, task.convert_channels,
                          record, console, src.image_size, src.weights, cmap, c.head_init)
