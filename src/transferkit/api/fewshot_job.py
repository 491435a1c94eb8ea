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

The model side is :mod:`transferkit.few_shot.fitting` (run by :mod:`transferkit.few_shot.fewshot_fit`), the
evaluation data :mod:`transferkit.data.fewshot_splits`, the report and metrics :mod:`transferkit.report.fewshot`.
A run writes a directory (config.yaml, metrics.json, report.md, confusion_matrix.png, bundle/) like ``transfer``; the
bundles are ordinary models (cosine or linear head) that ``predict``, ``export`` and ``serve`` use as they are.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import RunResult, score, set_threads, write_json, write_yaml
from transferkit.api.zeroshot_job import label_embeddings, zeroshot
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features
from transferkit.bundle import save_bundle
from transferkit.data.base import AnyDataset
from transferkit.data.fewshot_splits import EVALUATE_ON, evaluation_set
from transferkit.data.job_task import load_task
from transferkit.data.prepare import to_batches
from transferkit.data.splits import k_per_class, parse_classes
from transferkit.few_shot.episodes import evaluate_episodes
from transferkit.few_shot.fewshot_fit import fit_fewshot
from transferkit.few_shot.methods import FEW_SHOT_METHODS, check_fewshot_options
from transferkit.options import FewshotConfig
from transferkit.report.fewshot import episodes_metrics, fewshot_metrics, write_episodes_report, write_fewshot_report
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.source_loading import check_channels, load_source
from transferkit.terminal import Console

__all__ = ["EVALUATE_ON", "METHODS", "fewshot", "label_embeddings", "zeroshot"]
METHODS = tuple(FEW_SHOT_METHODS.names())


def _inputs(config: dict[str, Any]) -> list[Any]:
    """What a fewshot run reads (never to be written over): its source, data and descriptions file."""
    return [config.get(k) for k in ("source", "data", "descriptions")]


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
    full = load_task(task.data, "train", task.classes, task.strict, workers=task.workers)
    check_channels(full, base, task.convert_channels, f"data={task.data}")
    lineage = {"kind": "fewshot", "method": c.method, "source": source_meta.get("source", str(src.source)),
               "source_lineage": source_meta.get("lineage"), "data": task.data,
               "classes": parse_classes(task.classes), "labels_per_class": c.labels_per_class, "seed": c.seed}
    if c.method == "episodes":
        return _episodes_run(base, full, c, record, lineage, start, console)
    k = c.labels_per_class
    train_idx = k_per_class(full, k, c.seed)
    support = full.subset(train_idx, f"{full.name}[{k}/class]")
    evaluation, eval_name = evaluation_set(task.data, full, train_idx, task.classes, task.strict, c.evaluate_on)
    model = copy.deepcopy(base)
    model.eval()
    support_b, eval_b = to_batches(support, model.input_spec), to_batches(evaluation, model.input_spec)
    details = fit_fewshot(model, support_b, full.num_classes, c, console)
    t = time.perf_counter()
    metrics = score(model, eval_b, full.classes)
    details["evaluate_s"] = time.perf_counter() - t
    losses = details.pop("losses", None)
    metrics = fewshot_metrics(c, metrics, eval_name, support, train_idx, details, model.num_parameters(),
                              time.perf_counter() - start, {"train": support_b.key, "evaluation": eval_b.key})
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
    metrics = episodes_metrics(c, result.to_dict(), len(pool), extract_s, time.perf_counter() - start, batches.key)
    with run_session(Path(c.out), overwrite=c.overwrite, config=record, sources=_inputs(record)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        write_json(tmp / "metrics.json", {**metrics, "episode_accuracies": result.accuracies})
        write_episodes_report(tmp, metrics, lineage["source"], c.data.data, e.episode_classifier)
    console.print(f"{e.episodes} episodes, {result.n_way}-way {k_shot}-shot: accuracy {result.mean:.4f} ± "
                  f"{result.ci95:.4f} (95 % CI) → {c.out}")
    return RunResult(Path(c.out), metrics, None, {"lineage": lineage})
