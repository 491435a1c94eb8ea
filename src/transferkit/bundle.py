"""The one safe model artefact: a directory with ``model.safetensors`` and ``transferkit.json``.

``model.safetensors`` holds tensors only, so loading a bundle **never unpickles anything** (a pickle can
run arbitrary code). ``transferkit.json`` holds what is needed to rebuild and use the model: the
architecture, classes, preprocessing (input spec) and lineage (source, data, strategy, seed), plus the
metrics and library versions. Bundles are written to a temporary directory and renamed into place.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import safetensors.torch

from transferkit import atomic
from transferkit.backbones.base import Backbone, InputSpec
from transferkit.backbones.registry import build_from_config

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "transferkit.json"


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
    full = {
        "format_version": FORMAT_VERSION,
        **meta,
        "architecture": model.config(),
        "num_classes": model.num_classes,
        "classes": list(classes),
        "input_spec": model.input_spec.to_dict(),
        "versions": library_versions(),
    }
    with atomic.staged_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``transferkit.json`` of a bundle (or of a run directory's ``bundle/``)."""
    path = resolve_bundle(path)
    return json.loads((path / META_FILE).read_text())


def resolve_bundle(path: str | Path) -> Path:
    """A bundle directory, or a run directory holding one in ``bundle/``; a clear error otherwise."""
    p = Path(path).expanduser()
    for candidate in (p, p / "bundle"):
        if (candidate / META_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    if not p.exists():
        raise BundleError(f"{p}: no such bundle or run directory")
    raise BundleError(f"{p}: not a transferkit bundle (expected {META_FILE} and {WEIGHTS_FILE} in it or in {p}/bundle)")


def load_weights(model: Backbone, file: Path) -> None:
    """Load ``file`` (safetensors) into ``model``, failing with the first mismatching keys/shapes."""
    state = safetensors.torch.load_file(str(file))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}")
        raise BundleError(f"{file}: weights do not fit {model.arch}: " + "; ".join(parts))
    model.load_state_dict(state)


def load_bundle(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild the model of a bundle (or run directory) and load its weights; returns ``(model, meta)``."""
    path = resolve_bundle(path)
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {meta['format_version']} is newer than this transferkit "
                          f"understands ({FORMAT_VERSION}); upgrade transferkit")
    model = build_from_config(meta["architecture"])
    load_weights(model, path / WEIGHTS_FILE)
    model.input_spec = InputSpec.from_dict(meta["input_spec"])
    model.eval()
    return model, meta
