"""``image_list:FILE.csv`` — labelled images named by a CSV (or JSONL) list instead of a class-per-folder layout.

Columns (JSONL: the keys of one object per line): ``path`` (an image file; relative paths are resolved against the
list's folder) and ``label`` (the class name), and optionally ``split`` (``train``, ``val`` or ``test``; rows without
one are training rows). The classes are the training rows' labels, sorted; a held-out row whose label no training row
has is an error naming its line. Like a folder, the list is read in memory or streamed (:mod:`transferkit.data.lazy`)
by its decoded size, unreadable files are skipped by name (``--strict`` fails). A listed file that is **missing** is
skipped the same way, naming the list's line; an entry that lies **outside the list's folder** (an absolute path or
one with ``..``) is allowed — whoever wrote the list chose it, as with ``predict``'s lists — and counted in the log
with the first such entry, so a list that reaches somewhere unexpected is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from transferkit.data.base import ImageSet
from transferkit.data.decode import BadImage
from transferkit.data.images import _entry_kind, _folder_set
from transferkit.data.registry import register_dataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _cells(path: Path, arg: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {"path", "label"[, "split"]})`` per row of a CSV list (after its header) or JSONL list (one object per
    line with those keys); a missing column or key names the line."""
    from transferkit.data.text import _cell, _csv_records, _jsonl_records, decode_utf8

    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for line, obj in _jsonl_records(decode_utf8(path, "image lists"), path):
            if "path" not in obj or "label" not in obj:
                raise ValueError(f"image_list:{arg}:{line}: each line needs the keys 'path' and 'label' (and "
                                 f"optionally 'split'); this one has {', '.join(map(repr, obj))}")
            yield line, {k: _cell(obj[k]).strip() for k in ("path", "label", "split") if k in obj}
        return
    records = _csv_records(decode_utf8(path, "image lists"), ",", path)
    first = next(records, None)
    if first is None:
        raise ValueError(f"image_list:{arg}: empty list; write a header 'path,label' and one image per row")
    names = [h.strip().lower() for h in first[1]]
    if "path" not in names or "label" not in names:
        raise ValueError(f"image_list:{arg}:{first[0]}: the header must name the columns 'path' and 'label' "
                         f"(and optionally 'split'); got {first[1]}")
    col = {n: names.index(n) for n in ("path", "label", "split") if n in names}
    for line, row in records:
        yield line, {n: row[i].strip() if i < len(row) else "" for n, i in col.items()}


def _rows(arg: str) -> list[tuple[int, str, str, str]]:
    """``(line, path as listed, label, split)`` per row of the list; a bad header or split names the line."""
    path = Path(arg).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"image_list:{arg}: no such file")
    out = []
    for line, cell in _cells(path, arg):
        if not cell["path"] and not cell["label"]:
            continue
        split = cell.get("split") or "train"
        if split not in SPLITS:
            raise ValueError(f"image_list:{arg}:{line}: split '{split}' is not one of {', '.join(SPLITS)}")
        if not cell["label"]:
            raise ValueError(f"image_list:{arg}:{line}: '{cell['path']}' has no label")
        out.append((line, cell["path"], cell["label"], split))
    return out


def list_splits(arg: str) -> tuple[str, ...]:
    """Splits of ``image_list:FILE``: those its ``split`` column names (``train`` when it has none)."""
    try:
        found = {r[3] for r in _rows(arg)}
    except (OSError, ValueError):
        return ("train",)
    return tuple(s for s in SPLITS if s in found) or ("train",)


@register_dataset("image_list", "CSV/JSONL list of images: path,label[,split] (paths relative to the list's folder)",
                  splits=SPLITS, takes_argument=True, splits_of=list_splits, arg_name="FILE.csv")
def image_list(split: str, arg: str | None = None, strict: bool = False) -> ImageSet:
    rows = _rows(arg or "")
    home = Path(arg or "").expanduser().resolve().parent
    classes = sorted({r[2] for r in rows if r[3] == "train"})
    if not classes:
        raise ValueError(f"image_list:{arg}: no training rows (rows without a split, or split 'train')")
    listed, missing, outside = [], [], []
    for line, shown, label, row_split in rows:
        if row_split != split:
            continue
        if label not in classes:
            raise ValueError(f"image_list:{arg}:{line}: label '{label}' has no training row; the model learns the "
                             f"training rows' classes ({', '.join(classes)})")
        f = Path(shown).expanduser()
        f = f if f.is_absolute() else home / f
        kind = _entry_kind(f)
        if kind != "file":
            what = "no such file" if kind == "missing" else "a folder, not an image file" if kind == "folder" else kind
            missing.append(f"{f}: {what} (listed at {arg}:{line})")
            continue
        if not f.resolve().is_relative_to(home):
            outside.append(f"{shown} (line {line})")
        listed.append((f, classes.index(label), Path(f"class '{label}'")))
    if missing:
        if strict:
            raise BadImage(missing[0])
        log.warning("image_list:%s: skipped %d listed file(s) that do not exist:\n  %s", arg, len(missing),
                    "\n  ".join(missing[:20]) + ("\n  …" if len(missing) > 20 else ""))
    if outside:
        log.info("image_list:%s: %d entr%s outside the list's folder %s (allowed), e.g. %s", arg, len(outside),
                 "y lies" if len(outside) == 1 else "ies lie", home, outside[0])
    if not listed:
        raise ValueError(f"image_list:{arg}: no existing image files in split '{split}'"
                         + (f" ({len(missing)} missing, e.g. {missing[0]})" if missing else ""))
    groups = [(i, Path(f"class '{c}'")) for i, c in enumerate(classes)]
    ds = _folder_set(listed, groups, classes, f"image_list:{arg}", split, home, strict)
    ds.skipped = list(ds.skipped) + missing  # type: ignore[attr-defined]
    return ds
