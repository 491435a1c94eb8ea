"""``fewshot`` and ``zeroshot``: learn a classifier from K examples per class, or from the label names alone.

``fewshot(method=...)``:

* ``prototypes`` — class means of the frozen features, cosine nearest mean (no training);
* ``setfit`` — SetFit-style contrastive fine-tuning of the encoder on pairs of the K·C examples, then a
  logistic-regression head (:mod:`transferkit.few_shot.setfit`); for text and images alike;
* ``episodes`` — no model: N-way K-shot episodic evaluation of the frozen features over many episodes, mean
  accuracy with a 95 % confidence interval (:mod:`transferkit.few_shot.episodes`).

The K examples per class come from the training split (``k_per_class``, seeded). Scoring uses the test split when
the data has one, else every *other* example of the training split (``evaluate_on="rest"``: disjoint from the K
examples, never used for any choice). Nothing is selected on the evaluation data: SetFit's options are fixed in
advance, as in the paper.

``zeroshot`` embeds each label through templates or descriptions (:mod:`transferkit.few_shot.zeroshot`) and
classifies texts by cosine similarity; with labelled data it reports accuracy.

Both write a run directory (config.yaml, metrics.json, report.md, confusion_matrix.png, bundle/) like
``transfer``; the bundles are ordinary models (cosine or linear head) that ``predict``, ``export`` and ``serve``
use as they are.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console

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
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features, predict_logits
from transferkit.bundle import save_bundle
from transferkit.data.base import AnyDataset
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class, labels_record, parse_classes
from transferkit.data.tokens import encode_texts
from transferkit.engine.pairs import fit_pairs
from transferkit.errors import ConfigError
from transferkit.few_shot.episodes import CLASSIFIERS, evaluate_episodes
from transferkit.few_shot.methods import FEW_SHOT_METHODS
from transferkit.few_shot.prototypes import class_prototypes
from transferkit.few_shot.setfit import CosinePairLoss, fit_logistic_head, make_pairs
from transferkit.few_shot.zeroshot import DEFAULT_TEMPLATE, label_prompts
from transferkit.options import FewshotConfig, SetFitOptions, ZeroshotConfig
from transferkit.provenance import provenance
from transferkit.report.fewshot import write_episodes_report, write_fewshot_report, write_zeroshot_report
from transferkit.report.metrics import classification_metrics, did_not_learn, majority_rate
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, run_session

METHODS = tuple(FEW_SHOT_METHODS.names())
EVALUATE_ON = ("auto", "test", "rest")


def _inputs(config: dict[str, Any]) -> list[Any]:
    """What a fewshot/zeroshot run reads (never to be written over): its source, data and descriptions file."""
    return [config.get(k) for k in ("source", "data", "descriptions")]


def _evaluation_set(data: str, full: AnyDataset, train_idx: np.ndarray, classes: Any, strict: bool,
                    evaluate_on: str) -> tuple[AnyDataset, str]:
    """The test split (when there is one and ``evaluate_on`` allows it) or the rest of the training split."""
    if evaluate_on not in EVALUATE_ON:
        raise ConfigError("evaluate_on", f"one of {', '.join(EVALUATE_ON)}", evaluate_on)
    if evaluate_on in ("auto", "test") and has_split(data, "test"):
        test = load_task(data, "test", classes, strict)
        if test.classes != full.classes:
            raise ValueError(f"--data {data}: the test split's classes {test.classes} differ from the training "
                             f"split's {full.classes}")
        return test, "test"
    if evaluate_on == "test":
        raise ValueError(f"--data {data} has no test split; use --evaluate-on rest (the training examples not "
                         "sampled as the K per class)")
    rest = np.setdiff1d(np.arange(len(full)), train_idx)
    if len(rest) == 0:
        raise ValueError(f"--data {data}: no training examples are left to evaluate on after taking the K per class")
    return full.subset(rest, f"{full.name}[rest]"), "rest of the training split"


def _setfit(model: Backbone, support: TensorBatches, num_classes: int, seed: int, s: SetFitOptions,
            console: Console, progress: bool) -> dict[str, Any]:
    pairs, targets = make_pairs(support.y.numpy(), s.iterations, seed, s.max_pairs)
    params = list(model.stages.parameters())
    for p in params:
        p.requires_grad_(True)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(console=console, transient=True)
        bar.start()
        task = bar.add_task("contrastive fine-tuning", total=None)

    def report(step: int, total: int, loss: float) -> None:
        if bar is not None:
            bar.update(task, completed=step, total=total, description=f"contrastive fine-tuning (loss {loss:.4f})")

    try:
        fit = fit_pairs(model.forward_features, params, model, support, pairs, targets, CosinePairLoss(),
                        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed, progress=report)
    finally:
        if bar is not None:
            bar.stop()
    start = time.perf_counter()
    feats = extract_features(model, support)
    weight, bias = fit_logistic_head(feats, support.y, num_classes, seed=seed, c=s.head_c)
    model.reset_classifier(num_classes)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
    return {"pairs": len(pairs), "positive_pairs": int(targets.sum()), "steps": fit.steps,
            "body_train_s": fit.seconds, "head_fit_s": time.perf_counter() - start,
            "pair_loss_first": fit.losses[0], "pair_loss_last": float(np.mean(fit.losses[-max(1, fit.steps // 10):])),
            "losses": fit.losses}


def _fit(model: Backbone, support: TensorBatches, num_classes: int, c: FewshotConfig, console: Console
         ) -> dict[str, Any]:
    """Fit ``model``'s head (prototypes) or body and head (SetFit) on the support set; the run's details."""
    torch.manual_seed(c.seed)
    if c.method == "setfit":
        return _setfit(model, support, num_classes, c.seed, c.setfit, console, c.progress)
    t = time.perf_counter()
    model.set_cosine_head(class_prototypes(extract_features(model, support), support.y, num_classes))
    return {"fit_s": time.perf_counter() - t}


def _check(c: FewshotConfig) -> None:
    """Refuse what needs no data, before anything loads."""
    if c.method not in FEW_SHOT_METHODS:
        raise FEW_SHOT_METHODS.unknown(c.method)
    if c.episode.episode_classifier not in CLASSIFIERS:
        raise ConfigError("episode_classifier", f"one of {', '.join(CLASSIFIERS)}", c.episode.episode_classifier)
    if c.labels_per_class < 1:
        raise ConfigError("labels_per_class", "≥ 1", c.labels_per_class)


def _selection(c: FewshotConfig) -> str:
    """How the final model's settings were chosen (none were: a fixed recipe), for the labels record."""
    how = (f" (head C = {c.setfit.head_c:g}, {c.setfit.iterations} iterations)" if c.method == "setfit"
           else " (class means of the support features)")
    return (f"no selection (fixed recipe): {c.method} with its given settings{how}; every one of the K labels per "
            "class fitted the final model")


