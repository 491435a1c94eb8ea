"""The one safe model artefact: a directory with ``model.safetensors`` and ``transferkit.json``.

``model.safetensors`` holds tensors only, so loading a bundle **never unpickles anything** (a pickle can
run arbitrary code). ``transferkit.json`` holds what is needed to rebuild and use the model: the
architecture, classes, preprocessing (input spec) and lineage (source, data, strategy, seed), plus the
metrics and library versions. A LoRA bundle (``adapter`` in the JSON) stores only the adapters, the head
(and BatchNorm statistics if they trained) and rebuilds on its source, whose weights it checks by hash. A text
model's bundle also holds ``tokenizer.json`` (the ``tokenizers`` library's JSON format: data, not code);
:func:`transferkit.api.merge` turns it into a plain, self-contained bundle. Bundles are written to a
temporary directory and renamed into place. Kinds of model that are more than an architecture (LoRA, fused
ensembles) save, check and rebuild themselves through their registered
:class:`~transferkit.backbones.formats.BundleFormat`; this module knows none of them.

**A bundle is untrusted input.** :func:`load_bundle` (and :func:`read_meta`, through the same reader) checks it
before building anything and fails with a :class:`BundleError` naming the file and the field:

* files: ``transferkit.json`` (≤ 16 MiB, UTF-8 JSON object), ``model.safetensors`` and ``tokenizer.json`` (≤ 64 MiB)
  must be regular files inside the bundle — never symbolic links;
* ``transferkit.json``: ``format_version`` a whole number ≥ 1 that this version understands; ``architecture``
  checked by :func:`~transferkit.backbones.registry.validate_config` (each ``kwargs`` key on its family's
  allow-list — nothing that names a path or URL or asks for a download); ``num_classes`` = the number of
  ``classes`` (non-empty strings) = the head's outputs; ``input_spec`` consistent and fitting the architecture
  (channels, size, one finite mean and std > 0 per channel); a LoRA ``adapter`` well-formed;
* ``model.safetensors``: the header (8-byte length + JSON) is parsed first — its tensors must exactly tile the data
  (declared shape × dtype size = bytes present, no gap, no overlap), so a truncated file or a header lying about
  its shapes is refused before any allocation; names, shapes and dtypes must equal the model's (no silent
  conversion), and every floating-point weight must be finite;
* building happens in :func:`~transferkit.backbones.registry.sealed` mode: ``pretrained=False`` (a LoRA bundle's
  named source only from local weight packages or an existing library cache), nothing read from a folder or hub
  name the bundle names, no network access. The one path a bundle may name outside itself is a LoRA bundle's
  ``lineage.source`` bundle, which is loaded (and checked) the same way and must match the recorded weight hash.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from transferkit import atomic
from transferkit.backbones.base import Backbone, InputSpec
from transferkit.backbones.formats import bundle_format, format_name, format_of, known_formats
from transferkit.backbones.registry import MAX_CLASSES, build_from_config, sealed, validate_config
from transferkit.cachedir import format_size

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "transferkit.json"
TOKENIZER_FILE = "tokenizer.json"  # text models: the fast tokenizer's own JSON serialisation
META_MAX_BYTES = 16 << 20  # transferkit.json
TOKENIZER_MAX_BYTES = 64 << 20  # tokenizer.json (large multilingual vocabularies are ~20 MB)
HEADER_MAX_BYTES = 16 << 20  # the JSON header of model.safetensors (a few hundred kB for large models)
MAX_SOURCE_DEPTH = 4  # LoRA bundles on LoRA bundles …: a chain longer than this (or a loop) is refused
# safetensors dtype → bytes per element; the dtypes torch tensors are written with
_ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


class BundleError(ValueError):
    """A bundle is missing, incomplete or does not fit the data it is used with."""


def library_versions() -> dict[str, str]:
    import lightning
    import numpy
    import torch

    from transferkit import __version__

    return {"transferkit": __version__, "torch": torch.__version__, "lightning": lightning.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_bundle(model: Backbone, meta: dict[str, Any], path: str | Path) -> Path:
    """Write ``model`` and ``meta`` as a bundle directory at ``path`` (atomically; replaces an old bundle).

    ``meta`` should carry ``classes`` and ``lineage``; the architecture, input spec, number of classes and
    library versions are filled in here.
    """
    path = Path(path)
    classes = meta.get("classes") or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise BundleError(f"{len(classes)} class names for a model with {model.num_classes} outputs")
    classes = [c if isinstance(c, str) else str(c) for c in classes]
    if not all(c.strip() for c in classes):  # load_bundle refuses empty class names
        raise BundleError(f"class names must be non-empty, got {classes!r}"[:300])
    full = {
        "format_version": FORMAT_VERSION,
        **meta,
        "architecture": model.config(),
        "num_classes": model.num_classes,
        "classes": list(classes),
        "input_spec": model.input_spec.to_dict(),
        "versions": library_versions(),
    }
    fmt = format_of(model)
    if fmt is None and getattr(model, "adapter", None):
        raise BundleError(f"the model carries a '{format_name(model)}' adapter, but no bundle format of that name is "
                          f"installed (known: {', '.join(known_formats()) or 'none'}); reinstall transferkit")
    if fmt is not None and fmt.state is not None:  # e.g. LoRA: only what differs from the source is stored
        tensors, extra = fmt.state(model)
        full.update(extra)
    else:
        tensors = model.state_dict()
    with atomic.staged_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        safetensors.torch.save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        atomic.set_usual_mode(tmp / WEIGHTS_FILE)  # safetensors writes 0600: readable like the other run files
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n")
        if model.input_spec.tokenizer is not None:  # text models: the tokenizer is part of the artefact
            (tmp / TOKENIZER_FILE).write_text(model.input_spec.tokenizer.to_str())
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``transferkit.json`` of a bundle (or of a run directory's ``bundle/``), checked as :func:`load_bundle`
    checks it (file, JSON, schema) — without building the model."""
    return _read_meta(resolve_bundle(path))


