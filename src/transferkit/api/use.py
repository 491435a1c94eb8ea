"""``evaluate`` and ``predict``: use a trained model (run directory, bundle, or pretrained backbone)."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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
from transferkit.data.class_map import apply_class_map
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import align_classes
from transferkit.data.text import csv_field_limit, csv_rows
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
from transferkit.options import EvaluateConfig
from transferkit.report.plots import plot_confusion
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, check_output_file, open_output_dir

log = logging.getLogger(__name__)


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
    console = console or Console()
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
    check_channels(ds, net, c.convert_channels, f"--data {data}")
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


PREDICT_FORMATS = ("csv", "jsonl")
PREVIEW_ROWS = 20  # rows kept in the summary returned when predictions are streamed to a file


@dataclass(frozen=True)
class PredictInput:
    """One image (or text) to predict: ``path`` as reported in the output (``file:line`` for texts); ``error`` set
    when it is known to be unusable (missing file, empty text)."""

    path: str
    file: Path | None = None
    error: str | None = None
    text: str | None = None


TEXT_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def iter_text_inputs(inputs: Sequence[Path], text_column: str = "text") -> Iterator[PredictInput]:
    """Texts to predict, lazily: ``.txt`` files give one text per line; ``.csv``/``.tsv`` files the ``text_column``
    (several joined with ``+``, e.g. ``title+description``); ``.jsonl`` files that field of each object. An empty
    text becomes an error row; a file that is not UTF-8 or lacks the column is an error naming it."""
    columns = [c.strip() for c in text_column.split("+") if c.strip()]
    for p in inputs:
        if p.is_dir():
            raise ValueError(f"{p}: a folder; a text model predicts .txt, .csv, .tsv or .jsonl files")
        suffix = p.suffix.lower()
        try:
            with p.open(newline="" if suffix in TEXT_TABLE_SUFFIXES else None, encoding="utf-8-sig") as fh:
                if suffix in TEXT_TABLE_SUFFIXES:
                    reader = csv.DictReader(fh, delimiter=TEXT_TABLE_SUFFIXES[suffix])
                    with csv_field_limit():
                        fieldnames = reader.fieldnames  # reads the header line
                    missing = [c for c in columns if c not in (fieldnames or [])]
                    if missing:
                        raise ValueError(f"{p}: no column {missing} (columns: {fieldnames}); choose the text "
                                         "column with --text-column")
                    for row in csv_rows(reader, p):  # fields up to 16 Mi characters; a bad record names its line
                        yield _text_input(f"{p}:{reader.line_num}", " ".join((row[c] or "").strip() for c in columns))
                elif suffix in (".jsonl", ".ndjson"):
                    for n, line in enumerate(fh, 1):
                        if not line.strip():
                            continue
                        try:
                            obj = json.loads(line)
                            text = " ".join(str(obj.get(c) or "").strip() for c in columns)
                        except (json.JSONDecodeError, AttributeError):
                            yield PredictInput(f"{p}:{n}", error=f"{p}:{n}: not a JSON object")
                            continue
                        yield _text_input(f"{p}:{n}", text)
                else:  # plain text, one per line
                    for n, line in enumerate(fh, 1):
                        yield _text_input(f"{p}:{n}", line.rstrip("\r\n"))
        except UnicodeDecodeError as exc:
            # an error row for the rest of this file; the other inputs are still predicted
            yield PredictInput(str(p), error=f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); the rest of "
                               f"this file was skipped. Convert it, e.g. iconv -f latin1 -t utf-8 {p.name}")


def _text_input(where: str, text: str) -> PredictInput:
    text = text.strip()
    return PredictInput(where, text=text) if text else PredictInput(where, error=f"{where}: empty text")


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
    if top_k < 1:
        raise ConfigError("top_k", "at least 1", top_k)
    if batch_size < 1:
        raise ConfigError("batch_size", "at least 1", batch_size)
    to_stdout = writes_to_stdout(output)
    if output is not None and not to_stdout:  # before anything is read: never over an input, the model, a user file
        check_output_file(output, [*inputs, *_model_files(model, backend)], overwrite, _earlier_predictions)
    fmt = _predict_format(None if to_stdout else output, format) or ("csv" if to_stdout else None)
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise ValueError("predict: no inputs (image files, folders or CSV lists)")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    set_threads()
    predictor = _load_predictor(model, backend)
    heads = task_heads(getattr(predictor, "meta", None))
    k = max(1, min(top_k, *(len(c) for _, c, _ in heads))) if heads else max(1, min(top_k, len(predictor.classes)))
    fields = predict_fields(k, [name for name, _, _ in heads] if heads else None)
    console = console or Console(stderr=True)
    is_text = predictor.input_spec.modality == "text"

    def items() -> Iterator[PredictInput]:
        return iter_text_inputs(paths, text_column) if is_text else iter_predict_inputs(paths)

    total = sum(1 for _ in items()) if progress else None
    counts = {"images": 0, "predicted": 0, "errors": 0}
    preview: list[dict[str, Any]] = []
    error_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []

    def run(sink: Callable[[list[dict[str, Any]]], None]) -> None:
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task("predict", total=total)
            for chunk in _chunks(items(), batch_size):
                out = _predict_text_chunk(predictor, chunk, k, strict, fields) if is_text else \
                    _predict_chunk(predictor, chunk, k, strict, convert_channels, max_pixels, fields)
                sink(out)
                for row in out:
                    bad = row["error"] is not None
                    counts["errors" if bad else "predicted"] += 1
                    if len(preview) < PREVIEW_ROWS:
                        preview.append(row)
                    if bad and len(error_rows) < PREVIEW_ROWS:
                        error_rows.append(row)
                counts["images"] += len(out)
                bar.advance(task, len(out))
        if not counts["images"]:
            raise ValueError(f"no {'texts' if is_text else 'image files'} in {', '.join(map(str, paths))}")

    if output is None:
        run(rows.extend)
    elif to_stdout:  # rows as they come, nothing else: progress and messages go to the console (stderr)
        run(_row_writer(sys.stdout, fmt or "csv", fields, lineterminator="\n"))
        output = STDOUT
    else:
        output = Path(output)
        with _atomic_text_file(output) as fh:
            run(_row_writer(fh, fmt or "csv", fields))
    if counts["errors"]:
        log.warning("%d of %d input(s) could not be predicted, e.g.:\n  %s", counts["errors"], counts["images"],
                    "\n  ".join(r["error"] for r in error_rows[:5]))
    if output is None:
        return rows
    return {"output": str(output), "format": fmt, **counts, "preview": preview, "error_rows": error_rows}


def predict_fields(top_k: int, tasks: Sequence[str] | None = None) -> list[str]:
    """The output columns of :func:`predict` for ``top_k`` classes; a multi-task model has ``<task>_class``,
    ``<task>_probability`` and ``<task>_top{i}_…`` for each of its ``tasks`` instead of one set."""
    top = [f"top{i}_{what}" for i in range(1, top_k + 1) for what in ("class", "index", "probability")]
    if tasks:
        return ["path", *(f"{t}_{f}" for t in tasks for f in ("class", "probability", *top)), "error"]
    return ["path", "predicted_class", "probability", *top, "error"]


def iter_predict_inputs(inputs: Sequence[Path]) -> Iterator[PredictInput]:
    """The images named by ``inputs`` (files, folders walked recursively in sorted order, CSV lists), lazily."""
    for p in inputs:
        if p.is_dir():
            yield from (PredictInput(str(f), f) for f in _walk_sorted(p))
        elif p.suffix.lower() == ".csv":
            yield from _csv_list(p)
        else:
            yield PredictInput(str(p), p)


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Files under ``folder``, depth first in sorted order (the order of ``sorted(folder.rglob('*'))``), lazily;
    hidden files and folders are skipped and symbolic links to folders not followed."""
    with os.scandir(folder) as it:
        entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it if not e.name.startswith("."))
    for name, is_dir in entries:
        path = folder / name
        if is_dir:
            yield from _walk_sorted(path)
        elif path.is_file():
            yield path


