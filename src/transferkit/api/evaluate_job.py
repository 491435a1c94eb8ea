"""``evaluate``: metrics of a trained model (run directory or bundle) on a split of a dataset (or all of it).

:mod:`transferkit.api.use` re-exports :func:`evaluate` and :data:`ALL_SPLITS`, where they were defined before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transferkit import terminal
from transferkit.api.runs import score, set_threads, write_json, write_yaml
from transferkit.data.class_map import apply_class_map
from transferkit.data.job_task import check_classes, load_task
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import align_classes
from transferkit.errors import ConfigError
from transferkit.options import EvaluateConfig
from transferkit.report.plots import plot_confusion
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.source_loading import check_channels, load_source
from transferkit.terminal import Console

ALL_SPLITS = "all (no test split)"  # metrics["split"] when data without a test split is evaluated whole


def evaluate(*args: Any, config: EvaluateConfig | None = None, console: Console | None = None,
             **options: Any) -> dict[str, Any]:
    """Metrics of a trained model (run dir or bundle) on ``split`` of ``data`` restricted to ``classes``.

    ``evaluate(model, data, classes, split, **options)`` or ``evaluate(config=EvaluateConfig(...))`` (the flat
    names of :class:`~transferkit.options.EvaluateConfig`: also ``out``, ``strict``, ``convert_channels``).

    ``split=None`` (the default) takes the test split when the data has one, and otherwise *all* of the data —
    every split it has, e.g. a labelled folder of class sub-folders (the way people keep a test set) — and says
    so: ``metrics["split"]`` is then ``"all (no test split)"`` and ``metrics["splits"]`` lists what was read. A
    split named explicitly must exist. The data's classes must match the model's (number, and names where both
    have them); data holding some of the model's classes by name (a held-out folder with one class, say) is
    mapped onto them; a model trained with a class map (``transfer(class_map=...)``) gets the data mapped the same
    way. With ``out``, ``config.yaml``, ``metrics.json`` and ``confusion_matrix.png`` are written there.
    """
    c = EvaluateConfig.given(config, args, options)
    model, data, classes, split, out, strict = c.model, c.data, c.classes, c.split, c.out, c.strict
    if model is None:
        raise ConfigError("model", "a run or bundle directory", None)
    if data is None:
        raise ConfigError("data", "a dataset name or name:PATH", None)
    record = c.record("evaluate")
    console = terminal.resolve(console)
    if out is not None:  # it writes into out: a new, empty or earlier evaluate folder, never the model or data
        check_output_dir(out, [model, data], kind="evaluate")
    splits = _evaluation_splits(data, split)
    set_threads()
    net, meta = load_source(model)
    if meta.get("tasks"):
        raise ValueError(f"evaluate {model}: a multi-task model (tasks {[t['name'] for t in meta['tasks']]}); its "
                         "per-task test figures are in its run's metrics.json and report.md, and 'transferkit predict' "
                         "returns every task's prediction")
    ds = _joined([load_task(data, s, classes, strict) for s in splits])
    cmap = (meta.get("lineage") or {}).get("class_map")
    if cmap and ds.classes != list(meta.get("classes") or []):  # trained with --class-map: map the data the same way
        ds = apply_class_map(ds, cmap, f"the class map {model} was trained with")
    ds = align_classes(ds, meta.get("classes") or [])  # by name: e.g. a held-out folder holding one of the classes
    check_classes(ds, meta, f"evaluate {model}")
    check_channels(ds, net, c.convert_channels, f"data={data}")
    spec = net.input_spec
    metrics = score(net, to_batches(ds, spec), ds.classes)  # images or texts, prepared as the model expects
    shown = split or ("test" if splits == ["test"] else ALL_SPLITS)
    metrics = {"model": str(model), "data": data, "split": shown, "splits": splits, **metrics}
    if shown == ALL_SPLITS:
        console.print(f"note: {data} has no test split, so all of it was evaluated ({len(ds)} examples"
                      f"{'; splits ' + ', '.join(splits) if len(splits) > 1 else ''}); name one with --split",
                      highlight=False, markup=False)
    if out is not None:
        out = open_output_dir(out, "evaluate")
        write_yaml(out / "config.yaml", record)
        write_json(out / "metrics.json", metrics)
        plot_confusion(metrics["confusion_matrix"], ds.classes, out / "confusion_matrix.png",
                       f"{shown if shown == ALL_SPLITS else shown + ' split'}, accuracy {metrics['accuracy']:.3f}")
    console.print(metrics_table(metrics, f"evaluate {model} on {data} ({shown})"))
    return metrics


def _evaluation_splits(data: str, split: str | None) -> list[str]:
    """``[split]`` when one is named; else ``["test"]`` when ``data`` has a test split, else every split it has."""
    if split is not None:
        return [split]
    if has_split(data, "test"):
        return ["test"]
    return [s for s in ("train", "val") if has_split(data, s)] or ["train"]


def _joined(parts: list[Any]) -> Any:
    """One dataset of the splits ``parts`` (same classes: a held-out split takes the training split's), in order."""
    if len(parts) == 1:
        return parts[0]
    first, name = parts[0], "+".join(p.name for p in parts)
    labels = np.concatenate([p.labels for p in parts])
    if first.modality == "text":
        rows = sum((list(p.rows or [""] * len(p)) for p in parts), [])
        return type(first)(sum((list(p.texts) for p in parts), []), labels, list(first.classes), name, rows)
    arrays = [p.images for p in parts]
    same = all(isinstance(a, np.ndarray) for a in arrays) and len({a.shape[1:] for a in arrays}) == 1
    images = np.concatenate(arrays) if same else [im for a in arrays for im in a]
    paths = sum((list(p.paths) if p.paths is not None else [""] * len(p) for p in parts), [])
    return type(first)(images, labels, list(first.classes), name, paths)