def resolve_bundle(path: str | Path) -> Path:
    """A bundle directory, or a run directory holding one in ``bundle/``; a clear error otherwise."""
    p = Path(path).expanduser()
    for candidate in (p, p / "bundle"):  # lexists: a symlinked file is found here and refused, by name, when read
        if os.path.lexists(candidate / META_FILE) and os.path.lexists(candidate / WEIGHTS_FILE):
            return candidate
    if not p.exists():
        raise BundleError(f"{p}: no such bundle or run directory")
    raise BundleError(f"{p}: not a transferkit bundle (expected {META_FILE} and {WEIGHTS_FILE} in it or in {p}/bundle)")


# -- reading the files ------------------------------------------------------------------------------------------
def _open_file(file: Path, max_bytes: int | None = None) -> Any:
    """``file`` opened for reading (binary) if it is a regular file — not a symbolic link — of at most
    ``max_bytes``; else a :class:`BundleError` naming it."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise BundleError(f"{file}: missing") from None
    except OSError as exc:
        if os.path.islink(file):
            raise BundleError(f"{file}: a symbolic link; a bundle must hold its own files, not links to files "
                              "elsewhere (copy the file into the bundle)") from None
        raise BundleError(f"{file}: cannot be read ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # checked before fdopen, which refuses a folder with a bare errno
        os.close(fd)
        raise BundleError(f"{file}: not a regular file ({'a folder' if stat.S_ISDIR(info.st_mode) else 'special'})")
    fh = os.fdopen(fd, "rb")
    if max_bytes is not None and info.st_size > max_bytes:
        fh.close()
        raise BundleError(f"{file}: {format_size(info.st_size)}, more than the {format_size(max_bytes)} a bundle's "
                          f"{file.name} may have")
    return fh


def _read_text(file: Path, max_bytes: int) -> str:
    with _open_file(file, max_bytes) as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:  # it grew while being read
        raise BundleError(f"{file}: more than the {format_size(max_bytes)} a bundle's {file.name} may have")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{file}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _read_meta(bundle: Path) -> dict[str, Any]:
    """The one reader of ``transferkit.json``: a regular file of at most :data:`META_MAX_BYTES`, UTF-8, a JSON
    object, valid by :func:`validate_meta`."""
    file = bundle / META_FILE
    text = _read_text(file, META_MAX_BYTES)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise BundleError(f"{file}: not valid JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{file}: must hold a JSON object (the bundle's metadata), got {_json_type(meta)}")
    try:
        validate_meta(meta)
    except ValueError as exc:
        raise BundleError(f"{file}: {exc}") from None
    except RecursionError:
        raise BundleError(f"{file}: nested too deeply to be a bundle's metadata") from None
    return meta


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_meta(meta: dict[str, Any]) -> None:
    """Check the schema of a bundle's metadata; ``ValueError`` naming the field (see the module docstring)."""
    version = meta.get("format_version", 1)  # bundles have always carried it; its absence reads as version 1
    if not _whole(version) or version < 1:
        raise ValueError(f"format_version must be a whole number ≥ 1, got {_json_type(version)} {version!r}"[:300])
    if version > FORMAT_VERSION:
        raise ValueError(f"bundle format {version} is newer than this transferkit understands ({FORMAT_VERSION}); "
                         "upgrade transferkit")
    for key in ("architecture", "num_classes", "classes", "input_spec"):
        if key not in meta:
            raise ValueError(f"{key} is missing")
    validate_config(meta["architecture"], "architecture")
    n = meta["num_classes"]
    if not _whole(n) or not 0 <= n <= MAX_CLASSES:
        raise ValueError(f"num_classes must be a whole number in [0, {MAX_CLASSES}], got {n!r}"[:300])
    classes = meta["classes"]
    if not isinstance(classes, list):
        raise ValueError(f"classes must be a list of class names, got {_json_type(classes)}")
    if len(classes) != n:
        raise ValueError(f"classes has {len(classes)} names but num_classes is {n}")
    for i, c in enumerate(classes):
        if not isinstance(c, str) or not c.strip() or len(c) > 1024:
            raise ValueError(f"classes[{i}] must be a non-empty string (at most 1024 characters), got {c!r}"[:300])
    InputSpec.validate_dict(meta["input_spec"], "input_spec")
    lineage = meta.get("lineage")
    if lineage is not None and not isinstance(lineage, dict):
        raise ValueError(f"lineage must be an object, got {_json_type(lineage)}")
    source = (lineage or {}).get("source")
    if source is not None and not (isinstance(source, str) and len(source) <= 4096 and source.isprintable()):
        raise ValueError(f"lineage.source must be a bundle path or backbone name, got {_json_type(source)}")
    if meta.get("adapter") is not None:
        _validate_format(meta)
    if meta.get("tasks") is not None:
        validate_tasks(meta["tasks"], n)


