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
from transferkit.provenance import provenance
from transferkit.report.fewshot import write_fewshot_report
from transferkit.report.markdown import run_report
from transferkit.report.metrics import classification_metrics, did_not_learn, majority_rate
from transferkit.report.plots import plot_confusion
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


def _setfit(model: Backbone, support: TensorBatches, num_classes: int, seed: int, iterations: int,
            max_pairs: int | None, epochs: int, batch_size: int, lr: float, head_c: float,
            console: Console, progress: bool) -> dict[str, Any]:
    pairs, targets = make_pairs(support.y.numpy(), iterations, seed, max_pairs)
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
                        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=report)
    finally:
        if bar is not None:
            bar.stop()
    start = time.perf_counter()
    feats = extract_features(model, support)
    weight, bias = fit_logistic_head(feats, support.y, num_classes, seed=seed, c=head_c)
    model.reset_classifier(num_classes)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)
    return {"pairs": len(pairs), "positive_pairs": int(targets.sum()), "steps": fit.steps,
            "body_train_s": fit.seconds, "head_fit_s": time.perf_counter() - start,
            "pair_loss_first": fit.losses[0], "pair_loss_last": float(np.mean(fit.losses[-max(1, fit.steps // 10):])),
            "losses": fit.losses}


def fewshot(
    source: str | Path | Backbone = "minilm", data: str = "ag_news", method: str = "setfit",
    labels_per_class: int = 8, classes: str | list[int] | None = None, seed: int = 0,
    out: str | Path = "runs/fewshot", evaluate_on: str = "auto", iterations: int = 20, max_pairs: int | None = None,
    epochs: int = 1, batch_size: int = 16, lr: float = 2e-5, head_c: float = 1.0, n_way: int = 5,
    n_query: int = 15, episodes: int = 600, episode_classifier: str = "prototypes", max_length: int | None = None,
    image_size: int | None = None, strict: bool = False, convert_channels: bool = False, overwrite: bool = False,
    progress: bool = True, console: Console | None = None,
) -> RunResult:
    """Few-shot transfer of ``source`` to ``data`` from ``labels_per_class`` examples per class (see the module doc).

    SetFit options: ``iterations`` (pairs per example and iteration: one positive, one negative), ``max_pairs``
    (cap), ``epochs``, ``batch_size`` (pairs per step), ``lr`` (AdamW, linear warm-up/decay), ``head_c``
    (inverse L2 strength of the logistic-regression head). Episode options: ``n_way``, ``n_query``, ``episodes``,
    ``episode_classifier`` (prototypes or logistic); K = ``labels_per_class``.
    """
    console = console or Console()
    config = {"command": "fewshot", **{k: str(v) if isinstance(v, Path) else v for k, v in locals().items()
                                       if k not in ("console",)}}
    if isinstance(source, Backbone):
        config["source"] = f"<{source.arch} model object>"
    if method not in FEW_SHOT_METHODS:
        raise FEW_SHOT_METHODS.unknown(method)
    if episode_classifier not in CLASSIFIERS:
        raise ConfigError("episode_classifier", f"one of {', '.join(CLASSIFIERS)}", episode_classifier)
    if labels_per_class < 1:
        raise ConfigError("labels_per_class", "≥ 1", labels_per_class)
    check_output_dir(out, _inputs(config))  # before anything loads (run_session checks again)
    set_threads()
    start = time.perf_counter()
    base, source_meta = load_source(source, image_size, max_length=max_length)
    full = load_task(data, "train", classes, strict)
    check_channels(full, base, convert_channels, f"--data {data}")
    lineage = {"kind": "fewshot", "method": method, "source": source_meta.get("source", str(source)),
               "source_lineage": source_meta.get("lineage"), "data": data, "classes": parse_classes(classes),
               "labels_per_class": labels_per_class, "seed": seed}
    if method == "episodes":
        return _episodes_run(base, full, data, labels_per_class, n_way, n_query, episodes, episode_classifier, seed,
                             out, config, lineage, overwrite, start, console)
    train_idx = k_per_class(full, labels_per_class, seed)
    support = full.subset(train_idx, f"{full.name}[{labels_per_class}/class]")
    evaluation, eval_name = _evaluation_set(data, full, train_idx, classes, strict, evaluate_on)
    model = copy.deepcopy(base)
    model.eval()
    support_b = to_batches(support, model.input_spec)
    eval_b = to_batches(evaluation, model.input_spec)
    details: dict[str, Any] = {}
    torch.manual_seed(seed)
    if method == "prototypes":
        t = time.perf_counter()
        protos = class_prototypes(extract_features(model, support_b), support_b.y, full.num_classes)
        model.set_cosine_head(protos)
        details["fit_s"] = time.perf_counter() - t
    else:
        details = _setfit(model, support_b, full.num_classes, seed, iterations, max_pairs, epochs, batch_size, lr,
                          head_c, console, progress)
    t = time.perf_counter()
    metrics = score(model, eval_b, full.classes)
    details["evaluate_s"] = time.perf_counter() - t
    losses = details.pop("losses", None)
    metrics["did_not_learn"] = did_not_learn(metrics["accuracy"], metrics["n"],
                                             majority_rate(metrics["confusion_matrix"]))
    metrics = {"task": "fewshot", "method": method, "split": eval_name, **metrics, "labels_per_class": labels_per_class,
               "n_train": len(support), "seed": seed, "details": details,
               "labels": labels_record(labels_per_class, None, len(support), 0,
                                       f"no selection (fixed recipe): {method} with its given settings"
                                       + (f" (head C = {head_c:g}, {iterations} iterations)" if method == "setfit"
                                          else " (class means of the support features)")
                                       + "; every one of the K labels per class fitted the final model",
                                       support.fingerprint(), train_idx),
               "total_params": model.num_parameters(), "total_time_s": time.perf_counter() - start,
               "provenance": provenance(seed, {"train": support_b.key, "evaluation": eval_b.key})}
    with run_session(Path(out), overwrite=overwrite, config=config, sources=_inputs(config)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config)
        save_bundle(model, {"classes": full.classes, "lineage": lineage, "metrics": {
            k: metrics[k] for k in ("split", "accuracy", "macro_f1", "n")}, "config": config}, tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_fewshot_report(tmp, metrics, losses, full.classes, lineage["source"], data, len(evaluation))
    console.print(metrics_table(metrics, f"fewshot {method} → {out}  ({eval_name})"))
    return RunResult(Path(out), metrics, model, {"classes": full.classes, "lineage": lineage})


def _episodes_run(model: Backbone, pool: AnyDataset, data: str, k_shot: int, n_way: int, n_query: int,
                  episodes: int, classifier: str, seed: int, out: str | Path, config: dict[str, Any],
                  lineage: dict[str, Any], overwrite: bool, start: float, console: Console) -> RunResult:
    n_way = min(n_way, pool.num_classes) if n_way > pool.num_classes and pool.num_classes >= 2 else n_way
    batches = to_batches(pool, model.input_spec)
    t = time.perf_counter()
    feats = extract_features(model, batches)
    extract_s = time.perf_counter() - t
    result = evaluate_episodes(feats, pool.labels, n_way, k_shot, n_query, episodes, seed, classifier)
    if episodes < 100:
        console.print(f"[yellow]note[/]: only {episodes} episodes; the usual protocol uses ≥ 100 (600 by default) "
                      "for a tight confidence interval", highlight=False)
    metrics = {"task": "fewshot", "method": "episodes", "split": "training split (labelled pool)",
               **result.to_dict(), "pool": len(pool), "seed": seed, "feature_extraction_s": extract_s,
               "labels": {**labels_record(k_shot, None, 0, 0, "no selection and no final model: an evaluation "
                                          "protocol — every episode fits its classifier on K support examples per "
                                          "class drawn afresh from the pool"), "train_final_model": None},
               "total_time_s": time.perf_counter() - start,
               "provenance": provenance(seed, {"pool": batches.key})}
    with run_session(Path(out), overwrite=overwrite, config=config, sources=_inputs(config)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config)
        write_json(tmp / "metrics.json", {**metrics, "episode_accuracies": result.accuracies})
        facts = {"job": "fewshot (episodic evaluation)", "source": lineage["source"], "data": data,
                 "episodes": f"{episodes} × {result.n_way}-way {k_shot}-shot, {n_query} queries per class",
                 "classifier": classifier, "accuracy": f"{result.mean:.4f} ± {result.ci95:.4f} (95 % CI)",
                 "features": f"{len(pool)} examples in {extract_s:.1f} s", "seed": seed}
        run_report(tmp / "report.md", "transferkit few-shot episodic evaluation", facts, None, (),
                   ["Each episode samples its classes, support and query examples afresh from the labelled pool; "
                    "the interval is 1.96 · std / √episodes."])
    console.print(f"{episodes} episodes, {result.n_way}-way {k_shot}-shot: accuracy {result.mean:.4f} ± "
                  f"{result.ci95:.4f} (95 % CI) → {out}")
    return RunResult(Path(out), metrics, None, {"lineage": lineage})


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


def zeroshot(
    source: str | Path | Backbone = "minilm", data: str | None = None, labels: str | Sequence[str] | None = None,
    templates: str | Sequence[str] | None = None, descriptions: str | Path | Mapping[str, str] | None = None,
    split: str = "test", classes: str | list[int] | None = None, out: str | Path = "runs/zeroshot",
    max_length: int | None = None, strict: bool = False, overwrite: bool = False, console: Console | None = None,
) -> RunResult:
    """Zero-shot text classification by similarity to label prompts (see the module docstring).

    ``labels``: the label names (comma-separated or a list; default: the data's class names); ``templates``: one
    or more strings with ``{label}`` (default ``"This text is about {label}."``); ``descriptions``: a mapping (or
    YAML/JSON file) ``label: description`` that replaces the templates for those labels. With ``data`` the
    ``split`` (falls back to ``train`` when there is no such split) is scored; its classes must all be among the
    labels (matched by name). Writes a run directory with a bundle whose head holds the label embeddings.
    """
    console = console or Console()
    config = {"command": "zeroshot", **{k: str(v) if isinstance(v, Path) else v for k, v in locals().items()
                                        if k not in ("console",)}}
    if isinstance(source, Backbone):
        config["source"] = f"<{source.arch} model object>"
    check_output_dir(out, _inputs(config))  # before anything loads (run_session checks again)
    set_threads()
    start = time.perf_counter()
    model, source_meta = load_source(source, max_length=max_length)
    if model.input_spec.modality != "text":
        raise ValueError(f"zero-shot classification needs a text encoder (e.g. minilm); {model.arch} takes "
                         f"{model.input_spec.modality} input. Zero-shot over images by description needs a joint "
                         "image-text model (CLIP-like), which transferkit does not ship offline")
    label_list = [s.strip() for s in labels.split(",")] if isinstance(labels, str) else list(labels or [])
    templates_list = [templates] if isinstance(templates, str) else list(templates or [DEFAULT_TEMPLATE])
    ds, used_split, notes = None, None, []
    if data is not None:
        used_split = split if has_split(data, split) else "train"
        if used_split != split:
            notes.append(f"--data {data} has no '{split}' split; the '{used_split}' split was scored instead.")
        ds = load_task(data, used_split, classes, strict)
        check_channels(ds, model, False, f"--data {data}")
        if not label_list:
            label_list = list(ds.classes)
        missing = [c for c, n in zip(ds.classes, ds.class_counts(), strict=True) if n and c not in label_list]
        if missing:
            raise ValueError(f"--data {data}: classes {missing} are not among the zero-shot labels {label_list}; "
                             "add them to --labels or keep only the others with --classes")
        absent = [lab for lab in label_list if lab not in ds.classes or not ds.class_counts()[ds.classes.index(lab)]]
        if absent:
            msg = (f"labels {absent} have no examples in {data} ({used_split}); they can still be predicted, "
                   "and each such prediction counts as an error")
            console.print(f"[yellow]note[/]: {msg}", highlight=False)
            notes.append(msg)
    if len(label_list) < 2:
        raise ValueError(f"zero-shot needs at least 2 labels, got {label_list}; give --labels A,B,… (or --data)")
    prompts = label_prompts(label_list, templates_list, _read_descriptions(descriptions))
    model = copy.deepcopy(model)
    t = time.perf_counter()
    model.set_cosine_head(label_embeddings(model, prompts))
    embed_s = time.perf_counter() - t
    metrics: dict[str, Any] = {"task": "zeroshot", "labels": label_list, "prompts": prompts,
                               "label_embedding_s": embed_s}
    if ds is not None:
        batches = to_batches(ds, model.input_spec)
        t = time.perf_counter()
        pred = predict_logits(model, batches).argmax(1).numpy()
        truth = np.array([label_list.index(c) for c in ds.classes])[ds.labels]
        metrics.update({"split": f"{used_split}", **classification_metrics(truth, pred, label_list),
                        "evaluate_s": time.perf_counter() - t})
    metrics["total_time_s"] = time.perf_counter() - start
    lineage = {"kind": "zeroshot", "source": source_meta.get("source", str(source)),
               "source_lineage": source_meta.get("lineage"), "labels": label_list, "templates": templates_list,
               "data": data}
    with run_session(Path(out), overwrite=overwrite, config=config, sources=_inputs(config)) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config)
        save_bundle(model, {"classes": label_list, "lineage": lineage, "metrics": {
            k: metrics[k] for k in ("split", "accuracy", "macro_f1", "n") if k in metrics}, "config": config},
            tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        images = []
        if ds is not None:
            plot_confusion(metrics["confusion_matrix"], label_list, tmp / "confusion_matrix.png",
                           f"zero-shot, {used_split} split, accuracy {metrics['accuracy']:.3f}")
            images.append("confusion_matrix.png")
        facts = {"job": "zeroshot", "source": lineage["source"], "labels": ", ".join(label_list),
                 "prompts": "; ".join(" | ".join(p) for p in prompts), "data": data or "-",
                 "total time": f"{metrics['total_time_s']:.1f} s"}
        notes.append("No labelled example was used: each label is represented by its prompts' embeddings.")
        run_report(tmp / "report.md", "transferkit zero-shot run", facts, metrics if ds is not None else None,
                   images, notes)
    if ds is not None:
        console.print(metrics_table(metrics, f"zeroshot → {out}  ({used_split} split)"))
    else:
        console.print(f"zero-shot model for labels {label_list} → {out}/bundle")
    return RunResult(Path(out), metrics, model, {"classes": label_list, "lineage": lineage})
