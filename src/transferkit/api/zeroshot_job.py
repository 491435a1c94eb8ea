"""``zeroshot``: text classification from the label names alone, by similarity to label prompts.

Each label is embedded through templates or descriptions (:mod:`transferkit.few_shot.zeroshot`; the embeddings are
:func:`transferkit.few_shot.fitting.label_embeddings`) and texts go to the most similar label by cosine; with
labelled data the job reports accuracy. The options (flat names of :class:`~transferkit.options.ZeroshotConfig`):
``labels`` — the label names (comma-separated or a list; default: the data's class names); ``templates`` — one or
more strings with ``{label}`` (default ``"This text is about {label}."``); ``descriptions`` — a mapping (or YAML/JSON
file) ``label: description`` that replaces the templates for those labels. With ``data`` the ``split`` (falls back to
``train`` when there is no such split) is scored; its classes must all be among the labels (matched by name).

Writes a run directory (config.yaml, metrics.json, report.md, confusion_matrix.png with data, bundle/) like
``transfer``; the bundle's cosine head holds the label embeddings, an ordinary model that ``predict``, ``export``
and ``serve`` use as it is.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from transferkit import terminal
from transferkit.api.runs import RunResult, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import predict_logits
from transferkit.bundle import save_bundle
from transferkit.data.base import AnyDataset
from transferkit.data.job_task import load_task
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.errors import ConfigError
from transferkit.few_shot.fitting import label_embeddings
from transferkit.few_shot.zeroshot import DEFAULT_TEMPLATE, label_prompts, read_descriptions
from transferkit.options import ZeroshotConfig, parse_names
from transferkit.report.fewshot import write_zeroshot_report
from transferkit.report.metrics import classification_metrics
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.source_loading import check_channels, load_source
from transferkit.terminal import Console

__all__ = ["label_embeddings", "zeroshot"]


def _scored_data(c: ZeroshotConfig, model: Backbone, label_list: list[str], notes: list[str],
                 console: Console) -> tuple[AnyDataset | None, str | None, list[str]]:
    """The labelled data to score (``data``'s ``split``, else its train split), and the labels (default: its class
    names); every class of the data must be among the labels."""
    if c.data is None:
        return None, None, label_list
    used_split = c.split if has_split(c.data, c.split) else "train"
    if used_split != c.split:
        notes.append(f"data={c.data} has no '{c.split}' split; the '{used_split}' split was scored instead.")
    ds = load_task(c.data, used_split, c.classes, c.strict)
    check_channels(ds, model, False, f"data={c.data}")
    label_list = label_list or list(ds.classes)
    missing = [k for k, n in zip(ds.classes, ds.class_counts(), strict=True) if n and k not in label_list]
    if missing:
        raise ValueError(f"data={c.data}: classes {missing} are not among the zero-shot labels {label_list}; "
                         "add them to labels=… or keep only the others with classes=…")
    absent = [lab for lab in label_list if lab not in ds.classes or not ds.class_counts()[ds.classes.index(lab)]]
    if absent:
        msg = (f"labels {absent} have no examples in {c.data} ({used_split}); they can still be predicted, "
               "and each such prediction counts as an error")
        console.print(f"[yellow]note[/]: {msg}", highlight=False)
        notes.append(msg)
    return ds, used_split, label_list


def _evaluate(model: Backbone, ds: AnyDataset, labels: list[str], used_split: str) -> dict[str, Any]:
    """Accuracy and the other classification metrics of the zero-shot model on ``ds``, the data's classes matched
    to the labels by name."""
    batches = to_batches(ds, model.input_spec)
    t = time.perf_counter()
    pred = predict_logits(model, batches).argmax(1).numpy()
    truth = np.array([labels.index(k) for k in ds.classes])[ds.labels]
    return {"split": f"{used_split}", **classification_metrics(truth, pred, labels),
            "evaluate_s": time.perf_counter() - t}


def zeroshot(*args: Any, config: ZeroshotConfig | None = None, console: Console | None = None,
             **options: Any) -> RunResult:
    """Zero-shot text classification by similarity to label prompts (see the module docstring).

    ``zeroshot(source, data, **options)`` or ``zeroshot(config=ZeroshotConfig(...))`` (flat names of
    :class:`~transferkit.options.ZeroshotConfig`, described in the module docstring). Writes a run directory with a
    bundle whose head holds the label embeddings.
    """
    c = ZeroshotConfig.given(config, args, options)
    record = c.record("zeroshot")
    if isinstance(c.source, Backbone):
        record["source"] = f"<{c.source.arch} model object>"
    console = terminal.resolve(console)
    inputs = [record.get(k) for k in ("source", "data", "descriptions")]  # what the run reads: never written over
    check_output_dir(c.out, inputs)  # before anything loads (run_session checks again)
    set_threads()
    start = time.perf_counter()
    model, source_meta = load_source(c.source, max_length=c.max_length)
    if model.input_spec.modality != "text":
        raise ValueError(f"zero-shot classification needs a text encoder (e.g. minilm); {model.arch} takes "
                         f"{model.input_spec.modality} input. Zero-shot over images by description needs a joint "
                         "image-text model (CLIP-like), which transferkit does not ship offline")
    templates = [c.templates] if isinstance(c.templates, str) else list(c.templates or [DEFAULT_TEMPLATE])
    notes: list[str] = []
    ds, used_split, labels = _scored_data(c, model, parse_names(c.labels), notes, console)
    if len(labels) < 2:
        raise ConfigError("labels", "at least 2 labels (e.g. 'A,B'; default: the class names of data)", labels)
    prompts = label_prompts(labels, templates, read_descriptions(c.descriptions))
    model = copy.deepcopy(model)
    t = time.perf_counter()
    model.set_cosine_head(label_embeddings(model, prompts))
    metrics: dict[str, Any] = {"task": "zeroshot", "labels": labels, "prompts": prompts,
                               "label_embedding_s": time.perf_counter() - t}
    if ds is not None:
        metrics.update(_evaluate(model, ds, labels, used_split or ""))
    metrics["total_time_s"] = time.perf_counter() - start
    lineage = {"kind": "zeroshot", "source": source_meta.get("source", str(c.source)),
               "source_lineage": source_meta.get("lineage"), "labels": labels, "templates": templates, "data": c.data}
    with run_session(Path(c.out), overwrite=c.overwrite, config=record, sources=inputs) as session:
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
