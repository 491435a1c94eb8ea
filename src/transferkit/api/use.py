"""``predict``: use a trained model (run directory, bundle, ONNX export or pretrained backbone) on images or texts.

``predict`` reads its inputs through :mod:`transferkit.api.predict_inputs` and writes through
:mod:`transferkit.api.predict_output`; ``evaluate`` is in :mod:`transferkit.api.evaluate_job`. The names that lived
here before they moved are re-exported, so ``from transferkit.api.use import …`` keeps working. Decoding and
predicting a batch stay here (``decode_to_size`` and ``predict_batch`` are looked up in this module).
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from transferkit import terminal
from transferkit.api.evaluate_job import ALL_SPLITS, evaluate
from transferkit.api.predict_inputs import (
    TEXT_TABLE_SUFFIXES,
    PredictInput,
    iter_predict_inputs,
    iter_text_inputs,
)
from transferkit.api.predict_output import (
    FORMULA_PREFIXES,
    PREDICT_FORMATS,
    STDOUT,
    atomic_text_file,
    csv_safe,
    earlier_predictions,
    error_row,
    model_files,
    predict_fields,
    predict_format,
    prediction_row,
    row_writer,
    writes_to_stdout,
)
from transferkit.api.runs import load_source, set_threads
from transferkit.errors import ConfigError
from transferkit.inference import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_REQUEST_PIXELS,
    BadImage,
    InputSpec,
    Predictor,
    TorchPredictor,
    decode_to_size,
    load_predictor,
    predict_batch,
    predict_texts,
    spec_channels_ok,
    task_heads,
)
from transferkit.rundir import check_output_file
from transferkit.terminal import Console

__all__ = ["ALL_SPLITS", "FORMULA_PREFIXES", "PREDICT_FORMATS", "PREVIEW_ROWS", "STDOUT", "TEXT_TABLE_SUFFIXES",
           "PredictInput", "csv_safe", "evaluate", "iter_predict_inputs", "iter_text_inputs", "predict",
           "predict_fields", "writes_to_stdout"]

log = logging.getLogger(__name__)


PREVIEW_ROWS = 20  # rows kept in the summary returned when predictions are streamed to a file


def predict(
    model: str | Path, inputs: Sequence[str | Path], output: str | Path | None = None, top_k: int = 1,
    batch_size: int = 64, strict: bool = False, convert_channels: bool = False, format: str | None = None,
    backend: str = "torch", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True,
    console: Console | None = None, text_column: str = "text", overwrite: bool = False,
) -> list[dict[str, Any]] | dict[str, Any]:
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
    """
    paths, fmt, to_stdout = _checked_request(model, inputs, output, format, backend, top_k, batch_size, overwrite)
    set_threads()
    predictor = _load_predictor(model, backend)
    k, fields = _output_columns(predictor, top_k)
    job = _PredictJob(predictor, paths, text_column, k, fields, strict, convert_channels, max_pixels, batch_size,
                      terminal.resolve(console, stderr=True), progress)
    total = sum(1 for _ in job.items()) if progress else None
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


def _checked_request(model: str | Path, inputs: Sequence[str | Path], output: str | Path | None, fmt: str | None,
                     backend: str, top_k: int, batch_size: int, overwrite: bool) -> tuple[list[Path], str | None, bool]:
    """The arguments of :func:`predict` checked before the model or any input is read, so a mistake costs nothing
    and never leaves a file behind: ``(input paths, output format, whether output is standard output)``. An output
    file is never one of the inputs or the model's files, nor a user file it would replace (``overwrite`` aside)."""
    if top_k < 1:
        raise ConfigError("top_k", "at least 1", top_k)
    if batch_size < 1:
        raise ConfigError("batch_size", "at least 1", batch_size)
    to_stdout = writes_to_stdout(output)
    if output is not None and not to_stdout:  # before anything is read: never over an input, the model, a user file
        check_output_file(output, [*inputs, *model_files(model, backend)], overwrite, earlier_predictions)
    fmt = predict_format(None if to_stdout else output, fmt) or ("csv" if to_stdout else None)
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