def _csv_list(path: Path) -> Iterator[PredictInput]:
    """Image paths listed in the ``path`` column (else the first column) of a CSV file, relative to its folder
    (:func:`transferkit.data.images.read_image_list`: a missing or folder entry is an error row naming its line)."""
    from transferkit.data.images import read_image_list

    for shown, f, error in read_image_list(path):
        yield PredictInput(shown, f, error)


def _chunks(items: Iterator[PredictInput], n: int) -> Iterator[list[PredictInput]]:
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
            rows[i] = _error_row(item.path, str(exc), fields)
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
        rows[i] = _error_row(path, f"{path}: {pred}", fields) if isinstance(pred, str) else \
            _prediction_row(path, pred)


def _predict_text_chunk(predictor: Predictor, items: list[PredictInput], k: int, strict: bool,
                        fields: list[str]) -> list[dict[str, Any]]:
    """Predict one batch of texts; rows in the order of ``items`` (empty texts are error rows, unless ``strict``)."""
    rows: list[dict[str, Any] | None] = [None] * len(items)
    for i, item in enumerate(items):
        if item.error is not None:
            if strict:
                raise ValueError(item.error)
            rows[i] = _error_row(item.path, item.error, fields)
    slots = [i for i, r in enumerate(rows) if r is None]
    for i, pred in zip(slots, predict_texts(predictor, [items[i].text or "" for i in slots], k), strict=True):
        rows[i] = _prediction_row(items[i].path, pred)
    return [r for r in rows if r is not None]


