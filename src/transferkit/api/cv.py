"""``transfer --cv K``: stratified K-fold cross-validation of one transfer recipe on the labelled training set.

With few labels a single train/test split says little: one lucky split can move accuracy by several points.
Cross-validation estimates how well a recipe (source, strategy, options, training settings) transfers, with
a spread, from the labelled examples alone:

* the pool is the target task's *training* split — or, with ``labels_per_class=k``, the ``k`` labelled images
  per class drawn from it (:func:`~transferkit.data.splits.k_per_class`, the labelled budget);
* ``StratifiedKFold(K, shuffle=True, random_state=seed)`` splits the pool; each fold's held-out part is that
  fold's evaluation set;
* with a labelled budget (``labels_per_class=k``) each fold trains on all of its training part with the fixed
  recipe — no validation set, since the ``k`` labels are the whole budget — unless ``val_per_class=v`` carves ``v``
  images per class out of the fold's training part for early stopping / the kept epoch; without a budget, a
  stratified ``val_fraction`` of each fold's *training* part (never its held-out part) validates, with at least one
  image per class where the class has two or more;
* the **test split is not used at all**, and **no bundle is written**: the K models each saw only part of the
  pool, and none of them is "the" model. Run ``transfer`` without ``--cv`` to train the model you keep.

Each finished fold is kept at once in ``.<out>.work/`` (:class:`~transferkit.rundir.FinishedWork`; the job's
``config.yaml`` is written there before the first fold trains): after an error or Ctrl-C, rerunning the same command
reuses the finished folds; ``out`` itself is still written whole, at the end. The folds are drawn by
:mod:`transferkit.data.cv_folds`; ``metrics.json`` and ``report.md`` are made by :mod:`transferkit.report.cv`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import RunResult, best_val_accuracy, score, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.cv_folds import Fold, check_cv, check_fold_count, cv_folds, fold_positions
from transferkit.data.job_task import head_init_mapping, load_task
from transferkit.data.prepare import to_batches
from transferkit.data.run_splits import labelled_pool
from transferkit.data.splits import check_trainable
from transferkit.engine.trainer import train
from transferkit.report.cv import COLUMNS, cv_intro, cv_metrics, cv_notes, fold_record, fold_rows, write_cv_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import FinishedWork, check_output_dir, staged_output
from transferkit.source_loading import check_channels, load_source
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console


def cross_validate(
    source: str | Path | Backbone, data: str, classes: str | list[int] | None, cv: int, strategy: Strategy,
    cfg: TrainConfig, labels_per_class: int | None = None, val_per_class: int | None = None,
    val_fraction: float = 0.1, out: str | Path = "runs/transfer-cv", strict: bool = False,
    convert_channels: bool = False, config: dict[str, Any] | None = None, console: Console | None = None,
    image_size: int | None = None, weights: str | Path | None = None, class_map: dict[str, str] | None = None,
    head_init: bool = False,
) -> RunResult:
    """K-fold cross-validation of ``strategy`` from ``source`` on ``data``'s labelled training set (see the
    module docstring); what ``transfer(cv=K)`` runs. Every check (``K``, budget, validation sizes) happens
    before the source is loaded or anything trains. ``val_per_class``/``val_fraction`` size each fold's
    validation set, carved from that fold's training part (not extra images beyond the labelled budget, as
    without ``cv``). ``class_map`` and ``head_init`` act as in ``transfer``.

    Writes ``out/`` atomically: ``config.yaml``, ``metrics.json`` (per fold, mean ± std, pooled out-of-fold
    metrics), ``folds.json`` (the fold indices into the training split), ``folds.png``,
    ``confusion_matrix.png`` (out-of-fold predictions) and ``report.md``. No bundle, no test-split score.
    """
    console = terminal.resolve(console)
    start = time.perf_counter()
    check_output_dir(out, [source, data, weights])
    check_fold_count(cv)
    set_threads()
    full = load_task(data, "train", classes, strict, class_map)
    pool_idx, pool = labelled_pool(full, labels_per_class, cfg.seed)
    check_trainable(pool)  # fewer than 2 classes: nothing to learn (accuracy would be a meaningless 1.0)
    check_cv(cv, pool.labels, full.classes)
    fold_val = val_per_class if labels_per_class is None else (val_per_class or 0)  # K is the budget: no V by default
    folds = cv_folds(pool.labels, cv, cfg.seed, val_fraction, fold_val)
    model, meta = load_source(source, image_size, weights)
    check_channels(full, model, convert_channels, f"data={data}")
    mapping, source_classes = head_init_mapping(full.classes, meta, head_init)
    fold_cfg = dataclasses.replace(cfg, checkpoints=False)
    job_config = config or {"command": "transfer", "cv": cv}
    work = _open_work(out, job_config, pool, folds, meta, strategy, fold_cfg, bool(mapping), console)
    records = _run_folds(folds, work, pool, model, strategy, fold_cfg, full.num_classes, full.classes, mapping,
                         source_classes, console)
    metrics = cv_metrics(records, full.classes, pool, pool_idx, cv, cfg.seed, labels_per_class,
                         fold_val if labels_per_class is not None else val_per_class, start)
    intro = cv_intro(meta.get("source"), data, classes, full.classes, metrics, fold_val, val_fraction)
    index = fold_positions(pool_idx, folds)
    out = Path(out)
    with staged_output(out, "transfer-cv") as tmp:
        write_yaml(tmp / "config.yaml", job_config)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "folds.json", index)
        write_cv_report(tmp, metrics, full.classes, intro)
    work.close()
    console.print(comparison_table(COLUMNS, fold_rows(metrics), title=f"transfer --cv {cv} → {out}"))
    for line in cv_notes(metrics, full.num_classes):
        console.print(f"  • {line}")
    return RunResult(out, metrics, None, {"classes": full.classes, "folds": index["folds"]})


def _open_work(out: str | Path, job_config: dict[str, Any], pool: Any, folds: list[Fold], meta: dict[str, Any],
               strategy: Strategy, fold_cfg: TrainConfig, head_init: bool, console: Console) -> FinishedWork:
    """Open ``.<out>.work/``, where each finished fold is kept as it finishes (the job's config first), so that an
    error or Ctrl-C loses none of them; its key is every setting that changes what a fold means (the config, the
    pool, the folds, source, strategy, training options, head init), so a rerun with other settings discards them."""
    work = FinishedWork(out, "transfer-cv", {
        "config": job_config, "pool": pool.fingerprint(), "folds": [[f.train.tolist(), f.val.tolist(),
                                                                     f.eval.tolist()] for f in folds],
        "source": meta.get("source"), "strategy": strategy.name, "options": strategy.options,
        "train": {k: v for k, v in dataclasses.asdict(fold_cfg).items() if k not in ("progress",)},
        "head_init": head_init}, job_config)
    if work.stale:
        console.print(f"[yellow]{work.path}[/] held folds of other settings: discarded")
    return work


def _run_folds(folds: list[Any], work: FinishedWork, pool: Any, model: Backbone, strategy: Strategy,
               fold_cfg: TrainConfig, num_classes: int, classes: list[str], mapping: Any, source_classes: Any,
               console: Console) -> list[dict[str, Any]]:
    """Train and score every fold (a fold finished by an earlier, interrupted run is reused from ``work``)."""
    records: list[dict[str, Any]] = []
    spec = model.input_spec
    for i, fold in enumerate(folds):
        done = work.get(f"fold-{i + 1}")
        if done is not None:
            console.print(f"fold {i + 1}/{len(folds)}: finished earlier (reused from {work.path})")
            records.append(done)
            continue
        console.print(f"fold {i + 1}/{len(folds)}: {len(fold.train)} train, {len(fold.val)} validation, "
                      f"{len(fold.eval)} held out")
        train_b = to_batches(pool.subset(fold.train), spec)
        val_b = to_batches(pool.subset(fold.val), spec)
        eval_b = to_batches(pool.subset(fold.eval), spec)
        trained = train(strategy, model, num_classes, train_b, val_b if len(val_b) else None, fold_cfg, None,
                        head_init=mapping, class_names=(classes, source_classes))
        m = score(trained.model, eval_b, classes)
        records.append(fold_record(i + 1, fold, m, trained, best_val_accuracy(trained)))
        work.put(f"fold-{i + 1}", records[-1])
    return records