MAX_TASKS = 256


def validate_tasks(tasks: Any, num_classes: int, where: str = "tasks") -> None:
    """A multi-task model's ``tasks`` (from a bundle's JSON or an export's ``transferkit.tasks``): a non-empty list
    of ``{"name", "classes", "start", "stop"}`` whose logit ranges tile ``[0, num_classes)`` in order, each with as
    many class names as columns; names unique, short and printable (they become response keys and CSV columns).
    ``ValueError`` names the entry and field."""
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_TASKS:
        raise ValueError(f"{where} must be a list of 1 to {MAX_TASKS} tasks, got {_json_type(tasks)}"[:300])
    pos, seen = 0, set()
    for i, t in enumerate(tasks):
        at = f"{where}[{i}]"
        if not isinstance(t, dict):
            raise ValueError(f"{at} must be an object (name, classes, start, stop), got {_json_type(t)}")
        name, classes, start, stop = t.get("name"), t.get("classes"), t.get("start"), t.get("stop")
        if not (isinstance(name, str) and 0 < len(name) <= 64 and name.isprintable() and name.strip() == name
                and "," not in name):
            raise ValueError(f"{at}.name must be a short printable name (no comma, no surrounding spaces), "
                             f"got {name!r}"[:300])
        if name in seen:
            raise ValueError(f"{at}.name '{name}' is used twice")
        seen.add(name)
        if not (_whole(start) and _whole(stop) and start == pos and start < stop <= num_classes):
            raise ValueError(f"{at} ('{name}'): start/stop must be whole numbers {pos} ≤ … with start = {pos} (the "
                             f"previous task's stop) < stop ≤ num_classes {num_classes}; got {start!r}, {stop!r}"[:300])
        if not (isinstance(classes, list) and len(classes) == stop - start
                and all(isinstance(c, str) and c.strip() and len(c) <= 1024 for c in classes)):
            raise ValueError(f"{at}.classes must list {stop - start} non-empty class names (one per logit "
                             f"{start}…{stop - 1})"[:300])
        pos = stop
    if pos != num_classes:
        raise ValueError(f"{where}: the tasks' logits end at {pos} but the model has {num_classes} outputs")


