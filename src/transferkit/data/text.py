"""Text classification datasets: CSV / TSV / JSONL tables (``text:PATH``) and AG News (``ag_news``).

Every loader returns a :class:`~transferkit.data.base.TextSet` whose ``rows`` say where each text came from
(``file:line``), so a bad label or a surprising prediction can be traced back to the line of the file.
Tables are read strictly as UTF-8: guessing an encoding silently corrupts texts, so a file in another
encoding is an error that says which line holds the first bad byte and how to convert the file.

Rows with an empty text or an empty label are skipped with one warning that counts them (``strict=True``
makes the first such row an error); anything that means the file is not what we think it is (a missing
column, a line of JSONL that is not an object, a label outside the known classes, a quote that is never closed)
is always an error. A CSV/TSV field may hold up to 16 Mi characters (Python's default limit is 128 KiB); texts
longer than 100 000 characters are cut there with a warning (tokenizers truncate far earlier anyway).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.base import TextSet
from transferkit.data.download import data_root, find_or_download
from transferkit.data.registry import register_dataset

log = logging.getLogger(__name__)

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson")
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
SPLITS = ("train", "val", "test")
TEXT_OPTIONS = ("text", "label")

_INTEGER = re.compile(r"[+-]?\d+")


MAX_CSV_FIELD = 16 * 1024 * 1024  # characters per CSV/TSV field (Python's default limit is 128 KiB)
MAX_TEXT_CHARS = 100_000  # longer texts are cut here: no model reads more than a few thousand tokens


def decode_utf8(path: Path, what: str = "texts") -> str:
    """The file's text as UTF-8 (a BOM is accepted); anything else is an error naming the file, the first bad line
    and the encoding expected (``what`` says what must be UTF-8, e.g. ``"texts"`` or ``"image lists"``)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at line {line}); {what} must be UTF-8. "
            f"If the file is Latin-1/Windows-1252, convert it with: iconv -f latin1 -t utf-8 '{path}' > "
            f"'{path.with_name(path.stem + '.utf8' + path.suffix)}'"
        ) from None


_decode = decode_utf8


@contextlib.contextmanager
def csv_field_limit(limit: int = MAX_CSV_FIELD) -> Iterator[None]:
    """Raise the ``csv`` module's (process-wide) field size limit to ``limit`` for the ``with`` block only."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, limit))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def csv_rows(reader: Any, where: str | Path) -> Iterator[Any]:
    """The rows of a ``csv.reader`` / ``csv.DictReader``, each read with fields of up to :data:`MAX_CSV_FIELD`
    characters allowed (the limit is raised per row, so no setting outlives a ``yield``); a malformed record is a
    ``ValueError`` naming ``where`` and the line."""
    while True:
        old = csv.field_size_limit(MAX_CSV_FIELD)  # (cheaper than csv_field_limit(): this runs once per row)
        if old > MAX_CSV_FIELD:
            csv.field_size_limit(old)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = f"a field is longer than {MAX_CSV_FIELD:,} characters" if "field larger" in str(exc) else str(exc)
            raise ValueError(f"{where}:{reader.line_num}: not a readable CSV/TSV record ({why})") from None
        finally:
            csv.field_size_limit(old)
        yield row


@contextlib.contextmanager
def _lines(source: str | Path, newline: str | None = "") -> Iterator[Any]:
    """The lines of ``source``: a text already decoded, or a file read as it goes (strict UTF-8, a BOM accepted; a
    bad byte is reported by :func:`decode_utf8`, naming its line) — a file of millions of rows is never held whole."""
    if isinstance(source, str):
        yield io.StringIO(source, newline=newline)
        return
    with open(source, encoding="utf-8-sig", newline=newline) as fh:
        try:
            yield fh
        except UnicodeDecodeError:
            decode_utf8(Path(source))
            raise


def _csv_records(text: str | Path, delimiter: str, path: str | Path = "<text>") -> Iterator[tuple[int, list[str]]]:
    """``(first line number, fields)`` per CSV/TSV record of ``text`` (decoded text, or a file read as it goes); empty
    lines are passed over.

    A quoted field may span lines, so the record's *first* line is the one reported. A quote opened and never
    closed swallows the rest of the file into one field: that is an error naming its line, raised once the last
    record has been read (consumers read every record before using any).
    """
    start = last_line = 0
    with _lines(text) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for fields in csv_rows(reader, path):
            start, last_line = last_line + 1, reader.line_num
            if fields:  # a blank line is no row; a row of empty cells is (and is counted as skipped)
                yield start, fields
    if last_line > start:  # the last record spans several lines: is its quote closed?
        with _lines(text) as fh:
            rest = "".join(itertools.islice(fh, start - 1, None))
        try:
            with csv_field_limit():
                next(csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise ValueError(f"{path}:{start}: a quoted field opened on this line is never closed (a stray "
                                 f"'\"'?); it runs to the end of the file (line {last_line})") from None


def _jsonl_records(text: str | Path, path: Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` per non-blank JSONL line of ``text`` (decoded text, or a file read as it goes); a line
    that is not a JSON object is an error."""
    with _lines(text, newline=None) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object per line, got {type(obj).__name__}")
            yield line_no, obj


