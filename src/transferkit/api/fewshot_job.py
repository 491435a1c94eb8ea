"""``fewshot``: learn a classifier from K examples per class (``zeroshot``, from the label names alone, is
:mod:`transferkit.api.zeroshot_job`; both are importable from here).

``fewshot(method=...)``:

* ``prototypes`` — class means of the frozen features, cosine nearest mean (no training; Snell et al., 2017);
* ``setfit`` — SetFit-style contrastive fine-tuning of the encoder on pairs of the K·C examples, then a
  logistic-regression head (Tunstall et al., 2022; :mod:`transferkit.few_shot.setfit`); for text and images alike;
* ``episodes`` — no model: N-way K-shot episodic evaluation of the frozen features over many episodes, mean
  accuracy with a 95 % confidence interval (:mod:`transferkit.few_shot.episodes`).

The K examples per class come from the training split (``labels_per_class``, seeded by ``seed``, which also seeds
the pairs and the episodes). Scoring uses the test split when the data has one, else every *other* example of the
training split (``evaluate_on``: ``auto``, ``test`` or ``rest`` — disjoint from the K examples, never used for any
choice). Nothing is selected on the evaluation data: SetFit's options are fixed in advance, as in the paper —
``iterations`` (pairs per example and iteration: one positive, one negative), ``max_pairs`` (cap), ``epochs``,
``batch_size`` (pairs per step), ``lr`` (AdamW, linear warm-up/decay), ``head_c`` (inverse L2 strength of the
logistic-regression head). The episodes take ``n_way``, ``n_query``, ``episodes`` and ``episode_classifier``
(prototypes or logistic; K = ``labels_per_class``). ``source`` may also be a :class:`Backbone` object.

The model side is :mod:`transferkit.few_shot.fitting`, the report :mod:`transferkit.report.fewshot`. A run writes a
directory (config.yaml, metrics.json, report.md, confusion_matrix.png, bundle/) like ``transfer``; the bundles are
ordinary models (cosine or linear head) that ``predict``, ``export`` and ``serve`` use as they are.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit import terminal
from transferkit.api.runs import (
    RunResult,
    check_channels,
    load_source,
    load_task,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.api.zeroshot_job import label_embeddings, zeroshot
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features
from transferkit.bundle import save_bundle
from transferkit.data.base import AnyDataset
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class, labels_record, parse_classes
from transferkit.errors import ConfigError
from transferkit.few_shot.episodes import evaluate_episodes
from transferkit.few_shot.fitting import fit_prototypes, fit_setfit
from transferkit.few_shot.methods import FEW_SHOT_METHODS, check_fewshot_options
from transferkit.options import FewshotConfig
from transferkit.provenance import provenance
from transferkit.report.fewshot import (
    EPISODES_SELECTION,
    fewshot_selection,
    write_episodes_report,
    write_fewshot_report,
)
from transferkit.report.metrics import did_not_learn, majority_rate
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.terminal import Console

__all__ = ["EVALUATE_ON", "METHODS", "fewshot", "label_embeddings", "zeroshot"]
METHODS = tuple(FEW_SHOT_METHODS.names())
EVALUATE_ON = ("auto", "test", "rest")


def _inputs(config: dict[str, Any]) -> list[Any]:
    """What a fewshot run reads (never to be written over): its source, data and descriptions file."""
    return [config.get(k) for k in ("source", "data", "descriptions")]


def _evaluation_set(data: str, full: AnyDataset, train_idx: np.ndarray, classes: Any, strict: bool,
                    evaluate_on: str) -> tuple[AnyDataset, str]:
    """The test split (when there is one and ``evaluate_on`` allows it) or the rest of the training split."""
    if evaluate_on not in EVALUATE_ON:
        raise ConfigError("evaluate_on", f"one of {', '.join(EVALUATE_ON)}", evaluate_on)
    if evaluate_on in ("auto", "test") and has_split(data, "test"):
        test = load_task(data, "test", classes, strict)
        if test.classes != full.classes:
            raise ConfigError("data", "a test split with the training split's classes", data,
                              f"the test split's classes {test.classes} differ from the training split's "
                              f"{full.classes}")
        return test, "test"
    if evaluate_on == "test":
        raise ConfigError("evaluate_on", f"auto or rest ({data} has no test split)", evaluate_on,
                          "rest evaluates on the training examples not sampled as the K per class")
    rest = np.setdiff1d(np.arange(len(full)), train_idx)
    if len(rest) == 0:
        raise ConfigError("data", "a test split, or training examples beyond the K per class to evaluate on", data,
                          "none are left after taking the K per class")
    return full.subset(rest, f"{full.name}[rest]"), "rest of the training split"


def _fit(model: Backbone, support: TensorBatches, num_classes: int, c: FewshotConfig, console: Console
         ) -> dict[str, Any]:
    """Fit ``model``'s head (prototypes) or body and head (SetFit, with a progress bar) on the support set; the
    run's details."""
    torch.manual_seed(c.seed)
    if c.method != "setfit":
        return fit_prototypes(model, support, num_classes)
    s = c.setfit
    with terminal.progress_bar(console, c.progress) as bar:
        task = bar.add_task("contrastive fine-tuning", total=None)

        def report(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, description=f"contrastive fine-tuning (loss {loss:.4f})")

        return fit_setfit(model, support, num_classes, c.seed, iterations=s.iterations, max_pairs=s.max_pairs,
                          epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, head_c=s.head_c, progress=report)