def _validate_format(meta: dict[str, Any]) -> None:
    """A bundle with an ``adapter``: the adapter's type must name an installed format, which checks its fields."""
    adapter = meta["adapter"]
    if not isinstance(adapter, dict):
        raise ValueError(f"adapter must be an object, got {_json_type(adapter)}")
    kind = adapter.get("type", "lora")
    fmt = bundle_format(kind) if isinstance(kind, str) and kind.isidentifier() else None
    if fmt is None or fmt.load is None:
        raise ValueError(f"adapter.type must be an installed adapter format ({', '.join(known_formats())}), got "
                         f"{kind!r}"[:300])
    if fmt.validate is not None:
        fmt.validate(meta)


def read_safetensors_header(file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors file's header (8-byte little-endian length, then JSON),
    read without loading any tensor. The declared tensors must tile the data exactly — each ``shape × dtype size``
    equal to its byte range, no gap, no overlap, the last ending at the end of the file — so a truncated file or
    a header that lies about its shapes is refused before anything is allocated."""
    with _open_file(file) as fh:
        size = os.fstat(fh.fileno()).st_size
        first = fh.read(8)
        if len(first) < 8:
            raise BundleError(f"{file}: truncated ({size} bytes; a safetensors file starts with an 8-byte header "
                              "length)")
        n = int.from_bytes(first, "little")
        if n > HEADER_MAX_BYTES or 8 + n > size:
            raise BundleError(f"{file}: the header claims {n} bytes but the file holds {size}: truncated or not a "
                              "safetensors file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BundleError(f"{file}: the header is not valid JSON: not a safetensors file") from None
    if not isinstance(header, dict):
        raise BundleError(f"{file}: the header is not a JSON object: not a safetensors file")
    data_size = size - 8 - n
    spans, out = [], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = (dtype in _ST_ITEMSIZE and isinstance(shape, list) and len(shape) <= 16
                  and all(_whole(d) and d >= 0 for d in shape) and _whole(begin) and _whole(end) and 0 <= begin <= end)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise BundleError(f"{file}: tensor '{str(name)[:100]}' has a malformed header entry (dtype, shape, "
                              "data_offsets)")
        nbytes = math.prod(shape) * _ST_ITEMSIZE[dtype]
        if end - begin != nbytes:
            raise BundleError(f"{file}: tensor '{name[:100]}' declares shape {shape} {dtype} "
                              f"({format_size(nbytes)}) but occupies {format_size(end - begin)}: a lying header")
        spans.append((begin, end, name))
        out[name] = (dtype, tuple(shape))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise BundleError(f"{file}: tensor '{name[:100]}' starts at byte {begin} of the data, expected {pos} "
                              "(overlapping or gapped tensors): a lying header")
        pos = end
    if pos != data_size:
        raise BundleError(f"{file}: the header declares {format_size(pos)} of tensor data but the file holds "
                          f"{format_size(data_size)}: truncated or a lying header")
    return out


def _check_state(file: Path, arch: str, expected: dict[str, tuple[str, tuple[int, ...]]],
                 header: dict[str, tuple[str, tuple[int, ...]]], what: str = "weights") -> None:
    """The header's tensors must be exactly ``expected``'s: same names, shapes and dtypes."""
    missing = [k for k in expected if k not in header]
    unexpected = [k for k in header if k not in expected]
    shapes = [f"{k}: file {header[k][1]} vs model {expected[k][1]}"
              for k in expected if k in header and header[k][1] != expected[k][1]]
    dtypes = [f"{k}: file {header[k][0]} vs model {expected[k][0]}"
              for k in expected if k in header and header[k][0] != expected[k][0]]
    if missing or unexpected or shapes or dtypes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}")
        if dtypes:
            parts.append(f"dtype mismatches {dtypes[:5]}")
        raise BundleError(f"{file}: {what} do not fit {arch}: " + "; ".join(parts))


def _signature(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {k: (_TORCH_TO_ST.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in state.items()}


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a (header-checked) safetensors file; every floating-point tensor must be finite."""
    try:
        state = safetensors.torch.load_file(str(file))
    except Exception as exc:  # safetensors raises its own SafetensorError; OSError for I/O
        raise BundleError(f"{file}: not a readable safetensors file ({str(exc).splitlines()[0][:200]})") from None
    for name, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise BundleError(f"{file}: tensor '{name}' holds NaN or infinite values")
    return state


def load_weights(model: Backbone, file: Path, header: dict[str, tuple[str, tuple[int, ...]]] | None = None) -> None:
    """Load ``file`` (safetensors) into ``model``: names, shapes and dtypes must be the model's (else the first
    mismatches are named), every floating-point weight finite."""
    header = read_safetensors_header(file) if header is None else header
    _check_state(file, model.arch, _signature(model.state_dict()), header)
    model.load_state_dict(_read_tensors(file))


def _read_tokenizer(path: Path, fallback: Any) -> Any:
    """A text bundle's ``tokenizer.json`` (a JSON document, never code), or ``fallback`` for older bundles."""
    file = path / TOKENIZER_FILE
    if not os.path.lexists(file):
        return fallback
    return read_tokenizer(file)


def read_tokenizer(file: Path, sha256: str | None = None) -> Any:
    """A ``tokenizer.json`` (a bundle's, or the one beside a text model's ONNX export) read as untrusted input: a
    regular file (not a link) of at most :data:`TOKENIZER_MAX_BYTES`, UTF-8, parsed by ``tokenizers`` (data, never
    code); with ``sha256``, its bytes must have that hash (the export records the tokenizer it was verified with)."""
    text = _read_text(Path(file), TOKENIZER_MAX_BYTES)
    if sha256 is not None:
        import hashlib

        got = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if got != sha256:
            raise BundleError(f"{file}: not the tokenizer this model was exported with (sha256 {got[:12]}…, the "
                              f"model's metadata records {str(sha256)[:12]}…); export the model again")
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(text)
    except Exception as exc:  # the tokenizers library raises its own exception type
        raise BundleError(f"{file}: not a readable tokenizer ({str(exc)[:200]})") from None


# -- building ---------------------------------------------------------------------------------------------------
def _precheck(builder: Callable[[dict[str, Any]], Backbone], config: dict[str, Any], file: Path,
              header: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Compare the header with the architecture built on the ``meta`` device (no memory, no initialisation)
    before the real build, so that an architecture far larger than its weights file is refused without being
    allocated. Architectures that cannot be built on ``meta`` skip this (the real build checks the same)."""
    try:
        with torch.device("meta"):
            expected = _signature(builder(config).state_dict())
    except Exception:  # noqa: BLE001 — e.g. data-dependent code in a constructor; checked after the real build
        return
    _check_state(file, str(config.get("arch")), expected, header)


@dataclasses.dataclass
class _Context:
    """The :class:`~transferkit.backbones.formats.LoadContext` of one bundle being loaded."""

    path: Path
    meta: dict[str, Any]
    header: dict[str, tuple[str, tuple[int, ...]]]
    depth: int

    def error(self, message: str) -> Exception:
        return BundleError(message)

    def build(self, builder: Callable[[dict[str, Any]], Backbone]) -> Backbone:
        config, weights = self.meta["architecture"], self.path / WEIGHTS_FILE
        _precheck(builder, config, weights, self.header)
        model = builder(config)
        load_weights(model, weights, self.header)
        return model

    def load_source(self, source: str) -> Backbone | None:
        if self.depth >= MAX_SOURCE_DEPTH:
            raise BundleError(f"{self.path / META_FILE}: lineage.source leads through more than {MAX_SOURCE_DEPTH} "
                              "bundles built on their source (or in a loop)")
        try:
            source_dir = resolve_bundle(source)
        except BundleError:
            return None
        return _load_bundle(source_dir, self.depth + 1)[0]

    def check_weights(self, expected: dict[str, torch.Tensor], what: str = "weights") -> None:
        _check_state(self.path / WEIGHTS_FILE, str(self.meta["architecture"].get("arch")), _signature(expected),
                     self.header, what=what)

    def read_weights(self) -> dict[str, torch.Tensor]:
        return _read_tensors(self.path / WEIGHTS_FILE)


def load_bundle(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild the model of a bundle (or run directory) and load its weights; returns ``(model, meta)``.

    Everything in the bundle is checked first (see the module docstring); any problem is a :class:`BundleError`
    naming the file and field."""
    return _load_bundle(resolve_bundle(path), 0)


def _load_bundle(path: Path, depth: int) -> tuple[Backbone, dict[str, Any]]:
    meta_file, weights = path / META_FILE, path / WEIGHTS_FILE
    meta = _read_meta(path)
    header = read_safetensors_header(weights)
    text = meta["input_spec"].get("modality") == "text"
    tokenizer = _read_tokenizer(path, None) if text else None
    with sealed():
        try:
            fmt = format_of(meta)
            context = _Context(path, meta, header, depth)
            model = fmt.load(meta, context) if fmt is not None and fmt.load is not None \
                else context.build(build_from_config)
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 — whatever a library raises on a config it cannot build
            first = (str(exc).splitlines() or [""])[0][:300]
            raise BundleError(f"{meta_file}: architecture ({meta['architecture'].get('arch')}) cannot be built: "
                              f"{type(exc).__name__}: {first}") from None
    spec = InputSpec.from_dict(meta["input_spec"])
    try:
        spec.check_fits(model.input_spec, "input_spec")
    except ValueError as exc:
        raise BundleError(f"{meta_file}: {exc}") from None
    if int(model.num_classes) != meta["num_classes"]:
        raise BundleError(f"{meta_file}: num_classes is {meta['num_classes']} ({len(meta['classes'])} classes), but "
                          f"the model's head has {model.num_classes} outputs")
    if spec.modality == "text":
        tokenizer = tokenizer or model.input_spec.tokenizer  # older bundles: the local weight package's tokenizer
        _check_text(path, model, spec, tokenizer)
        spec = dataclasses.replace(spec, tokenizer=tokenizer)
    model.input_spec = spec
    model.eval()
    return model, meta


def _check_text(path: Path, model: Backbone, spec: InputSpec, tokenizer: Any) -> None:
    """A text bundle's tokenizer and spec must fit its encoder: no token id beyond the embedding, a pad id inside
    it, ``max_length`` within the position limit."""
    if tokenizer is None:
        raise BundleError(f"{path / TOKENIZER_FILE}: missing; a text bundle of {model.arch} must carry its tokenizer")
    config = getattr(getattr(model, "hf_model", None), "config", None)
    if config is None:
        return
    rows = int(getattr(config, "vocab_size", 0) or 0)
    n = int(tokenizer.get_vocab_size(with_added_tokens=True))
    if rows and n > rows:
        raise BundleError(f"{path / TOKENIZER_FILE}: {n} tokens, but the encoder's embedding has {rows} rows")
    if rows and spec.extra["pad_id"] >= rows:
        raise BundleError(f"{path / META_FILE}: input_spec.extra.pad_id {spec.extra['pad_id']} is outside the "
                          f"vocabulary ({rows} tokens)")
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    if spec.extra["max_length"] > limit:
        raise BundleError(f"{path / META_FILE}: input_spec.extra.max_length {spec.extra['max_length']} exceeds the "
                          f"encoder's position limit ({limit})")
