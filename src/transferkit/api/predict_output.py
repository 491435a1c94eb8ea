"""Where :func:`~transferkit.api.use.predict` writes and how: the output format, the files it must never write over,
and the CSV / JSON-lines row writers (streamed, atomically renamed into place, or to standard output). The rows
and their columns are :mod:`transferkit.report.predictions`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from transferkit.errors import ConfigError
from transferkit.report.predictions import csv_safe

PREDICT_FORMATS = ("csv", "jsonl")
STDOUT = "-"  # predict's output name for standard output
_STDOUT_NAMES = (STDOUT, "/dev/stdout")


def writes_to_stdout(output: str | Path | None) -> bool:
    """Whether ``output`` names standard output: ``-`` (or ``/dev/stdout``, which is a terminal, a pipe or whatever
    file the shell redirected it to, never a file to replace atomically)."""
    return output is not None and str(output) in _STDOUT_NAMES


def predict_format(output: str | Path | None, fmt: str | None) -> str | None:
    """The output format: ``fmt`` when given (checked), else the one ``output``'s extension names, ``None`` without
    an output; an extension that names none is refused before anything is read."""
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
    raise ValueError(f"output={output}: cannot tell the format from '{suffix or 'no extension'}'; name it "
                     ".csv or .jsonl, or pass format=csv or format=jsonl (output=- writes to standard output)")


def model_files(model: str | Path, backend: str) -> list[Path]:
    """What ``predict`` reads of ``model`` and must never write over: the bundle directory (``torch``; the whole
    folder when it holds none) or the ``.onnx`` file and the tokenizer a text model's export has beside it."""
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


def earlier_predictions(path: Path) -> bool:
    """Whether the file ``path`` is empty or an earlier output of ``predict`` (CSV header ``path,…,error``, or a
    JSON line with ``path`` and ``error``), which ``--output`` may replace without ``--overwrite``."""
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


def row_writer(fh: TextIO, fmt: str, fields: list[str],
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
def atomic_text_file(path: Path) -> Iterator[TextIO]:
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