def fewshot(*args: Any, config: FewshotConfig | None = None, console: Console | None = None,
            **options: Any) -> RunResult:
    """Few-shot transfer of ``source`` to ``data`` from ``labels_per_class`` examples per class (see the module doc).

    ``fewshot(source, data, **options)`` or ``fewshot(config=FewshotConfig(...))``: the options are the flat names of
    :class:`~transferkit.options.FewshotConfig`, described in the module docstring.
    """
    c = FewshotConfig.given(config, args, options)
    record = c.record("fewshot")
    src, task = c.source, c.data
    if isinstance(src.source, Backbone):
        record["source"] = f"<{src.source.arch} model object>"
    console = terminal.resolve(console)
    check_fewshot_options(c.method, c.episode.episode_classifier, c.labels_per_class)
    check_output_dir(c.out, _inputs(record))  # before anything loads (run_session checks again)
    set_threads()
    start = time.perf_counter()
    base, source_meta = load_source(src.source, src.image_size, src.weights, src.max_length)
    full = load_task(task.data, "train", task.classes, task.strict)
    check_channels(full, base, task.convert_channels, f"--data {task.data}")
    lineage = {"kind": "fewshot", "method": c.method, "source": source_meta.get("source", str(src.source)),
               "source_lineage": source_meta.get("lineage"), "data": task.data,
               "classes": parse_classes(task.classes), "labels_per_class": c.labels_per_class, "seed": c.seed}
    if c.method == "episodes":
        return _episodes_run(base, full, c, record, lineage, start, console)
    k = c.labels_per_class
    train_idx = k_per_class(full, k, c.seed)
    support = full.subset(train_idx, f"{full.name}[{k}/class]")
    evaluation, eval_name = _evaluation_set(task.data, full, train_idx, task.classes, task.strict, c.evaluate_on)
    model = copy.deepcopy(base)
    model.eval()
    support_b, eval_b = to_batches(support, model.input_spec), to_batches(evaluation, model.input_spec)
    details = _fit(model, support_b, full.num_classes, c, console)
    t = time.perf_counter()
    metrics = score(model, eval_b, full.classes)
    details["evaluate_s"] = time.perf_counter() - t
    losses = details.pop("losses", None)
    metrics["did_not_learn"] = did_not_learn(metrics["accuracy"], metrics["n"],
                                             majority_rate(metrics["confusion_matrix"]))
    selection = fewshot_selection(c.method, c.setfit.head_c, c.setfit.iterations)
    metrics = {"task": "fewshot", "method": c.method, "split": eval_name, **metrics, "labels_per_class": k,
               "n_train": len(support), "seed": c.seed, "details": details,
               "labels": labels_record(k, None, len(support), 0, selection, support.fingerprint(), train_idx),
               "total_params": model.num_parameters(), "total_time_s": time.perf_counter() - start,
               "provenance": provenance(c.seed, {"train": support_b.key, "evaluation": eval_b.key})}
    with run_session(Path(c.out), overwrite=c.overwrite, config=record, sources=_inputs(record)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        save_bundle(model, {"classes": full.classes, "lineage": lineage, "metrics": {
            key: metrics[key] for key in ("split", "accuracy", "macro_f1", "n")}, "config": record}, tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_fewshot_report(tmp, metrics, losses, full.classes, lineage["source"], task.data, len(evaluation))
    console.print(metrics_table(metrics, f"fewshot {c.method} → {c.out}  ({eval_name})"))
    return RunResult(Path(c.out), metrics, model, {"classes": full.classes, "lineage": lineage})


def _episodes_run(model: Backbone, pool: AnyDataset, c: FewshotConfig, record: dict[str, Any],
                  lineage: dict[str, Any], start: float, console: Console) -> RunResult:
    """``method="episodes"``: N-way K-shot episodes on the frozen features of the labelled pool (the training
    split); metrics.json holds every episode's accuracy, the run has no bundle (no final model)."""
    e, k_shot = c.episode, c.labels_per_class
    n_way = min(e.n_way, pool.num_classes) if e.n_way > pool.num_classes and pool.num_classes >= 2 else e.n_way
    batches = to_batches(pool, model.input_spec)
    t = time.perf_counter()
    feats = extract_features(model, batches)
    extract_s = time.perf_counter() - t
    result = evaluate_episodes(feats, pool.labels, n_way, k_shot, e.n_query, e.episodes, c.seed, e.episode_classifier)
    if e.episodes < 100:
        console.print(f"[yellow]note[/]: only {e.episodes} episodes; the usual protocol uses ≥ 100 (600 by default) "
                      "for a tight confidence interval", highlight=False)
    metrics = {"task": "fewshot", "method": "episodes", "split": "training split (labelled pool)",
               **result.to_dict(), "pool": len(pool), "seed": c.seed, "feature_extraction_s": extract_s,
               "labels": {**labels_record(k_shot, None, 0, 0, EPISODES_SELECTION), "train_final_model": None},
               "total_time_s": time.perf_counter() - start,
               "provenance": provenance(c.seed, {"pool": batches.key})}
    with run_session(Path(c.out), overwrite=c.overwrite, config=record, sources=_inputs(record)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        write_json(tmp / "metrics.json", {**metrics, "episode_accuracies": result.accuracies})
        write_episodes_report(tmp, metrics, lineage["source"], c.data.data, e.episode_classifier)
    console.print(f"{e.episodes} episodes, {result.n_way}-way {k_shot}-shot: accuracy {result.mean:.4f} ± "
                  f"{result.ci95:.4f} (95 % CI) → {c.out}")
    return RunResult(Path(c.out), metrics, None, {"lineage": lineage})
