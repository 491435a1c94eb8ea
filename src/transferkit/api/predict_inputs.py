"""What :func:`~transferkit.api.use.predict` reads: the images (or texts) named by its inputs, lazily.

Image inputs are files, folders (walked in sorted order) and CSV lists of paths; text inputs are ``.txt``, ``.csv``/
``.tsv`` and ``.jsonl`` files. Each gives :class:`PredictInput` items, an unusable one carrying its ``error``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from transferkit.data.text import csv_field_limit, csv_rows


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
                                         "column with text_column=NAME")
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
    """The input for one text found at ``where``, stripped; an empty one is an error row rather than a prediction."""
    text = text.strip()
    return PredictInput(where, text=text) if text else PredictInput(where, error=f"{where}: empty text")


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