def _prediction_row(path: str, pred: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": path}
    for prefix, p in (((f"{t}_", p) for t, p in pred["tasks"].items()) if "tasks" in pred else [("", pred)]):
        row.update({f"{prefix}class" if prefix else "predicted_class": p["predicted_class"],
                    f"{prefix}probability": p["probability"]})
        for i, t in enumerate(p["top"], 1):
            row.update({f"{prefix}top{i}_class": t["class"], f"{prefix}top{i}_index": t["index"],
                        f"{prefix}top{i}_probability": t["probability"]})
    row["error"] = None
    return row


def _error_row(path: str, error: str, fields: list[str]) -> dict[str, Any]:
    return {**dict.fromkeys(fields), "path": path, "error": error}


STDOUT = "-"  # predict's output name for standard output
_STDOUT_NAMES = (STDOUT, "/dev/stdout")


def writes_to_stdout(output: str | Path | None) -> bool:
    """Whether ``output`` names standard output: ``-`` (or ``/dev/stdout``, which is a terminal, a pipe or whatever
    file the shell redirected it to, never a file to replace atomically)."""
    return output is not None and str(output) in _STDOUT_NAMES


def _predict_format(output: str | Path | None, fmt: str | None) -> str | None:
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in PREDICT_FORMATS:
            raise ConfigError("format", f"one of {', '.join(PREDICT_FORMATS)}", fmt)
        return fmt
    if output is None:
        return None
    suffix = Path(output).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(f"--output {output}: cannot tell the format from '{suffix or 'no extension'}'; name it "
                     ".csv or .jsonl, or pass --format csv|jsonl (--output - writes to standard output)")


def _model_files(model: str | Path, backend: str) -> list[Path]:
    """What :func:`predict` reads of ``model`` and must never write over: the bundle directory (``torch``; the
    whole folder when it holds none) or the ``.onnx`` file and the tokenizer a text model's export has beside it."""
    p = Path(model).expanduser()
    if not p.exists():
        return []  # a backbone name
    if backend != "torch":
        from transferkit.exporting import tokenizer_path

        onnx_file = p / "model.onnx" if p.is_dir() else p
        return [onnx_file, tokenizer_path(onnx_file)]
    from transferkit.bundle import BundleError, resolve_bundle

    try:
        return [resolve_bundle(p)]
    except BundleError:
        return [p]


def _earlier_predictions(path: Path) -> bool:
    """Whether the file ``path`` is empty or an earlier output of :func:`predict` (CSV header ``path,…,error``, or
    a JSON line with ``path`` and ``error``), which ``--output`` may replace without ``--overwrite``."""
    try:
        if path.stat().st_size == 0:
            return True
        with path.open(encoding="utf-8", newline="") as fh:
            first = fh.readline(1 << 20).rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return False
    if first.startswith("path,") and first.endswith(",error"):
        return True
    try:
        row = json.loads(first)
    except ValueError:
        return False
    return isinstance(row, dict) and "path" in row and "error" in row


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet may run such a cell as a formula (OWASP)


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell: a string a spreadsheet would read as a formula gets a leading ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value


def _row_writer(fh: TextIO, fmt: str, fields: list[str],
                lineterminator: str = "\r\n") -> Callable[[list[dict[str, Any]]], None]:
    """A function writing rows to ``fh`` as CSV (header first; ``None`` → empty) or JSON lines, flushing each."""
    if fmt == "csv":
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator=lineterminator)
        # the header (task names come from a spec file)
        csv.writer(fh, lineterminator=lineterminator).writerow([csv_safe(f) for f in fields])
        fh.flush()

        def write_csv(rows: list[dict[str, Any]]) -> None:
            writer.writerows({k: csv_safe(v) for k, v in r.items()} for r in rows)  # no formula injection
            fh.flush()

        return write_csv

    def write_jsonl(rows: list[dict[str, Any]]) -> None:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        fh.flush()

    return write_jsonl


@contextlib.contextmanager
def _atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A text file written beside ``path`` under a hidden temporary name and renamed onto ``path`` only when the
    block ends normally; on any error (or Ctrl-C) it is deleted and ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; an output file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