def fewshot(*args: Any, config: FewshotConfig | None = None, console: Console | None = None,
            **options: Any) -> RunResult:
    """Few-shot transfer of ``source`` to ``data`` from ``labels_per_class`` examples per class (see the module doc).

    ``fewshot(source, data, **options)`` or ``fewshot(config=FewshotConfig(...))``: the options are the flat names of
    :class:`~transferkit.options.FewshotConfig` — ``method``, ``labels_per_class``, ``evaluate_on``, ``seed``; SetFit's
    ``iterations`` (pairs per example and iteration: one positive, one negative), ``max_pairs`` (cap), ``epochs``,
    ``batch_size`` (pairs per step), ``lr`` (AdamW, linear warm-up/decay), ``head_c`` (inverse L2 strength of the
    logistic-regression head); the episodes' ``n_way``, ``n_query``, ``episodes``, ``episode_classifier``
    (prototypes or logistic; K = ``labels_per_class``). ``source`` may also be a :class:`Backbone` object.
    """
    c = FewshotConfig.given(config, args, options)
    record = c.record("fewshot")
    src, task = c.source, c.data
    if isinstance(src.source, Backbone):
        record["source"] = f"<{src.source.arch} model object>"
    console = console or Console()
    _check(c)
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
    metrics = {"task": "fewshot", "method": c.method, "split": eval_name, **metrics, "labels_per_class": k,
               "n_train": len(support), "seed": c.seed, "details": details,
               "labels": labels_record(k, None, len(support), 0, _selection(c), support.fingerprint(), train_idx),
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
               "labels": {**labels_record(k_shot, None, 0, 0, "no selection and no final model: an evaluation "
                                          "protocol — every episode fits its classifier on K support examples per "
                                          "class drawn afresh from the pool"), "train_final_model": None},
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


def _read_descriptions(descriptions: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    if descriptions is None or isinstance(descriptions, Mapping):
        return dict(descriptions or {})
    path = Path(descriptions)
    if not path.is_file():
        raise FileNotFoundError(f"--descriptions {path}: no such file (a YAML/JSON mapping 'label: description')")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"--descriptions {path}: expected a mapping 'label: description', got {type(loaded).__name__}")
    return {str(k): str(v) for k, v in loaded.items()}


def label_embeddings(model: Backbone, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """One unit vector per label: the normalised mean of its prompts' embeddings (prompt ensembling)."""
    flat = [p for group in prompts for p in group]
    ids, lengths, _ = encode_texts(flat, model.input_spec, "zero-shot prompts")
    feats = torch.nn.functional.normalize(extract_features(model, TensorBatches(ids, lengths=lengths)), dim=1)
    out, i = [], 0
    for group in prompts:
        out.append(feats[i:i + len(group)].mean(0))
        i += len(group)
    return torch.nn.functional.normalize(torch.stack(out), dim=1)


def _scored_data(c: ZeroshotConfig, model: Backbone, label_list: list[str], notes: list[str],
                 console: Console) -> tuple[AnyDataset | None, str | None, list[str]]:
    """The labelled data to score (``data``'s ``split``, else its train split), and the labels (default: its class
    names); every class of the data must be among the labels."""
    if c.data is None:
        return None, None, label_list
    used_split = c.split if has_split(c.data, c.split) else "train"
    if used_split != c.split:
        notes.append(f"--data {c.data} has no '{c.split}' split; the '{used_split}' split was scored instead.")
    ds = load_task(c.data, used_split, c.classes, c.strict)
    check_channels(ds, model, False, f"--data {c.data}")
    label_list = label_list or list(ds.classes)
    missing = [k for k, n in zip(ds.classes, ds.class_counts(), strict=True) if n and k not in label_list]
    if missing:
        raise ValueError(f"--data {c.data}: classes {missing} are not among the zero-shot labels {label_list}; "
                         "add them to --labels or keep only the others with --classes")
    absent = [lab for lab in label_list if lab not in ds.classes or not ds.class_counts()[ds.classes.index(lab)]]
    if absent:
        msg = (f"labels {absent} have no examples in {c.data} ({used_split}); they can still be predicted, "
               "and each such prediction counts as an error")
        console.print(f"[yellow]note[/]: {msg}", highlight=False)
        notes.append(msg)
    return ds, used_split, label_list


def zeroshot(*args: Any, config: ZeroshotConfig | None = None, console: Console | None = None,
             **options: Any) -> RunResult:
    """Zero-shot text classification by similarity to label prompts (see the module docstring).

    ``zeroshot(source, data, **options)`` or ``zeroshot(config=ZeroshotConfig(...))`` (flat names of
    :class:`~transferkit.options.ZeroshotConfig`). ``labels``: the label names (comma-separated or a list; default:
    the data's class names); ``templates``: one or more strings with ``{label}`` (default ``"This text is about
    {label}."``); ``descriptions``: a mapping (or YAML/JSON file) ``label: description`` that replaces the templates
    for those labels. With ``data`` the ``split`` (falls back to ``train`` when there is no such split) is scored;
    its classes must all be among the labels (matched by name). Writes a run directory with a bundle whose head
    holds the label embeddings.
    """
    c = ZeroshotConfig.given(config, args, options)
    record = c.record("zeroshot")
    if isinstance(c.source, Backbone):
        record["source"] = f"<{c.source.arch} model object>"
    console = console or Console()
    check_output_dir(c.out, _inputs(record))  # before anything loads (run_session checks again)
    set_threads()
    start = time.perf_counter()
    model, source_meta = load_source(c.source, max_length=c.max_length)
    if model.input_spec.modality != "text":
        raise ValueError(f"zero-shot classification needs a text encoder (e.g. minilm); {model.arch} takes "
                         f"{model.input_spec.modality} input. Zero-shot over images by description needs a joint "
                         "image-text model (CLIP-like), which transferkit does not ship offline")
    labels = [s.strip() for s in c.labels.split(",")] if isinstance(c.labels, str) else list(c.labels or [])
    templates = [c.templates] if isinstance(c.templates, str) else list(c.templates or [DEFAULT_TEMPLATE])
    notes: list[str] = []
    ds, used_split, labels = _scored_data(c, model, labels, notes, console)
    if len(labels) < 2:
        raise ValueError(f"zero-shot needs at least 2 labels, got {labels}; give --labels A,B,… (or --data)")
    prompts = label_prompts(labels, templates, _read_descriptions(c.descriptions))
    model = copy.deepcopy(model)
    t = time.perf_counter()
    model.set_cosine_head(label_embeddings(model, prompts))
    metrics: dict[str, Any] = {"task": "zeroshot", "labels": labels, "prompts": prompts,
                               "label_embedding_s": time.perf_counter() - t}
    if ds is not None:
        batches = to_batches(ds, model.input_spec)
        t = time.perf_counter()
        pred = predict_logits(model, batches).argmax(1).numpy()
        truth = np.array([labels.index(k) for k in ds.classes])[ds.labels]
        metrics.update({"split": f"{used_split}", **classification_metrics(truth, pred, labels),
                        "evaluate_s": time.perf_counter() - t})
    metrics["total_time_s"] = time.perf_counter() - start
    lineage = {"kind": "zeroshot", "source": source_meta.get("source", str(c.source)),
               "source_lineage": source_meta.get("lineage"), "labels": labels, "templates": templates, "data": c.data}
    with run_session(Path(c.out), overwrite=c.overwrite, config=record, sources=_inputs(record)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        save_bundle(model, {"classes": labels, "lineage": lineage, "metrics": {
            k: metrics[k] for k in ("split", "accuracy", "macro_f1", "n") if k in metrics}, "config": record},
            tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_zeroshot_report(tmp, metrics, lineage["source"], c.data, notes)
    if ds is not None:
        console.print(metrics_table(metrics, f"zeroshot → {c.out}  ({used_split} split)"))
    else:
        console.print(f"zero-shot model for labels {labels} → {c.out}/bundle")
    return RunResult(Path(c.out), metrics, model, {"classes": labels, "lineage": lineage})
