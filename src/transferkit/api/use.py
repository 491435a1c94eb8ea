"""``evaluate`` and ``predict``: use a trained model (run directory, bundle, or pretrained backbone)."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from transferkit import atomic
from transferkit.api.runs import (
    check_channels,
    check_classes,
    load_source,
    load_task,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.features import predict_logits
from transferkit.data.base import ImageSet
from transferkit.data.class_map import apply_class_map
from transferkit.data.images import list_image_files, load_image_file
from transferkit.data.prepare import TensorBatches, prepare_images
from transferkit.report.plots import plot_confusion
from transferkit.report.tables import metrics_table

log = logging.getLogger(__name__)


def evaluate(
    model: str | Path, data: str, classes: str | list[int] | None = None, split: str = "test",
    out: str | Path | None = None, strict: bool = False, convert_channels: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Metrics of a trained model (run dir or bundle) on ``split`` of ``data`` restricted to ``classes``.

    The data's classes must match the model's (number, and names where both have them); a model trained with a
    class map (``transfer(class_map=...)``) gets the data mapped the same way. With ``out``,
    ``config.yaml``, ``metrics.json`` and ``confusion_matrix.png`` are written there.
    """
    config = {"command": "evaluate", **{k: str(v) if isinstance(v, Path) else v for k, v in locals().items()
                                         if k != "console"}}
    set_threads()
    net, meta = load_source(model)
    ds = load_task(data, split, classes, strict)
    cmap = (meta.get("lineage") or {}).get("class_map")
    if cmap and ds.classes != list(meta.get("classes") or []):  # trained with --class-map: map the data the same way
        ds = apply_class_map(ds, cmap, f"the class map {model} was trained with")
    check_classes(ds, meta, f"evaluate {model}")
    check_channels(ds, net, convert_channels, f"--data {data}")
    spec = net.input_spec
    metrics = score(net, TensorBatches(prepare_images(ds, spec), torch.from_numpy(ds.labels), spec.mean, spec.std),
                    ds.classes)
    metrics = {"model": str(model), "data": data, "split": split, **metrics}
    if out is not None:
        out = Path(out)
        write_yaml(out / "config.yaml", config)
        write_json(out / "metrics.json", metrics)
        plot_confusion(metrics["confusion_matrix"], ds.classes, out / "confusion_matrix.png",
                       f"{split} split, accuracy {metrics['accuracy']:.3f}")
    (console or Console()).print(metrics_table(metrics, f"evaluate {model} on {data} ({split})"))
    return metrics


def predict(
    model: str | Path, inputs: list[str | Path], output: str | Path | None = None, top_k: int = 1,
    batch_size: int = 64, strict: bool = False, convert_channels: bool = False,
) -> list[dict[str, Any]]:
    """Predict the class of image files (folders are searched recursively).

    Returns one row per readable image: ``path``, ``predicted_class``, ``probability`` and, for
    ``top_k > 1``, ``top{i}_class``/``top{i}_probability``. Unreadable files are skipped with a warning
    naming each (``strict=True``: an error). With ``output``, the rows are written as CSV atomically.
    """
    set_threads()
    net, meta = load_source(model)
    classes = meta.get("classes") or [str(i) for i in range(net.num_classes)]
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    top_k = min(top_k, len(classes))
    files = list_image_files([Path(p) for p in inputs])
    images, paths, bad = [], [], []
    for f in files:
        try:
            images.append(load_image_file(f))
            paths.append(str(f))
        except ValueError as exc:
            if strict:
                raise
            bad.append(str(exc))
    if bad:
        log.warning("skipped %d unreadable file(s):\n  %s", len(bad), "\n  ".join(bad))
    if not images:
        raise ValueError(f"no readable images in {', '.join(map(str, inputs))}")
    spec = net.input_spec
    colour = [p for p, im in zip(paths, images, strict=True) if im.ndim == 3 and im.shape[-1] > spec.channels]
    if colour and not convert_channels:
        raise ValueError(
            f"predict: {colour[0]} (and {len(colour) - 1} more) has colour channels but the model expects "
            f"{spec.channels}; pass --convert-channels to convert colour images to greyscale"
        )
    ds = ImageSet(images, np.zeros(len(images), np.int64), ["?"], "predict", paths)
    x = prepare_images(ds, spec)
    probs = torch.softmax(predict_logits(net, TensorBatches(x, None, spec.mean, spec.std), batch_size), 1)
    top_p, top_i = probs.topk(top_k, dim=1)
    rows = []
    for path, ps, idx in zip(paths, top_p.tolist(), top_i.tolist(), strict=True):
        row: dict[str, Any] = {"path": path, "predicted_class": classes[idx[0]], "probability": round(ps[0], 6)}
        if top_k > 1:
            for r in range(top_k):
                row[f"top{r + 1}_index"] = idx[r]
                row[f"top{r + 1}_class"] = classes[idx[r]]
                row[f"top{r + 1}_probability"] = round(ps[r], 6)
        rows.append(row)
    if output is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(Path(output), buf.getvalue())
    return rows
