"""The rows of predictions and their columns (what ``predict`` writes to files or standard output, machine-readable,
safe for a spreadsheet), and the table of them the command line prints for people, sized to the terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

_TOP_CLASS = re.compile(r"_?top(\d+)_class$")
_MIN_PATH = 12  # narrower than this, a path says nothing; the table may then pass the width instead


def predict_fields(top_k: int, tasks: Sequence[str] | None = None) -> list[str]:
    """The output columns of :func:`~transferkit.api.use.predict` for ``top_k`` classes; a multi-task model has
    ``<task>_class``, ``<task>_probability`` and ``<task>_top{i}_…`` for each of its ``tasks`` instead of one set."""
    top = [f"top{i}_{what}" for i in range(1, top_k + 1) for what in ("class", "index", "probability")]
    if tasks:
        return ["path", *(f"{t}_{f}" for t in tasks for f in ("class", "probability", *top)), "error"]
    return ["path", "predicted_class", "probability", *top, "error"]


def prediction_row(path: str, pred: dict[str, Any]) -> dict[str, Any]:
    """The output row of a prediction: its class, probability and top-k (per task for a multi-task model)."""
    row: dict[str, Any] = {"path": path}
    for prefix, p in (((f"{t}_", p) for t, p in pred["tasks"].items()) if "tasks" in pred else [("", pred)]):
        row.update({f"{prefix}class" if prefix else "predicted_class": p["predicted_class"],
                    f"{prefix}probability": p["probability"]})
        for i, t in enumerate(p["top"], 1):
            row.update({f"{prefix}top{i}_class": t["class"], f"{prefix}top{i}_index": t["index"],
                        f"{prefix}top{i}_probability": t["probability"]})
    row["error"] = None
    return row


def error_row(path: str, error: str, fields: list[str]) -> dict[str, Any]:
    """The output row of an input that could not be predicted: every prediction field empty, ``error`` its reason."""
    return {**dict.fromkeys(fields), "path": path, "error": error}


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet may run such a cell as a formula (OWASP)


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell: a string a spreadsheet would read as a formula gets a leading ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value


def shorten_left(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters from the left (``…/photos/cat.png``): a path's end names the file."""
    return text if len(text) <= width else "…" + text[len(text) - max(width - 1, 0):]


def _tasks(row: dict[str, Any]) -> list[str]:
    """The task names of a multi-task row (``<task>_class`` keys); ``[]`` for a single-task row."""
    if "predicted_class" in row:
        return []
    return [k[:-len("_class")] for k in row if k.endswith("_class") and not _TOP_CLASS.search(k)]


def _top_text(row: dict[str, Any], prefix: str, k: int) -> str:
    """``"Coat 0.61\nShirt 0.22\n…"``: one line per class (class names hold spaces and commas, so a list on one
    line would wrap in the middle of a name)."""
    return "\n".join(f"{row[f'{prefix}top{i}_class']} {row[f'{prefix}top{i}_probability']:.2f}"
                     for i in range(1, k + 1) if row.get(f"{prefix}top{i}_class") is not None)


def predictions_table(rows: Sequence[dict[str, Any]], width: int = 80, top_k: int = 1, title: str = "") -> Table:
    """A compact table of :func:`transferkit.api.predict` rows that fits ``width`` columns.

    Columns: ``path`` (shortened from the left when needed), ``class`` and ``prob.``; with ``top_k`` > 1 one more,
    ``top k``, listing the k most probable classes with their probabilities, one per line. A
    multi-task row has one ``class prob.`` column per task instead. A row whose image could not be predicted shows
    ``error`` (the reason is in the warnings and in the ``error`` column of ``--output``).
    """
    tasks = _tasks(rows[0]) if rows else []
    heads = [(f"{t}_", t) for t in tasks] or [("", "class")]
    k = max(1, top_k) if not tasks else 1  # top-k of every task would not fit a terminal: use --output
    cells: list[list[str]] = []
    for row in rows:
        if row.get("error") is not None:
            cells.append(["error"] + [""] * (len(heads) * (1 if tasks else 2) - 1 + (k > 1)))
            continue
        line = []
        for prefix, _ in heads:
            cls = row.get(f"{prefix}class" if prefix else "predicted_class")
            prob = row.get(f"{prefix}probability")
            if tasks:
                line.append(f"{cls} {prob:.2f}" if prob is not None else str(cls))
            else:
                line += [str(cls), f"{prob:.3f}" if prob is not None else ""]
        if k > 1:
            line.append(_top_text(row, "", k))
        cells.append(line)
    headers = [name for _, name in heads] if tasks else ["class", "prob."]
    if k > 1:
        headers.append(f"top {k}")
    widths = [max([len(h), *(len(line) for c in cells for line in c[i].splitlines())]) for i, h in enumerate(headers)]
    if k > 1:  # a long class name may fold; keep at least half the width for the rest
        widths[-1] = min(widths[-1], max(len(headers[-1]), width // 2 - 4))
    overhead = 3 * len(headers) + 2  # per column 2 of padding, 1 of divider; box.SIMPLE draws its dividers blank
    path_width = max(_MIN_PATH, min(max((len(r["path"]) for r in rows), default=4),
                                     width - overhead - sum(widths)))
    table = Table(title=title or None, box=box.SIMPLE, show_edge=False, expand=False)
    table.add_column("path", no_wrap=True, max_width=path_width)
    for i, h in enumerate(headers):
        last_top = k > 1 and i == len(headers) - 1
        table.add_column(h, justify="right" if h == "prob." else "left", no_wrap=not last_top,
                         overflow="fold" if last_top else "ellipsis", max_width=widths[i])
    for row, line in zip(rows, cells, strict=True):
        table.add_row(shorten_left(str(row["path"]), path_width), *line)
    return table


def show_predictions(result: dict[str, Any] | list[dict[str, Any]], output: str | None, top_k: int, console: Any,
                     info: Any, to_stdout: bool = False, preview_rows: int = 20) -> None:
    """What ``transferkit predict`` prints: written to standard output (``to_stdout``, ``--output -``), only a
    summary on ``info`` (standard error), else a table of the first ``preview_rows`` rows and a summary on ``console``.
    ``result`` is :func:`transferkit.api.predict`'s: the rows, or (streamed to ``output``) a summary with a
    preview of the first rows."""
    if isinstance(result, dict):  # streamed to --output: a summary with the first rows
        rows, n, errors = result["preview"], result["images"], result["errors"]
    else:
        rows, n, errors = result, len(result), sum(r["error"] is not None for r in result)
    summary = f"{n - errors} input(s) predicted, {errors} error(s)"
    if to_stdout:
        info.print(f"{summary}; wrote them to standard output as {result['format'].upper()}", highlight=False)
        return
    console.print(predictions_table(rows[:preview_rows], width=console.width, top_k=top_k,
                                    title=f"predictions ({n} inputs)"))
    if n > preview_rows:
        console.print(f"… {n - preview_rows} more" + ("" if output else "; --output FILE.csv (or -) has every row"),
                      highlight=False)
    console.print(summary + (f"; wrote {output}" if output else ""), highlight=False, markup=False)
