"""``predict``: use a trained model (run directory, bundle, ONNX export or pretrained backbone) on images or texts.

``predict`` reads its inputs through :mod:`transferkit.api.predict_inputs`, predicts them a batch at a time
(:mod:`transferkit.api.predict_stream`, :mod:`transferkit.api.predict_batches`, where ``decode_to_size`` and
``predict_batch`` are looked up) and writes through :mod:`transferkit.api.predict_output` (rows:
:mod:`transferkit.report.predictions`); ``evaluate`` is in :mod:`transferkit.api.evaluate_job`. The names that lived
here before they moved are re-exported, so ``from transferkit.api.use import …`` keeps working.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.evaluate_job import ALL_SPLITS, evaluate
from transferkit.api.predict_inputs import TEXT_TABLE_SUFFIXES, PredictInput, iter_predict_inputs, iter_text_inputs
from transferkit.api.predict_output import (
    PREDICT_FORMATS,
    STDOUT,
    atomic_text_file,
    earlier_predictions,
    model_files,
    predict_format,
    row_writer,
    writes_to_stdout,
)
from transferkit.api.predict_stream import PREVIEW_ROWS, PredictJob
from transferkit.api.runs import set_threads
from transferkit.errors import ConfigError
from transferkit.inference import Predictor, TorchPredictor, load_predictor, task_heads
from transferkit.options import PredictConfig
from transferkit.report.predictions import FORMULA_PREFIXES, csv_safe, predict_fields
from transferkit.rundir import check_output_file
from transferkit.source_loading import load_source
from transferkit.terminal import Console

__all__ = ["ALL_SPLITS", "FORMULA_PREFIXES", "PREDICT_FORMATS", "PREVIEW_ROWS", "STDOUT", "TEXT_TABLE_SUFFIXES",
           "PredictInput", "csv_safe", "evaluate", "iter_predict_inputs", "iter_text_inputs", "predict",
           "predict_fields", "writes_to_stdout"]


def predict(*args: Any, config: PredictConfig | None = None, console: Console | None = None,
            **options: Any) -> list[dict[str, Any]] | dict[str, Any]:
    """Predict the class of images (or texts, for a text model), streaming: ``batch_size`` at a time.

    For a text model, ``inputs`` are ``.txt`` files (one text per line), ``.csv``/``.tsv`` files (column
    ``text_column``; ``title+description`` joins two) or ``.jsonl`` files (:func:`iter_text_inputs`); ``path`` is then
    ``file:line`` and an empty text is an error row.

    ``inputs`` are image files, folders (searched recursively in sorted order; hidden files and folders are
    skipped, every other file is tried as an image) and ``.csv`` list files, whose ``path`` column (or first
    column when no header is named ``path``) lists image paths, relative ones resolved against the CSV's folder.

    Every image gives one row: ``path``, ``predicted_class``, ``probability``, ``top{i}_class``,
    ``top{i}_index``, ``top{i}_probability`` for ``i`` = 1..``top_k`` and ``error``. An image that cannot be
    predicted — not decodable, truncated, larger than ``max_pixels`` pixels, a listed file that is missing, colour
    for a greyscale model without ``convert_channels`` — gets its reason in ``error`` and empty (``None``)
    prediction fields; the others are still predicted. ``strict=True`` instead stops at the first such image
    with a :class:`~transferkit.inference.BadImage` naming it.

    ``backend="torch"`` runs a run directory, bundle or pretrained backbone name with PyTorch; ``"onnx"`` a
    ``model.onnx`` from ``transferkit export`` (or a folder holding one) with ONNX Runtime.

    Without ``output`` the rows are returned as a list (memory grows with the number of images). With
    ``output`` each batch's rows are written as they are predicted (memory is bounded by one batch, whatever
    the number of images) to a temporary file renamed into place at the end, so an error or Ctrl-C leaves no
    half-written file and any previous ``output`` untouched; the format is ``format`` or the extension
    (``.csv``/``.jsonl``), and a summary is returned: ``{"output", "format", "images", "predicted", "errors",
    "preview": first rows, "error_rows": first rows with an error}``. ``output`` is never one of the inputs, inside
    an input folder or the model's files; an existing file there is replaced only when it is an earlier predictions
    file (or empty), or with ``overwrite``. ``output="-"`` (or ``"/dev/stdout"``) streams the rows to standard
    output instead (CSV unless ``format="jsonl"``; ``\\n`` line ends), with nothing else written there: the
    progress bar and messages go to ``console`` (standard error by default). In CSV output a text cell beginning
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (so a spreadsheet shows it
    rather than running it as a formula); JSON lines hold the values as they are.

    ``predict(model, inputs, **options)`` or ``predict(config=PredictConfig(...))`` (one path: a list of one).
    """
    c = PredictConfig.given(config, args, options)
    paths, fmt, to_stdout = _checked_request(c)
    set_threads()
    output = c.output
    predictor = _load_predictor(c.model, c.backend)
    k, fields = _output_columns(predictor, c.top_k)
    job = PredictJob(predictor, paths, c.text_column, k, fields, c.strict, c.convert_channels, c.max_pixels,
                     c.batch_size, terminal.resolve(console, stderr=True), c.progress)
    total = sum(1 for _ in job.items()) if c.progress else None
    rows: list[dict[str, Any]] = []
    if output is None:
        job.run(rows.extend, total)
    elif to_stdout:  # rows as they come, nothing else: progress and messages go to the console (stderr)
        job.run(row_writer(sys.stdout, fmt or "csv", fields, lineterminator="\n"), total)
        output = STDOUT
    else:
        output = Path(output)
        with atomic_text_file(output) as fh:
            job.run(row_writer(fh, fmt or "csv", fields), total)
    job.warn_errors()
    if output is None:
        return rows
    return {"output": str(output), "format": fmt, **job.counts, "preview": job.preview, "error_rows": job.error_rows}


def _checked_request(c: PredictConfig) -> tuple[list[Path], str | None, bool]:
    """The options of :func:`predict` checked before the model or any input is read, so a mistake costs nothing
    and never leaves a file behind: ``(input paths, output format, whether output is standard output)``. An output
    file is never one of the inputs or the model's files, nor a user file it would replace (``overwrite`` aside)."""
    model, output, inputs = c.model, c.output, [c.inputs] if isinstance(c.inputs, (str, Path)) else c.inputs
    if model is None:
        raise ConfigError("model", "a run or bundle directory, a pretrained backbone name or a model.onnx", None)
    if c.top_k < 1:
        raise ConfigError("top_k", "at least 1", c.top_k)
    if c.batch_size < 1:
        raise ConfigError("batch_size", "at least 1", c.batch_size)
    to_stdout = writes_to_stdout(output)
    if output is not None and not to_stdout:  # before anything is read: never over an input, the model, a user file
        check_output_file(output, [*inputs, *model_files(model, c.backend)], c.overwrite, earlier_predictions)
    fmt = predict_format(None if to_stdout else output, c.format) or ("csv" if to_stdout else None)
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise ValueError("predict: no inputs (image files, folders or CSV lists)")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    return paths, fmt, to_stdout


def _output_columns(predictor: Predictor, top_k: int) -> tuple[int, list[str]]:
    """``(k, columns)``: ``top_k`` capped to the classes the model has (per task for a multi-task model, whose
    columns are then per task), so no row asks for a class that does not exist."""
    heads = task_heads(getattr(predictor, "meta", None))
    k = max(1, min(top_k, *(len(c) for _, c, _ in heads))) if heads else max(1, min(top_k, len(predictor.classes)))
    return k, predict_fields(k, [name for name, _, _ in heads] if heads else None)


def _load_predictor(model: str | Path, backend: str) -> Predictor:
    """``torch``: anything :func:`load_source` reads (run/bundle directory, fused bundle, pretrained backbone
    name); ``onnx``: :func:`transferkit.inference.load_predictor`."""
    if backend != "torch":
        return load_predictor(model, backend)
    net, meta = load_source(model)
    net.eval()
    classes = list(meta.get("classes") or [str(i) for i in range(net.num_classes)])
    return TorchPredictor(net, classes, net.input_spec, meta)
