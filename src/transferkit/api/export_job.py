"""``export``: a bundle → a verified ONNX or TorchScript file with its classes and preprocessing inside.

See :mod:`transferkit.exporting` for the formats, the metadata and which bundle kinds export.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.bundle import load_bundle, resolve_bundle
from transferkit.errors import ConfigError
from transferkit.exporting import (
    EXPORT_FORMATS,
    bundle_kind,
    export_onnx,
    export_torchscript,
    prepare_for_export,
    tokenizer_path,
    verify_export,
)
from transferkit.inference import check_modality
from transferkit.options import ExportConfig
from transferkit.report.export import export_record, print_export_summary
from transferkit.rundir import check_output_file, check_output_name
from transferkit.terminal import Console

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt"}
RECORD_FILE = "export.json"


def _earlier_tokenizer(path: Path) -> bool:
    """Whether ``path`` is a tokenizer an earlier export recorded in the ``export.json`` beside it."""
    try:
        records = json.loads((path.parent / RECORD_FILE).read_text())
        return any(isinstance(r, dict) and r.get("tokenizer") == path.name for r in records.values())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _earlier_export(path: Path) -> bool:
    """Whether ``path`` is recorded in the ``export.json`` beside it (an earlier export, which may be replaced)."""
    try:
        return path.name in json.loads((path.parent / RECORD_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return False


def default_out(bundle_dir: Path, fmt: str) -> Path:
    """Where an export goes without ``out``: ``RUN_DIR/export/model.onnx`` (or ``model.pt``) for a run directory's
    ``bundle/``; ``PARENT/NAME.export/model.onnx`` beside a bare bundle directory ``PARENT/NAME`` (never inside the
    bundle, which is replaced whole when it is rewritten)."""
    root = bundle_dir.parent / "export" if bundle_dir.name == "bundle" else \
        bundle_dir.parent / f"{bundle_dir.name}.export"
    return root / FILE_NAMES[fmt]


def export(*args: Any, config: ExportConfig | None = None, console: Console | None = None,
           **options: Any) -> dict[str, Any]:
    """Export the bundle (or run directory) ``model`` as ``format`` (``onnx`` or ``torchscript``) and verify it.

    ``export(model, format, out, opset, **options)`` (``bundle=`` is read as ``model``) or
    ``export(config=ExportConfig(...))``: the flat names of :class:`~transferkit.options.ExportConfig`.

    ``out`` is the file to write (a directory: ``model.onnx``/``model.pt`` in it; default :func:`default_out`).
    LoRA bundles are merged into their source first. The export is run against the bundle's PyTorch model on a
    batch of 1 and a batch of several (``verify_inputs``: preprocessed images ``(N, C, H, W)``, N ≥ 2; default
    sampled inputs) and must agree to 1e-4 with identical argmax, else it is deleted and an error raised.
    A text model (``minilm``, ``hf:``) exports encoder + pooling + head, taking ``input_ids``/``attention_mask``
    (dynamic batch and sequence axes), with its tokenizer written beside the file (``tokenizer.json``); it is
    verified on tokenised texts of several lengths (``verify_inputs``: token ids ``(N, L)``, N ≥ 2). A multi-task
    model exports its concatenated logits with the ``tasks`` metadata, verified per task. Other modalities are
    refused by name.
    Beside the file, ``export.json`` records each export made there (keyed by file name): format, opset, bundle
    kind, verification figures, classes and input spec. Returns that record plus ``path``. The file is never
    written inside the bundle; an existing file is replaced only when ``export.json`` records it as an earlier
    export (or at the default place), or with ``overwrite``.
    """
    c = ExportConfig.given(config, args, options)
    fmt, opset = c.format, c.opset
    _check_options(c)
    bundle_dir = resolve_bundle(c.model)
    model, meta = load_bundle(bundle_dir)
    check_modality(model.input_spec.modality, f"export {bundle_dir}")
    text = model.input_spec.modality == "text"
    kind = bundle_kind(model, meta)
    reference = copy.deepcopy(model).eval() if meta.get("adapter") else model  # verify against the unmerged model
    model, notes = prepare_for_export(model, meta)
    path = _export_path(bundle_dir, c.out, fmt)
    _check_targets(path, bundle_dir, c.overwrite or c.out is None, text)
    if fmt == "onnx":
        export_onnx(model, meta, path, opset=opset)
    else:
        export_torchscript(model, meta, path)
    check = verify_export(path, reference, fmt, inputs=c.verify_inputs, meta=meta)
    record = export_record(path, fmt, opset, bundle_dir, kind, notes, check, meta, model.input_spec, text)
    record_file = _add_record(path, record)
    if console is not None:
        print_export_summary(console, record, path, record_file)
    return {**record, "path": str(path)}


def _check_options(c: ExportConfig) -> None:
    """Refuse a missing model, an unknown format, an opset outside 7..21 or a bad ``out`` name before the bundle is
    loaded, so a mistake costs nothing; the checks run in this order, so the first mistake is the one reported."""
    if c.model is None:
        raise ConfigError("model", "a run or bundle directory", None)
    if c.format not in EXPORT_FORMATS:
        raise ConfigError("format", f"one of {', '.join(EXPORT_FORMATS)}", c.format)
    if isinstance(c.opset, bool) or not isinstance(c.opset, int) or not 7 <= c.opset <= 21:
        raise ConfigError("opset", "a whole number between 7 and 21", c.opset)
    if c.out is not None:
        check_output_name(c.out)


def _export_path(bundle_dir: Path, out: str | None, fmt: str) -> Path:
    """The file to write: :func:`default_out` without ``out``; ``out`` itself, or ``model.onnx``/``model.pt`` in it
    when it is a folder (or a new name without a suffix, which is taken for one)."""
    if out is None:
        return default_out(bundle_dir, fmt)
    path = Path(out).expanduser()
    if path.is_dir() or (not path.suffix and not path.exists()):
        path = path / FILE_NAMES[fmt]
    return path


def _check_targets(path: Path, bundle_dir: Path, replace: bool, text: bool) -> None:
    """Refuse to write ``path`` (and a text model's tokenizer beside it) inside the bundle or over a user's file:
    an existing file is replaced only when ``export.json`` records it as an earlier export, or when ``replace``
    (``--overwrite``, or the default place)."""
    check_output_file(path, [bundle_dir], replace, _earlier_export, option="out")  # not in it
    if text:  # the tokenizer beside it: the same rule (never over a user's file)
        check_output_file(tokenizer_path(path), [bundle_dir], replace, _earlier_tokenizer, option="out")


def _add_record(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` into the ``export.json`` beside ``path`` under the file's name, keeping the other exports'
    records there (an unreadable one is started afresh); returns that file."""
    record_file = path.parent / RECORD_FILE
    try:
        records = json.loads(record_file.read_text()) if record_file.is_file() else {}
    except (OSError, ValueError):
        records = {}
    records[path.name] = record
    atomic.write_text(record_file, json.dumps(records, indent=2, default=str) + "\n")
    return record_file
