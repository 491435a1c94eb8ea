"""What counts as a transferkit output directory — the one rule that decides what a job may replace.

Every directory transferkit writes holds the marker file ``.transferkit-run`` (JSON: ``kind`` = the job,
``version``, ``host``, ``created``; written by :func:`transferkit.rundir.write_marker`); :func:`output_kind` also
recognises directories written before the marker existed. Both :mod:`transferkit.rundir` (which checks an
``--out`` before a job starts) and :mod:`transferkit.atomic` (whose ``replace_dir`` refuses, as a last line of
defence, to replace anything else) read the rule here, below both of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class OutputPathError(ValueError):
    """An ``--out``/``--output`` that transferkit refuses to write: it would destroy data or an input."""


MARKER_FILE = ".transferkit-run"
# what transferkit wrote before the marker existed (see output_kind)
LEGACY_SIGNATURES = (("curve", "curve.json"), ("tune", "study.db"), ("tune", "best_config.yaml"))


def read_marker(directory: str | Path) -> dict[str, Any] | None:
    """The marker of ``directory`` (see :func:`transferkit.rundir.write_marker`), or ``None`` when it has none or
    it is unreadable."""
    try:
        info = json.loads((Path(directory) / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("kind"), str) else None


def output_kind(path: str | Path) -> str | None:
    """The job that wrote the directory ``path`` when it is a transferkit output, else ``None``.

    The rule: a directory is a transferkit output when it holds the marker ``.transferkit-run`` (a JSON object
    with ``kind``), or — written before the marker existed — when it holds ``config.yaml`` together with
    ``metrics.json``, ``lr_find.json`` or ``bundle/transferkit.json`` (a finished run of any job; the kind is the
    ``command`` in its config.yaml), ``transferkit.json`` together with ``model.safetensors`` (a bundle: ``"bundle"``),
    ``curve.json`` (an unfinished curve), or ``study.db`` or ``best_config.yaml`` (a tune search). Nothing else
    is, however much it resembles one.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    marker = read_marker(p)
    if marker is not None:
        return str(marker["kind"])
    finished = any((p / name).is_file() for name in ("metrics.json", "lr_find.json", "bundle/transferkit.json"))
    if (p / "config.yaml").is_file() and finished:
        try:
            command = (yaml.safe_load((p / "config.yaml").read_text()) or {}).get("command")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            command = None
        return str(command) if command else "run"
    if (p / "transferkit.json").is_file() and (p / "model.safetensors").is_file():
        return "bundle"
    for kind, name in LEGACY_SIGNATURES:
        if (p / name).is_file():
            return kind
    return None