def _cell(value: object) -> str:
    """A JSON value as the string a CSV cell would hold (``None`` → empty, ``3`` → ``"3"``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _missing_column(column: str, path: Path, columns: Sequence[str], what: str) -> ValueError:
    return ValueError(
        f"{path}: no {what} column '{column}'; the file's columns are: {', '.join(map(repr, columns)) or '(none)'}"
    )


def _pick_text_columns(text_columns: Sequence[str] | None, path: Path, columns: Sequence[str]) -> list[str]:
    if text_columns:
        return [str(c) for c in text_columns]
    for default in DEFAULT_TEXT_COLUMNS:
        if default in columns:
            return [default]
    raise ValueError(
        f"{path}: no 'text' or 'sentence' column, so it is unclear which column holds the text; the file's "
        f"columns are: {', '.join(map(repr, columns)) or '(none)'} (name them with text_columns=, or "
        f"'text:PATH?text=COL+COL')"
    )


def _table_rows(
    path: Path, text_columns: Sequence[str] | None, label_column: str | None
) -> Iterator[tuple[int, str, str]]:
    """``(line, joined text, label)`` per data row of a CSV/TSV/JSONL file (label ``""`` when unlabelled)."""
    suffix = path.suffix.lower()
    if suffix not in DELIMITERS and suffix not in JSONL_SUFFIXES:
        raise ValueError(f"{path}: unknown table format '{suffix}'; use one of {', '.join(TABLE_SUFFIXES)}")
    if suffix in JSONL_SUFFIXES:
        chosen: list[str] | None = None
        for line, obj in _jsonl_records(path, path):
            if chosen is None:  # the first object defines the columns, as a CSV header would
                chosen = _pick_text_columns(text_columns, path, list(obj))
                for col in [*chosen, *([label_column] if label_column else [])]:
                    if col not in obj:
                        what = "label" if col == label_column else "text"
                        raise _missing_column(col, path, list(obj), what)
            for col in [*chosen, *([label_column] if label_column else [])]:
                if col not in obj:
                    raise ValueError(f"{path}:{line}: no key '{col}' (this line has: {', '.join(map(repr, obj))})")
            label = _cell(obj[label_column]) if label_column else ""
            yield line, " ".join(_cell(obj[c]) for c in chosen), label
        return
    records = _csv_records(path, DELIMITERS[suffix], path)
    header_entry = next(records, None)
    if header_entry is None:
        raise ValueError(f"{path}: empty file (a header row naming the columns is required)")
    header = [h.strip() for h in header_entry[1]]
    chosen = _pick_text_columns(text_columns, path, header)
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(h, i)
    for col in chosen:
        if col not in index:
            raise _missing_column(col, path, header, "text")
    if label_column and label_column not in index:
        raise _missing_column(label_column, path, header, "label")
    text_idx = [index[c] for c in chosen]
    label_idx = index[label_column] if label_column else None
    width = max([*text_idx, label_idx if label_idx is not None else 0]) + 1
    for line, fields in records:
        fields = fields + [""] * (width - len(fields))  # a short row: the missing cells are empty
        yield line, " ".join(fields[i] for i in text_idx), (fields[label_idx] if label_idx is not None else "")


def _sorted_labels(values: Sequence[str]) -> list[str]:
    """Distinct label values sorted numerically when all are integers ("2" < "10"), else as strings."""
    if all(_INTEGER.fullmatch(v) for v in values):
        return sorted(values, key=lambda v: (int(v), v))
    return sorted(values)


def _report_skipped(source: str, skipped: list[tuple[str, str]], strict: bool) -> None:
    """Warn once about skipped ``(file:line, reason)`` rows, counted per reason; ``strict``: fail on the first."""
    if not skipped:
        return
    if strict:
        where, why = skipped[0]
        raise ValueError(f"{where}: {why} (strict mode: rows with an empty text or label are errors)")
    n_text = sum(why == "empty text" for _, why in skipped)
    log.warning(
        "%s: %d rows skipped (empty text: %d, empty label: %d); the first is %s (%s)",
        source, len(skipped), n_text, len(skipped) - n_text, skipped[0][0], skipped[0][1],
    )


def _cap_lengths(texts: list[str], source: str) -> None:
    """Cut texts longer than :data:`MAX_TEXT_CHARS` characters there (in place), with one warning counting them: the
    tokenizer truncates far earlier anyway, and a megabyte-long cell would only cost time and memory."""
    long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
    for i in long:
        texts[i] = texts[i][:MAX_TEXT_CHARS]
    if long:
        log.warning("%s: %d text(s) longer than %s characters were cut there (models read only the first few "
                    "hundred tokens)", source, len(long), f"{MAX_TEXT_CHARS:,}")


def read_text_table(
    path: str | Path,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = "label",
    classes: Sequence[str] | None = None,
    strict: bool = False,
    name: str | None = None,
) -> TextSet:
    """Read a labelled text table (``.csv``, ``.tsv``/``.tab`` or ``.jsonl``/``.ndjson``) into a :class:`TextSet`.

    Parameters
    ----------
    path:
        The file; its extension decides the format. CSV/TSV need a header row; JSONL holds one object per line.
    text_columns:
        Columns joined with ``" "`` into each text (e.g. ``["title", "description"]``); default ``text`` if
        the file has it, else ``sentence``.
    label_column:
        The column holding the class of each row. ``None`` reads unlabelled texts (e.g. to predict): every
        label is 0 of the single class ``"unlabelled"``.
    classes:
        The valid labels in label-id order (e.g. a training split's classes, so that ids agree across splits);
        a row with another label is an error. Default: the distinct labels, sorted (numerically when all are
        integers).
    strict:
        Make rows with an empty text or label an error instead of skipped-with-a-warning.
    name:
        The dataset name recorded in lineage (default: the path).

    Raises
    ------
    ValueError
        A non-UTF-8 file, a missing column, a bad JSONL line, an unknown label, or no usable rows; the
        message names the file (and line).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if label_column is None and classes is not None:
        raise ValueError("read_text_table: classes= needs a label_column to read the labels from")
    texts: list[str] = []
    first_seen: list[int] = []  # per row, the label's position among the distinct labels in file order
    rows: list[str] = []
    where: dict[str, str] = {}  # first row holding each label value, for error messages
    seen: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    for line, text, label in _table_rows(path, text_columns, label_column):
        text, label = text.strip(), label.strip()
        if not text or (label_column and not label):
            skipped.append((f"{path}:{line}", "empty text" if not text else "empty label"))
            continue
        texts.append(text)
        if label not in seen:
            seen[label], where[label] = len(seen), f"{path}:{line}"
        first_seen.append(seen[label])
        rows.append(f"{path.name}:{line}")
    _report_skipped(str(path), skipped, strict)
    if not texts:
        if not skipped:
            raise ValueError(f"{path}: no data rows (an empty file, or a header line only)")
        raise ValueError(f"{path}: no usable rows ({len(skipped)} rows with an empty text or label)")
    _cap_lengths(texts, str(path))
    if label_column is None:
        class_list = ["unlabelled"]
        labels = np.zeros(len(texts), np.int64)
    else:
        if classes is not None:
            class_list = [str(c) for c in classes]
            unknown = [v for v in where if v not in set(class_list)]
            if unknown:
                first = unknown[0]  # ``where`` is in file order: the earliest unknown label
                raise ValueError(
                    f"{where[first]}: label '{first}' is not one of the valid classes: {', '.join(class_list)}"
                )
        else:
            class_list = _sorted_labels(list(where))
        ids = {c: i for i, c in enumerate(class_list)}
        labels = np.array([ids[v] for v in seen], np.int64)[np.asarray(first_seen, np.int64)]
    ds = TextSet(texts, labels, class_list, name or str(path), rows)
    ds.skipped = [f"{where}: {why}" for where, why in skipped]  # type: ignore[attr-defined]
    return ds


# ----------------------------------------------------------------------------------------------------------
# text:PATH[?text=COL+COL&label=COL]


def parse_text_arg(arg: str) -> tuple[Path, list[str] | None, str]:
    """Split ``"PATH?text=title+description&label=topic"`` into ``(path, text columns, label column)``."""
    raw = arg
    options = ""
    if "?" in arg and not Path(arg).expanduser().exists():  # a path that itself holds "?" wins
        raw, _, options = arg.rpartition("?")
    text_columns: list[str] | None = None
    label_column = "label"
    seen: set[str] = set()
    for part in filter(None, options.split("&")):
        key, eq, value = part.partition("=")
        key = key.strip()
        if key not in TEXT_OPTIONS:
            raise ValueError(f"text:{arg}: unknown option '{key}'; valid options: {', '.join(TEXT_OPTIONS)}")
        if key in seen:
            raise ValueError(f"text:{arg}: option '{key}' given twice")
        seen.add(key)
        if not eq or not value.strip():
            raise ValueError(f"text:{arg}: option '{key}' needs a value (e.g. 'text=title+description', 'label=topic')")
        if key == "text":
            text_columns = [c.strip() for c in value.split("+")]
            if not all(text_columns):
                raise ValueError(f"text:{arg}: empty column name in 'text={value}' (join columns with '+')")
        else:
            label_column = value.strip()
    return Path(raw).expanduser(), text_columns, label_column


def _split_files(root: Path) -> dict[str, Path]:
    """``{split: file}`` for a folder holding ``train.csv`` / ``val.tsv`` / ``test.jsonl`` …"""
    found: dict[str, Path] = {}
    for split in SPLITS:
        files = [root / f"{split}{ext}" for ext in TABLE_SUFFIXES if (root / f"{split}{ext}").is_file()]
        if len(files) > 1:
            raise ValueError(f"{root}: several files for the '{split}' split ({', '.join(f.name for f in files)}); "
                             "keep one")
        if files:
            found[split] = files[0]
    return found


def text_splits(arg: str) -> tuple[str, ...]:
    """Splits of ``text:PATH``: a file is the ``train`` split; a folder has those of its ``<split>.<ext>`` files."""
    path, _, _ = parse_text_arg(arg)
    if path.is_dir():
        return tuple(_split_files(path))
    return ("train",)


_TRAIN_CACHE: dict[tuple, TextSet] = {}


def _load_cached(path: Path, text_columns: list[str] | None, label_column: str, strict: bool, name: str) -> TextSet:
    """Read a training table once per (path, mtime, options): its classes define the other splits' label ids."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, tuple(text_columns or ()), label_column, strict, name)
    if key not in _TRAIN_CACHE:
        if len(_TRAIN_CACHE) >= 8:
            _TRAIN_CACHE.clear()
        _TRAIN_CACHE[key] = read_text_table(path, text_columns, label_column, strict=strict, name=name)
    return _TRAIN_CACHE[key]


@register_dataset(
    "text", "Text classification table: a CSV/TSV/JSONL file (train only), or a folder of train/val/test files",
    splits=SPLITS, takes_argument=True, modality="text", splits_of=text_splits,
    arg_name="PATH[?text=COL+COL&label=COL]",
)
def text_table(split: str, arg: str | None = None, strict: bool = False) -> TextSet:
    """Load ``split`` of ``text:PATH``; val/test labels are mapped onto the train split's classes."""
    file, text_columns, label_column = split_file(arg or "", split)
    train_file = file if split == "train" else split_file(arg or "", "train")[0]
    train = _load_cached(train_file, text_columns, label_column, strict, f"text:{arg}/train")
    if split == "train":
        return train
    return read_text_table(file, text_columns, label_column, classes=train.classes, strict=strict,
                           name=f"text:{arg}/{split}")


def split_file(arg: str, split: str) -> tuple[Path, list[str] | None, str]:
    """``(file, text columns, label column)`` of ``split`` of ``text:PATH``; a clear error when it has no such split."""
    path, text_columns, label_column = parse_text_arg(arg or "")
    if not path.exists():
        raise FileNotFoundError(f"text:{arg}: no such file or folder: {path}")
    files = _split_files(path) if path.is_dir() else {"train": path}
    if split not in files:
        found = ", ".join(files) or "none"
        hint = (f"put {split}.csv (or .tsv/.jsonl) next to train.csv in {path}" if path.is_dir() else
                f"a single file is the train split only; give a folder holding train.csv and {split}.csv")
        raise ValueError(f"text:{arg} has no '{split}' split (found: {found}); {hint}")
    if "train" not in files:
        raise ValueError(f"text:{arg}: {path} has no train.csv/.tsv/.jsonl, whose classes the other splits need")
    return files[split], text_columns, label_column


def read_label_columns(
    arg: str, split: str, columns: Sequence[str], strict: bool = False
) -> tuple[TextSet, dict[str, list[str]]]:
    """The texts of ``split`` of ``text:PATH`` (unlabelled) and the raw values of several label ``columns``, row by
    row (``""`` where a row has no label in that column) — the data of a multi-task spec with one label column
    per task. Rows with an empty text are skipped (counted in a warning; ``strict``: an error)."""
    file, text_columns, _ = split_file(arg, split)
    texts: list[str] = []
    rows: list[str] = []
    values: dict[str, list[str]] = {c: [] for c in columns}
    skipped: list[tuple[str, str]] = []
    streams = [_table_rows(file, text_columns, c) for c in columns] or [_table_rows(file, text_columns, None)]
    for entries in zip(*streams, strict=True):
        line, text, _ = entries[0]
        if not text.strip():
            skipped.append((f"{file}:{line}", "empty text"))
            continue
        texts.append(text.strip())
        rows.append(f"{file.name}:{line}")
        for c, (_, _, label) in zip(columns, entries, strict=False):
            values[c].append(label.strip())
    _report_skipped(str(file), skipped, strict)
    if not texts:
        raise ValueError(f"{file}: no usable rows (every text is empty)")
    _cap_lengths(texts, str(file))
    ds = TextSet(texts, np.zeros(len(texts), np.int64), ["unlabelled"], f"text:{arg}/{split}", rows)
    return ds, values


def sorted_labels(values: Sequence[str]) -> list[str]:
    """The distinct non-empty values of a label column in class-id order (numeric order when all are integers)."""
    return _sorted_labels([v for v in dict.fromkeys(values) if v])


# ----------------------------------------------------------------------------------------------------------
# AG News

AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
AG_NEWS_MIRROR = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
_AG_NEWS_FILES = {
    "train.csv": "md5:b1a00f826fdfbd249f79597b59e1dc12",
    "test.csv": "md5:d52ea96a97a2d943681189a97654912d",
}
_AG_COLUMNS = ("label", "title", "description")
_AG_HEADER_ALIASES = {"class index": "label", "class": "label"}  # Kaggle's copy: "Class Index,Title,Description"
_BACKSLASHES = re.compile(r"\s*\\+\s*")


def read_ag_news(path: str | Path, strict: bool = False, name: str | None = None) -> TextSet:
    """Read an AG News CSV (``label,title,description``; labels 1..4; header line optional).

    The upstream files have no header; copies made with pandas often do, so a first row whose first field is
    not an integer is taken as a header (and then its column names, not positions, are used). AG News
    encodes line breaks as literal backslashes (``"A second\\team"``): they become spaces.
    """
    path = Path(path).expanduser()
    records = _csv_records(_decode(path), ",", path)
    first = next(records, None)
    if first is None:
        raise ValueError(f"{path}: empty file")
    order = [0, 1, 2]
    if not _INTEGER.fullmatch(first[1][0].strip() if first[1] else ""):
        header = [_AG_HEADER_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in first[1]]
        missing = [c for c in _AG_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}:{first[0]}: header {first[1]} lacks column(s) {missing}; AG News files have "
                             "the columns label,title,description (the upstream files have no header)")
        order = [header.index(c) for c in _AG_COLUMNS]
    else:
        records = iter([first, *records])
    texts: list[str] = []
    labels: list[int] = []
    rows: list[str] = []
    skipped: list[tuple[str, str]] = []
    for line, fields in records:
        if len(fields) <= max(order):
            raise ValueError(f"{path}:{line}: expected the 3 fields label,title,description, got {len(fields)}")
        label, title, description = (fields[i].strip() for i in order)
        if not _INTEGER.fullmatch(label) or not 1 <= int(label) <= len(AG_NEWS_CLASSES):
            raise ValueError(f"{path}:{line}: label '{label}' is not an AG News class 1..4 "
                             f"({', '.join(f'{i + 1}={c}' for i, c in enumerate(AG_NEWS_CLASSES))})")
        text = _BACKSLASHES.sub(" ", f"{title} {description}").strip()
        if not text:
            skipped.append((f"{path}:{line}", "empty text"))
            continue
        texts.append(text)
        labels.append(int(label) - 1)
        rows.append(f"{path.name}:{line}")
    _report_skipped(str(path), skipped, strict)
    if not texts:
        raise ValueError(f"{path}: no usable rows")
    _cap_lengths(texts, str(path))
    ds = TextSet(texts, np.array(labels, np.int64), list(AG_NEWS_CLASSES), name or str(path), rows)
    ds.skipped = [f"{where}: {why}" for where, why in skipped]  # type: ignore[attr-defined]
    return ds


@register_dataset(
    "ag_news", "AG News topic classification (Zhang et al., 2015): 4 classes, 120k train / 7.6k test (downloaded)",
    splits=("train", "test"), modality="text",
)
def ag_news(split: str, arg: str | None = None, strict: bool = False) -> TextSet:
    """AG News: a local ``$TRANSFERKIT_DATA/ag_news/<split>.csv`` is used as is; only downloads are verified."""
    fname = f"{split}.csv"
    local = data_root() / "ag_news" / fname
    if local.is_file():
        path = local  # a user's copy (perhaps with a header line) need not match the upstream checksum
    else:
        path = find_or_download(
            "ag_news", {fname: _AG_NEWS_FILES[fname]}, mirrors=[AG_NEWS_MIRROR],
            how_to_get=f"connect to the internet once, or put train.csv and test.csv (columns "
            f"label,title,description; labels 1-4; header line optional) into {local.parent} "
            "($TRANSFERKIT_DATA/ag_news/train.csv, $TRANSFERKIT_DATA/ag_news/test.csv)",
        )[fname]
    return read_ag_news(path, strict=strict, name=f"ag_news/{split}")
