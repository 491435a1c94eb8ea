"""Export a bundle's model to ONNX or TorchScript, with its classes and preprocessing inside, verified numerically.

Why: a bundle needs transferkit and PyTorch to run; an exported model runs anywhere ONNX Runtime (or libtorch)
does, and carries what a caller needs to feed it correctly. Both exports take the **already preprocessed** batch
(:func:`transferkit.inference.preprocess`) — input ``images`` float32 ``(N, C, H, W)`` with a dynamic batch axis,
output ``logits`` ``(N, num_classes)`` — and store the metadata of the contract in :mod:`transferkit.inference`:

* ONNX (``model.onnx``): ``metadata_props`` ``transferkit.classes``, ``transferkit.input_spec``,
  ``transferkit.preprocessing``, ``transferkit.lineage``, ``transferkit.format``; written with the TorchScript-based
  exporter (``torch.onnx.export(..., dynamo=False)``) and read back by :class:`~transferkit.inference.OnnxPredictor`;
* TorchScript (``model.pt``): ``torch.jit.trace`` in eval mode, the same metadata as one JSON document in the
  extra file ``transferkit.json`` (:func:`load_torchscript` reads both back).

Every export is **verified** (:func:`verify_export`): the written file and the PyTorch model run on the same
inputs — a batch of 1 and a batch of several — and must agree to ``max |Δ logits| ≤ 1e-4`` with identical
argmax; otherwise the file is deleted and :class:`ExportError` names the figures.

Bundle kinds: plain models, soups and distilled students are plain weights and export as they are; a LoRA model
is merged first (:func:`~transferkit.strategies.lora.merge_lora`, as ``transferkit merge`` does); fused ensembles
(``fused``) and feature-fusion backbones (``fused_features``) export when they trace — except to ONNX when a member
resizes its input inside the model: PyTorch's antialiased bilinear resize (``aten::_upsample_bilinear2d_aa``) has
no ONNX form in the TorchScript exporter, and exporting without it would silently change that member's
preprocessing, so that case is refused with the reason (TorchScript keeps the op and exports it).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit import atomic
from transferkit.backbones.base import InputSpec
from transferkit.inference import ONNX_FORMAT, preprocessing_text

__all__ = ["EXPORT_FORMATS", "TOLERANCE", "ExportError", "bundle_kind", "export_metadata", "export_onnx",
           "export_torchscript", "load_torchscript", "prepare_for_export", "sample_batch", "verify_export"]

EXPORT_FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # max |Δ logits| allowed between the exported model and PyTorch
VERIFY_BATCH = 7  # the "several" batch of the verification (besides a batch of 1)
TORCHSCRIPT_META = "transferkit.json"
EXPORTS_TO_ONNX = ("plain models (seed_cnn, lenet, resnet_small, mobilenet_v2, …)", "soups", "distilled students",
                   "LoRA models (merged first)",
                   "fused ensembles and feature-fusion backbones whose members all take the joint input size")


class ExportError(ValueError):
    """A model that cannot be exported faithfully, or an export that does not reproduce PyTorch; says why."""


# -- what is being exported ----------------------------------------------------------------------------------


def bundle_kind(model: nn.Module, meta: dict[str, Any] | None = None) -> str:
    """A short human name of the bundle's kind, for messages and ``export.json``."""
    meta = meta or {}
    arch = (meta.get("architecture") or {}).get("arch") or getattr(model, "arch", "?")
    if meta.get("adapter") or getattr(model, "adapter", None):
        return f"LoRA ({arch})"
    if arch == "fused":
        return f"fused ensemble ({getattr(model, 'method', '?')})"
    if arch == "fused_features":
        return f"feature-fusion backbone ({getattr(model, 'mode', '?')})"
    kind = (meta.get("lineage") or {}).get("kind")
    return f"plain ({arch}{', ' + str(kind) if kind else ''})"


def prepare_for_export(model: nn.Module, meta: dict[str, Any] | None = None) -> tuple[nn.Module, list[str]]:
    """The model in eval mode, ready to trace, and notes on what was done: LoRA adapters are merged into their
    base layers (in place — pass a copy to keep the adapters) so the export is a plain network."""
    notes: list[str] = []
    if (meta or {}).get("adapter") or getattr(model, "adapter", None):
        from transferkit.strategies.lora import merge_lora

        merge_lora(model)
        notes.append("LoRA adapters merged into the source weights before export (as 'transferkit merge' does)")
    model.eval()
    return model, notes