@dataclass
class _PredictJob:
    """One :func:`predict` run: its model, inputs and settings, and the tallies its summary reports (counts and at
    most ``PREVIEW_ROWS`` first rows and error rows, so memory stays bounded whatever the number of inputs). Kept
    together so the progress bar's count and the streaming loop walk the same inputs the same way."""

    predictor: Predictor
    paths: list[Path]
    text_column: str
    k: int
    fields: list[str]
    strict: bool
    convert_channels: bool
    max_pixels: int
    batch_size: int
    console: Console
    progress: bool
    counts: dict[str, int] = field(default_factory=lambda: {"images": 0, "predicted": 0, "errors": 0})
    preview: list[dict[str, Any]] = field(default_factory=list)
    error_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_text(self) -> bool:
        """Whether the model reads texts (its inputs are then text files) rather than images."""
        return self.predictor.input_spec.modality == "text"

    def items(self) -> Iterator[PredictInput]:
        """The inputs, lazily, from the start (called once to count them for the progress bar, once to predict)."""
        return iter_text_inputs(self.paths, self.text_column) if self.is_text else iter_predict_inputs(self.paths)

    def predict_chunk(self, chunk: list[PredictInput]) -> list[dict[str, Any]]:
        """The rows of one batch of inputs, in order (texts or images, as the model takes)."""
        if self.is_text:
            return _predict_text_chunk(self.predictor, chunk, self.k, self.strict, self.fields)
        return _predict_chunk(self.predictor, chunk, self.k, self.strict, self.convert_channels, self.max_pixels,
                              self.fields)

    def run(self, sink: Callable[[list[dict[str, Any]]], None], total: int | None) -> None:
        """Predict every input, ``batch_size`` at a time, handing each batch's rows to ``sink`` as soon as they are
        predicted (``total`` inputs on the progress bar; ``None``: unknown); no input at all is a ValueError."""
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TimeElapsedColumn(), TimeRemainingColumn())
        with terminal.progress_bar(self.console, self.progress, *columns) as bar:
            task = bar.add_task("predict", total=total)
            for chunk in _chunks(self.items(), self.batch_size):
                out = self.predict_chunk(chunk)
                sink(out)
                self.tally(out)
                bar.advance(task, len(out))
        if not self.counts["images"]:
            raise ValueError(f"no {'texts' if self.is_text else 'image files'} in {', '.join(map(str, self.paths))}")

    def tally(self, rows: list[dict[str, Any]]) -> None:
        """Count ``rows`` (predicted or error) and keep the first few of each for the summary."""
        for row in rows:
            bad = row["error"] is not None
            self.counts["errors" if bad else "predicted"] += 1
            if len(self.preview) < PREVIEW_ROWS:
                self.preview.append(row)
            if bad and len(self.error_rows) < PREVIEW_ROWS:
                self.error_rows.append(row)
        self.counts["images"] += len(rows)

    def warn_errors(self) -> None:
        """Log how many inputs could not be predicted, with the first few reasons (the rows hold them all)."""
        if self.counts["errors"]:
            log.warning("%d of %d input(s) could not be predicted, e.g.:\n  %s", self.counts["errors"],
                        self.counts["images"], "\n  ".join(r["error"] for r in self.error_rows[:5]))


def _chunks(items: Iterator[PredictInput], n: int) -> Iterator[list[PredictInput]]:
    """``items`` in lists of ``n`` (the last one shorter), lazily: only one batch is ever held."""
    while chunk := list(itertools.islice(items, n)):
        yield chunk


def _load_predictor(model: str | Path, backend: str) -> Predictor:
    """``torch``: anything :func:`load_source` reads (run/bundle directory, fused bundle, pretrained backbone
    name); ``onnx``: :func:`transferkit.inference.load_predictor`."""
    if backend != "torch":
        return load_predictor(model, backend)
    net, meta = load_source(model)
    net.eval()
    classes = list(meta.get("classes") or [str(i) for i in range(net.num_classes)])
    return TorchPredictor(net, classes, net.input_spec, meta)


