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
reuses the finished folds; ``out`` itself is still written whole, at the end.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from transferkit import terminal
from transferkit.api.runs import (
    RunResult,
    best_val_accuracy,
    check_channels,
    head_init_mapping,
    load_source,
    load_task,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.run_splits import labelled_pool
from transferkit.data.splits import check_trainable, labels_record
from transferkit.engine.trainer import train
from transferkit.errors import ConfigError
from transferkit.report.cv import COLUMNS, cv_intro, cv_notes, fold_rows, write_cv_report
from transferkit.report.metrics import (
    classification_metrics,
    describe_selection,
    did_not_learn,
    majority_rate,
    mean_std,
)
from transferkit.report.tables import comparison_table
from transferkit.rundir import FinishedWork, check_output_dir, staged_output
from transferkit.strategies.base import Strategy
from transferkit.terminal import Console


@dataclasses.dataclass
class Fold:
    """One fold, as indices into the pool: ``train`` fits, ``val`` early-stops, ``eval`` is held out and scored."""

    train: np.ndarray
    val: np.ndarray
    eval: np.ndarray


def check_fold_count(k: Any) -> None:
    """Raise a :class:`~transferkit.errors.ConfigError` naming ``cv`` unless ``k`` is an integer ≥ 2 (checked
    before any data is read)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ConfigError("cv", "at least 2 folds (an integer)", k)


def check_cv(k: Any, labels: np.ndarray, classes: list[str]) -> None:
    """Raise a :class:`~transferkit.errors.ConfigError` naming ``cv`` unless ``2 ≤ k ≤`` the smallest class count
    of ``labels``."""
    check_fold_count(k)
    counts = np.bincount(labels, minlength=len(classes))
    small = int(np.argmin(counts))
    if k > counts[small]:
        limit = (f"use 2 to {counts[small]} folds" if counts[small] >= 2
                 else "every class needs at least 2 labelled images")
        raise ConfigError("cv", f"at most {counts[small]} folds", k, f"more folds than images in the smallest class "
                          f"of the labelled training set (class '{classes[small]}' has {counts[small]}); {limit}")


def cv_folds(labels: np.ndarray, k: int, seed: int, val_fraction: float = 0.1,
             val_per_class: int | None = None) -> list[Fold]:
    """Stratified K-fold split of ``labels`` (the pool), each fold's training part split again into train and
    validation: ``val_per_class`` images per class, or a stratified ``val_fraction`` of it with at least one
    image per class wherever the class has two or more (every class keeps at least one training image)."""
    labels = np.asarray(labels)
    if val_per_class is None and not 0.0 < val_fraction < 1.0:
        raise ConfigError("val_fraction", "a number strictly between 0 and 1", val_fraction)
    if val_per_class is not None and val_per_class < 0:
        raise ConfigError("val_per_class", "≥ 0", val_per_class)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = []
    for i, (fit_idx, eval_idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        rng = np.random.default_rng([seed, i])
        train, val = [], []
        for c in np.unique(labels[fit_idx]):
            pool = rng.permutation(fit_idx[labels[fit_idx] == c])
            if val_per_class is not None:
                n_val = val_per_class
                if n_val > len(pool) - 1:
                    raise ConfigError("val_per_class", f"at most {len(pool) - 1}", val_per_class,
                                      f"fold {i + 1} of cv {k} has only {len(pool)} training images of class {c} "
                                      "(use fewer, or fewer folds)")
            else:
                n_val = min(max(1, int(round(len(pool) * val_fraction))), len(pool) - 1)
            val.append(pool[:n_val])
            train.append(pool[n_val:])
        folds.append(Fold(np.sort(np.concatenate(train)), np.sort(np.concatenate(val)), np.sort(eval_idx)))
    present = set(np.unique(labels).tolist())
    for i, f in enumerate(folds):  # a fold without every class must fail loudly, never score silently
        missing = (present - set(labels[f.train].tolist())) | (present - set(labels[f.eval].tolist()))
        if missing:
            raise ConfigError("cv", "at most the smallest class count", k, f"fold {i + 1} lacks class(es) "
                              f"{sorted(missing)} in its training or held-out part; use fewer folds")
    return folds


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
    check_channels(full, model, convert_channels, f"--data {data}")
    mapping, source_classes = head_init_mapping(full.classes, meta, head_init)
    fold_cfg = dataclasses.replace(cfg, checkpoints=False)
    job_config = config or {"command": "transfer", "cv": cv}
    work = _open_work(out, job_config, pool, folds, meta, strategy, fold_cfg, bool(mapping), console)
    records = _run_folds(folds, work, pool, model, strategy, fold_cfg, full.num_classes, full.classes, mapping,
                         source_classes, console)
    metrics = _cv_metrics(records, full.classes, pool, pool_idx, cv, cfg.seed, labels_per_class,
                          fold_val if labels_per_class is not None else val_per_class, start)
    intro = cv_intro(meta.get("source"), data, classes, full.classes, metrics, fold_val, val_fraction)
    index = _fold_positions(pool_idx, folds)
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


def _cv_metrics(records: list[dict[str, Any]], classes: list[str], pool: Any, pool_idx: np.ndarray, cv: int,
                seed: int, labels_per_class: int | None, val_per_class: int | None, start: float) -> dict[str, Any]:
    """metrics.json of a cross-validation: per fold (``records``), mean ± sample std over folds, the pooled
    out-of-fold metrics and the ``labels`` record of the pool (``val_per_class`` as recorded: the per-fold validation
    size with a budget, the option as given without one); ``total_time_s`` runs from ``start``."""
    num_classes, last = len(classes), records[-1]
    # every pool image is held out exactly once, so the summed confusion matrices are the out-of-fold predictions
    pooled_cm = np.sum([np.asarray(r["confusion_matrix"]) for r in records], axis=0)
    true_pooled = np.repeat(np.arange(num_classes), pooled_cm.sum(1))
    pred_pooled = np.concatenate([np.repeat(np.arange(num_classes), row) for row in pooled_cm])
    pooled = classification_metrics(true_pooled, pred_pooled, classes)
    acc_mean, acc_std = mean_std([r["accuracy"] for r in records])
    f1_mean, f1_std = mean_std([r["macro_f1"] for r in records])
    return {
        "task": "transfer", "mode": "cross-validation", "split": f"{cv}-fold cross-validation", "cv": cv,
        "accuracy": acc_mean, "accuracy_std": acc_std, "macro_f1": f1_mean, "macro_f1_std": f1_std,
        "accuracy_mean": acc_mean, "macro_f1_mean": f1_mean,
        "folds": records, "out_of_fold": pooled, "strategy": last["strategy"], "options": last["options"],
        "seed": seed, "labels_per_class": labels_per_class, "n_pool": len(pool),
        "test_split_used": False, "bundle": None, "total_time_s": time.perf_counter() - start,
        "did_not_learn": did_not_learn(pooled["accuracy"], pooled["n"], majority_rate(pooled["confusion_matrix"])),
        "labels": {**labels_record(labels_per_class, val_per_class, len(pool), 0, "per fold: " + last["selection"],
                                   pool.fingerprint(), pool_idx),
                   "train_final_model": None,
                   "note": "cross-validation trains no final model: each fold model fits the pool minus its "
                           "held-out fold (minus any per-fold validation part); 'indices' is the pool"},
    }


def _fold_positions(pool_idx: np.ndarray, folds: list[Fold]) -> dict[str, Any]:
    """folds.json: the pool and every fold's parts as positions in the target task's training split (``folds``
    index into the pool), so that a fold's images can be found again without rerunning the draw."""
    return {"index_space": "positions in the target task's training split (after --classes)",
            "pool": pool_idx.tolist(),
            "folds": [{"train": pool_idx[f.train].tolist(), "val": pool_idx[f.val].tolist(),
                       "eval": pool_idx[f.eval].tolist()} for f in folds]}


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
        records.append({
            "fold": i + 1, "n_train": len(fold.train), "n_val": len(fold.val), "n_eval": len(fold.eval),
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "loss": m["loss"],
            "val_accuracy": best_val_accuracy(trained), "best_epoch": trained.fit.best_epoch,
            "epochs_run": trained.fit.epochs_run, "train_time_s": trained.total_time_s,
            "confusion_matrix": m["confusion_matrix"], "strategy": trained.strategy, "options": trained.options,
            "selection": describe_selection(trained.fit.solver, len(fold.val), trained.fit.best_epoch,
                                            trained.fit.epochs_run, trained.fit.stopped_early),
        })
        work.put(f"fold-{i + 1}", records[-1])
    return records