def _resizing_members(model: nn.Module) -> list[str]:
    """Members of a composite model that resize the joint input inside the model (antialiased bilinear)."""
    members = getattr(model, "members", None)
    spec = getattr(model, "input_spec", None)
    if members is None or spec is None or getattr(model, "arch", "") not in ("fused", "fused_features"):
        return []
    out = []
    for i, m in enumerate(members):
        if m.input_spec.size and tuple(m.input_spec.size) != tuple(spec.size or ()):
            out.append(f"member {i} ({m.arch}: {tuple(spec.size or ())} → {tuple(m.input_spec.size)})")
    return out


def export_metadata(model: nn.Module, meta: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``transferkit.*`` metadata of :mod:`transferkit.inference`'s contract, every value a string."""
    meta = meta or {}
    spec: InputSpec = model.input_spec
    classes = list(meta.get("classes") or [str(i) for i in range(int(model.num_classes))])
    if len(classes) != int(model.num_classes) or not all(isinstance(c, str) and c.strip() for c in classes):
        # bundles are checked by load_bundle; this guards a model + meta given directly (wrong metadata inside)
        raise ExportError(f"the class list ({len(classes)} names) must name each of the model's "
                          f"{int(model.num_classes)} outputs with a non-empty string")
    return {
        "transferkit.classes": json.dumps(classes),
        "transferkit.input_spec": json.dumps({"modality": spec.modality, "channels": spec.channels,
                                              "size": list(spec.size) if spec.size else None,
                                              "mean": list(spec.mean), "std": list(spec.std)}),
        "transferkit.preprocessing": preprocessing_text(spec),
        "transferkit.lineage": json.dumps(meta.get("lineage") or {}, default=str),
        "transferkit.format": ONNX_FORMAT,
    }


def sample_batch(spec: InputSpec, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` preprocessed-looking inputs: uniform pixels in [0, 1] normalised by the spec (used when the caller
    gives no real images). A spec without a fixed size gets 32 × 32."""
    g = torch.Generator().manual_seed(seed)
    h, w = spec.size or (32, 32)
    x = torch.rand(n, spec.channels, h, w, generator=g)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std


# -- exports ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' deprecation and tracer warnings (the verification is what tells if it worked)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _refusal(kind: str, fmt: str, reason: str) -> ExportError:
    return ExportError(f"cannot export this {kind} bundle to {fmt}: {reason}. What exports to ONNX: "
                       + "; ".join(EXPORTS_TO_ONNX) + ". TorchScript (--format torchscript) exports every kind "
                       "that traces, antialiased resizing included")


def export_onnx(model: nn.Module, meta: dict[str, Any] | None, path: str | Path, opset: int = 17,
                example: torch.Tensor | None = None) -> Path:
    """Write ``model`` (eval mode, LoRA merged — see :func:`prepare_for_export`) as ONNX at ``path`` with the
    contract's metadata; atomically. Raises :class:`ExportError` for a model with an op ONNX cannot express.
    Does not verify: :func:`verify_export` (or :func:`transferkit.api.export`) does."""
    import onnx

    path = Path(path)
    kind = bundle_kind(model, meta)
    resizing = _resizing_members(model)
    if resizing:
        raise _refusal(kind, "ONNX", "its members preprocess the joint input with an antialiased bilinear resize "
                       f"inside the model ({'; '.join(resizing)}), and PyTorch's antialiased resize "
                       "(aten::_upsample_bilinear2d_aa) has no ONNX equivalent in the exporter — dropping it would "
                       "silently change those members' preprocessing")
    model.eval()
    x = example if example is not None else sample_batch(model.input_spec, 2)
    buf = io.BytesIO()
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(model, (x,), buf, input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=int(opset), do_constant_folding=True, dynamo=False)
    except Exception as exc:  # noqa: BLE001 — any exporter failure becomes a refusal that names the kind
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise _refusal(kind, "ONNX", f"the exporter failed ({exc.__class__.__name__}: {first})") from exc
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, export_metadata(model, meta))
    onnx.checker.check_model(proto)
    atomic.write_bytes(path, proto.SerializeToString())
    return path


def export_torchscript(model: nn.Module, meta: dict[str, Any] | None, path: str | Path,
                       example: torch.Tensor | None = None) -> Path:
    """Write ``model`` traced (``torch.jit.trace``, eval mode) at ``path``, with the metadata as the extra file
    ``transferkit.json``; atomically. Does not verify (see :func:`export_onnx`)."""
    path = Path(path)
    model.eval()
    x = example if example is not None else sample_batch(model.input_spec, 2)
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, (x,), check_trace=False)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise _refusal(bundle_kind(model, meta), "TorchScript", f"tracing failed ({exc.__class__.__name__}: "
                       f"{first})") from exc
    buf = io.BytesIO()
    with _quiet():
        torch.jit.save(traced, buf, _extra_files={TORCHSCRIPT_META: json.dumps(export_metadata(model, meta))})
    atomic.write_bytes(path, buf.getvalue())
    return path


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata (``classes``, ``input_spec``, ``lineage`` decoded from JSON)."""
    extra = {TORCHSCRIPT_META: ""}
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    raw = json.loads(extra[TORCHSCRIPT_META] or "{}")
    if "transferkit.classes" not in raw:
        raise ValueError(f"{path}: not exported by transferkit (no {TORCHSCRIPT_META} metadata)")
    meta = {k.removeprefix("transferkit."): v for k, v in raw.items()}
    for key in ("classes", "input_spec", "lineage"):
        meta[key] = json.loads(meta[key])
    return module.eval(), meta


# -- verification ----------------------------------------------------------------------------------------------


def _exported_runner(path: Path, fmt: str) -> Any:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(["logits"], {"images": x.numpy().astype(np.float32)})[0])
    module, _ = load_torchscript(path)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.jit.optimized_execution(False):  # no profiling passes: one-off runs, faster
            return module(x).float()

    return run


def verify_export(path: str | Path, model: nn.Module, fmt: str, inputs: torch.Tensor | None = None,
                  tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Run the export at ``path`` and ``model`` on the same inputs — the first image alone, then a batch of several
    (``inputs``, default :data:`VERIFY_BATCH` sampled ones) — and require ``max |Δ logits| ≤ tolerance`` and
    identical argmax. Returns the figures; on failure deletes ``path`` and raises :class:`ExportError` with them."""
    path = Path(path)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format '{fmt}'; valid formats: {', '.join(EXPORT_FORMATS)}")
    x = inputs if inputs is not None else sample_batch(model.input_spec, VERIFY_BATCH, seed=1)
    x = x.detach().float().cpu().contiguous()
    if len(x) < 2:
        raise ValueError("verify_export needs at least 2 inputs (a batch of 1 and a batch of several)")
    try:
        run = _exported_runner(path, fmt)
        model.eval()
        batches, worst, same = {}, 0.0, True
        for name, xb in (("batch_1", x[:1]), (f"batch_{len(x)}", x)):
            with torch.no_grad():
                ref = model(xb).float()
            got = run(xb)
            if tuple(got.shape) != tuple(ref.shape):
                raise ExportError(f"{path}: the {fmt} export gives logits of shape {tuple(got.shape)} for {name}, "
                                  f"PyTorch {tuple(ref.shape)}")
            diff = float((got - ref).abs().max())
            agree = bool(torch.equal(got.argmax(1), ref.argmax(1)))
            batches[name] = {"max_abs_diff": diff, "argmax_equal": agree}
            worst, same = max(worst, diff), same and agree
        if not worst <= tolerance or not same:  # `not <=` also catches NaN
            raise ExportError(f"{path}: the {fmt} export does not reproduce PyTorch: max |Δ logits| = {worst:.3g} "
                              f"(allowed {tolerance:g}), argmax identical: {same} "
                              f"({', '.join(f'{k}: {v}' for k, v in batches.items())}); the file was deleted")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return {"max_abs_diff": worst, "argmax_equal": same, "tolerance": tolerance, "batches": batches}