def _read_image(item: PredictInput, max_pixels: int, size: Sequence[int] | InputSpec | None = None) -> np.ndarray:
    """The image of ``item``, decoded for a model of input spec (or size) ``size`` (a large image is reduced while
    decoding, so a batch of them stays small: :func:`transferkit.inference.decode_to_size`)."""
    if item.error is not None or item.file is None:
        raise BadImage(item.error or f"{item.path}: no such file")
    try:
        data = item.file.read_bytes()
    except OSError as exc:
        raise BadImage(f"{item.path}: cannot be read ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    return decode_to_size(data, item.path, max_pixels, size)


def _predict_chunk(predictor: Predictor, items: list[PredictInput], k: int, strict: bool, convert_channels: bool,
                   max_pixels: int, fields: list[str]) -> list[dict[str, Any]]:
    """Decode and predict one batch; rows in the order of ``items`` (errors in place, unless ``strict``). The
    decoded images held at once stay under ``DEFAULT_REQUEST_PIXELS`` (a sub-batch is predicted when the next image
    would pass it), whatever their sizes."""
    rows: list[dict[str, Any] | None] = [None] * len(items)
    images: list[np.ndarray] = []
    slots: list[int] = []
    held = 0  # decoded pixels in images
    for i, item in enumerate(items):
        try:
            im = _read_image(item, max_pixels, predictor.input_spec)
            spec_channels_ok([im], predictor.input_spec, convert_channels, [item.path])
        except BadImage as exc:
            if strict:
                raise
            rows[i] = error_row(item.path, str(exc), fields)
            continue
        if images and held + im.shape[0] * im.shape[1] > DEFAULT_REQUEST_PIXELS:
            _predict_images(predictor, items, images, slots, rows, k, strict, fields)
            images, slots, held = [], [], 0
        images.append(im)
        slots.append(i)
        held += im.shape[0] * im.shape[1]
    _predict_images(predictor, items, images, slots, rows, k, strict, fields)
    return [r for r in rows if r is not None]


def _predict_images(predictor: Predictor, items: list[PredictInput], images: list[np.ndarray], slots: list[int],
                    rows: list[dict[str, Any] | None], k: int, strict: bool, fields: list[str]) -> None:
    """Predict decoded ``images`` (of ``items[slots]``) into ``rows``; one odd image does not cost the others."""
    if not images:
        return
    try:
        preds: list[dict[str, Any] | str] = list(predict_batch(predictor, images, k))
    except (ValueError, RuntimeError) as exc:
        if strict or len(images) < 2:
            if strict:
                raise
            preds = [f"cannot be predicted ({exc.__class__.__name__}: {exc})"] * len(images)
        else:  # one odd image should not cost the whole batch: try them one by one
            preds = []
            for im in images:
                try:
                    preds.extend(predict_batch(predictor, [im], k))
                except (ValueError, RuntimeError) as one:
                    preds.append(f"cannot be predicted ({one.__class__.__name__}: {one})")
    for i, pred in zip(slots, preds, strict=True):
        path = items[i].path
        rows[i] = error_row(path, f"{path}: {pred}", fields) if isinstance(pred, str) else \
            prediction_row(path, pred)


def _predict_text_chunk(predictor: Predictor, items: list[PredictInput], k: int, strict: bool,
                        fields: list[str]) -> list[dict[str, Any]]:
    """Predict one batch of texts; rows in the order of ``items`` (empty texts are error rows, unless ``strict``)."""
    rows: list[dict[str, Any] | None] = [None] * len(items)
    for i, item in enumerate(items):
        if item.error is not None:
            if strict:
                raise ValueError(item.error)
            rows[i] = error_row(item.path, item.error, fields)
    slots = [i for i, r in enumerate(rows) if r is None]
    for i, pred in zip(slots, predict_texts(predictor, [items[i].text or "" for i in slots], k), strict=True):
        rows[i] = prediction_row(items[i].path, pred)
    return [r for r in rows if r is not None]
