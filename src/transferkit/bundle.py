"""The one safe model artefact: a directory with ``model.safetensors`` and ``transferkit.json``.

``model.safetensors`` holds tensors only, so loading a bundle **never unpickles anything** (a pickle can
run arbitrary code). ``transferkit.json`` holds what is needed to rebuild and use the model: the
architecture, classes, preprocessing (input spec) and lineage (source, data, strategy, seed), plus the
metrics and library versions. A LoRA bundle (``adapter`` in the JSON) stores only the adapters, the head
(and BatchNorm statistics if they trained) and rebuilds on its source, whose weights it checks by hash. A text
model's bundle also holds ``tokenizer.json`` (the ``tokenizers`` library's JSON format: data, not code);
:func:`transferkit.api.merge` turns it into a plain, self-contained bundle. Bundles are written to a
temporary directory and renamed into place.
"""

from __future__ import annotations

import dataclasses
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
TOKENIZER_FILE = "tokenizer.json"  # text models: the fast tokenizer's own JSON serialisation


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
    adapter = getattr(model, "adapter", None)
    if adapter is not None:  # LoRA: only what differs from the source is stored (adapters, head, BN statistics)
        from transferkit.strategies.lora import adapter_state

        full["adapter"] = dict(adapter)
        tensors = adapter_state(model, with_bn_stats=adapter.get("bn") == "train")
    else:
        tensors = model.state_dict()
    with atomic.staged_dir(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        safetensors.torch.save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, default=str) + "\n")
        if model.input_spec.tokenizer is not None:  # text models: the tokenizer is part of the artefact
            (tmp / TOKENIZER_FILE).write_text(model.input_spec.tokenizer.to_str())
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
    if meta.get("adapter"):
        model = _load_adapter_model(path, meta)
    elif meta["architecture"].get("arch") == "fused":  # several members + a combination rule (transferkit fuse)
        from transferkit.fusion.model import FusedModel

        model = FusedModel.from_config(meta["architecture"])
        load_weights(model, path / WEIGHTS_FILE)
    else:
        model = build_from_config(meta["architecture"])
        load_weights(model, path / WEIGHTS_FILE)
    spec = InputSpec.from_dict(meta["input_spec"])
    if spec.modality == "text":
        spec = dataclasses.replace(spec, tokenizer=_read_tokenizer(path, model.input_spec.tokenizer))
    model.input_spec = spec
    model.eval()
    return model, meta


def _read_tokenizer(path: Path, fallback: Any) -> Any:
    """A text bundle's ``tokenizer.json`` (a JSON document, never code), or ``fallback`` for older bundles."""
    file = path / TOKENIZER_FILE
    if not file.is_file():
        return fallback
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(file.read_text(encoding="utf-8"))
    except Exception as exc:  # the tokenizers library raises its own exception type
        raise BundleError(f"{file}: not a readable tokenizer ({exc})") from None


def _load_adapter_model(path: Path, meta: dict[str, Any]) -> Backbone:
    """Rebuild a LoRA bundle: the source it was trained from (checked by weight hash), the adapters, the head."""
    from transferkit.backbones.cache import weights_hash
    from transferkit.backbones.registry import create_backbone, is_backbone_name
    from transferkit.strategies.lora import adapter_state, inject_lora

    adapter = meta["adapter"]
    base_info = adapter.get("base") or {}
    source = str((meta.get("lineage") or {}).get("source") or "")
    try:
        base, _ = load_bundle(source)
    except BundleError:
        arch = base_info.get("architecture") or {}
        if not (source and is_backbone_name(source) and arch):
            raise BundleError(f"{path}: a LoRA bundle holds adapters only; its source '{source}' is neither a "
                              "bundle nor a backbone with pretrained weights here — merge it where the source "
                              "is available (transferkit merge) to get a self-contained bundle") from None
        base = create_backbone(source, pretrained=True, **(arch.get("kwargs") or {}))
    if base_info.get("weights_hash") and weights_hash(base) != base_info["weights_hash"]:
        raise BundleError(f"{path}: the source '{source}' has other weights than the ones these adapters were "
                          "trained on (weight hash differs); the adapters would not fit it")
    base.reset_classifier(int(meta["num_classes"]))
    inject_lora(base, adapter["targets"], adapter["r"], adapter["alpha"], adapter.get("dropout", 0.0))
    base.adapter.update({k: v for k, v in adapter.items() if k not in base.adapter})
    state = safetensors.torch.load_file(str(path / WEIGHTS_FILE))
    expected = adapter_state(base, with_bn_stats=adapter.get("bn") == "train")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise BundleError(f"{path / WEIGHTS_FILE}: adapter weights do not fit (missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]})")
    base.load_state_dict(state, strict=False)
    return base
