"""Export a bundle's model to ONNX or TorchScript, with its classes and preprocessing inside, verified numerically.

Why: a bundle needs transferkit and PyTorch to run; an exported model runs anywhere ONNX Runtime (or libtorch)
does, and carries what a caller needs to feed it correctly. Both exports take the **already preprocessed** batch
(:func:`transferkit.inference.preprocess`) — input ``images`` float32 ``(N, C, H, W)`` with a dynamic batch axis,
output ``logits`` ``(N, num_classes)`` — and store the metadata of the contract in :mod:`transferkit.inference`:

* ONNX (``model.onnx``): ``metadata_props`` ``transferkit.classes``, ``transferkit.input_spec`` (with the evaluation
  transform: ``resize``, ``crop_pct``, ``interpolation``), ``transferkit.preprocessing`` (the same in words: e.g.
  resize the shorter side to 256, centre crop 224), ``transferkit.lineage``, ``transferkit.format``;
  written with the TorchScript-based
  exporter (``torch.onnx.export(..., dynamo=False)``) and read back by :class:`~transferkit.inference.OnnxPredictor`;
* TorchScript (``model.pt``): ``torch.jit.trace`` in eval mode, the same metadata as one JSON document in the
  extra file ``transferkit.json`` (:func:`load_torchscript` reads both back).

Every export is **verified** (:func:`verify_export`): the written file and the PyTorch model run on the same
inputs — a batch of 1 and a batch of several — and must agree to ``max |Δ logits| ≤ 1e-4`` with identical
argmax; otherwise the file is deleted and :class:`ExportError` names the figures.

**Text models** (``minilm``, ``hf:`` encoders) export the encoder, its pooling and the head as one graph
(:class:`TextExport`): inputs ``input_ids`` and ``attention_mask``, int64 ``(N, L)``, both axes dynamic; the tokenizer
is written beside the model (``tokenizer.json`` next to ``model.onnx``/``model.pt``, ``NAME.tokenizer.json`` next to
another file name) and named with its sha256 in ``transferkit.tokenizer``. They are verified on tokenised texts of
several lengths (a short text alone, a text cut at ``max_length`` alone, and a batch of mixed lengths). **Multi-task
models** export their concatenated logits with ``transferkit.tasks`` (which columns belong to which task); the
verification requires each task's argmax to agree. Other modalities (audio does not exist yet) are refused by name.
An operator the ONNX exporter cannot express is named in the refusal together with the backbone; nothing is written.

Bundle kinds: plain models, soups and distilled students are plain weights and export as they are; a LoRA model
is merged first (:func:`~transferkit.backbones.adapters.merge_lora`, as ``transferkit merge`` does); fused ensembles
(``fused``) and feature-fusion backbones (``fused_features``) export when they trace — except to ONNX when a member
resizes its input inside the model: PyTorch's antialiased bilinear resize (``aten::_upsample_bilinear2d_aa``) has
no ONNX form in the TorchScript exporter, and exporting without it would silently change that member's
preprocessing, so that case is refused with the reason (TorchScript keeps the op and exports it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit import atomic
from transferkit.backbones.base import InputSpec
from transferkit.inference import (
    IMAGE_INPUT,
    ONNX_FORMAT,
    TEXT_INPUTS,
    check_modality,
    preprocessing_text,
    task_heads,
)
from transferkit.logs import quiet_logger

__all__ = ["EXPORT_FORMATS", "TOLERANCE", "ExportError", "TextExport", "bundle_kind", "export_metadata", "export_onnx",
           "export_torchscript", "load_torchscript", "prepare_for_export", "sample_batch", "sample_token_batches",
           "tokenizer_path", "verify_export"]

EXPORT_FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # max |Δ logits| allowed between the exported model and PyTorch
VERIFY_BATCH = 7  # the "several" batch of the verification (besides a batch of 1)
TORCHSCRIPT_META = "transferkit.json"
EXPORTS_TO_ONNX = ("plain models (seed_cnn, lenet, resnet_small, mobilenet_v2, …)", "soups", "distilled students",
                   "LoRA models (merged first)",
                   "fused ensembles and feature-fusion backbones whose members all take the joint input size")


class ExportError(ValueError):
    """A model that cannot be exported faithfully, or an export that does not reproduce PyTorch; says why."""


class TextExport(nn.Module):
    """A text model as the exported graph sees it: ``(input_ids, attention_mask)`` → ``logits``, through the model's
    own :meth:`~transferkit.backbones.text.TextEncoder.encode_tokens` (encoder, pooling, normalisation) and head —
    without the per-batch trimming of ``forward`` (a data-dependent width would be frozen by tracing; padding is
    masked either way, so the logits are the same)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.encode_tokens(input_ids, attention_mask))


def _is_text(model: nn.Module) -> bool:
    return getattr(getattr(model, "input_spec", None), "modality", "image") == "text"


def _graph(model: nn.Module) -> nn.Module:
    """What is traced: the model itself (images), or :class:`TextExport` around it (text)."""
    if not _is_text(model):
        return model
    if not hasattr(model, "encode_tokens"):
        raise ExportError(f"cannot export this text model ({getattr(model, 'arch', type(model).__name__)}): it is not "
                          "a transferkit text encoder (no encode_tokens); text models that export: minilm, hf:…")
    return TextExport(model).eval()


def tokenizer_path(path: str | Path) -> Path:
    """Where a text model's tokenizer goes beside its export ``path``: ``tokenizer.json`` next to ``model.onnx`` or
    ``model.pt``, ``NAME.tokenizer.json`` next to any other ``NAME.onnx``/``NAME.pt`` (two exports in one folder
    never share a tokenizer file by accident)."""
    path = Path(path)
    return path.with_name("tokenizer.json" if path.stem == "model" else f"{path.stem}.tokenizer.json")


def _tokenizer_json(model: nn.Module) -> str:
    tokenizer = getattr(model.input_spec, "tokenizer", None)
    if tokenizer is None:
        raise ExportError(f"cannot export this text model ({getattr(model, 'arch', '?')}): it carries no tokenizer, "
                          "and an export must ship the one it was trained with")
    return tokenizer.to_str()


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
    from transferkit.backbones.formats import format_of

    notes: list[str] = []
    fmt = format_of(model)
    if fmt is not None and fmt.merge is not None:
        fmt.merge(model)
        what = "LoRA adapters" if fmt.name == "lora" else f"the {fmt.name} format's extra layers"
        notes.append(f"{what} merged into the source weights before export (as 'transferkit merge' does)")
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


def export_metadata(model: nn.Module, meta: dict[str, Any] | None = None,
                    tokenizer: tuple[str, str] | None = None) -> dict[str, str]:
    """The ``transferkit.*`` metadata of :mod:`transferkit.inference`'s contract, every value a string; a text
    model's adds ``transferkit.tokenizer`` (``tokenizer`` = the file name beside the export and its sha256), a
    multi-task model's ``transferkit.tasks``."""
    meta = meta or {}
    spec: InputSpec = model.input_spec
    check_modality(spec.modality, f"export of {getattr(model, 'arch', type(model).__name__)}")
    classes = list(meta.get("classes") or [str(i) for i in range(int(model.num_classes))])
    if len(classes) != int(model.num_classes) or not all(isinstance(c, str) and c.strip() for c in classes):
        # bundles are checked by load_bundle; this guards a model + meta given directly (wrong metadata inside)
        raise ExportError(f"the class list ({len(classes)} names) must name each of the model's "
                          f"{int(model.num_classes)} outputs with a non-empty string")
    spec_json = {"modality": spec.modality, "channels": spec.channels, "size": list(spec.size) if spec.size else None,
                 "mean": list(spec.mean), "std": list(spec.std), "resize": spec.resize, "crop_pct": spec.crop_pct,
                 "interpolation": spec.interpolation}
    if spec.extra:
        spec_json["extra"] = dict(spec.extra)
    out = {
        "transferkit.classes": json.dumps(classes),
        "transferkit.input_spec": json.dumps(spec_json),
        "transferkit.preprocessing": preprocessing_text(spec),
        "transferkit.lineage": json.dumps(meta.get("lineage") or {}, default=str),
        "transferkit.format": ONNX_FORMAT,
    }
    if meta.get("tasks"):
        from transferkit.bundle import validate_tasks

        try:
            validate_tasks(meta["tasks"], int(model.num_classes))
        except ValueError as exc:
            raise ExportError(f"the multi-task metadata does not fit the model: {exc}") from None
        out["transferkit.tasks"] = json.dumps([{k: t[k] for k in ("name", "classes", "start", "stop")}
                                               for t in meta["tasks"]])
    if spec.modality == "text":
        if tokenizer is None:
            raise ExportError("a text model's export metadata needs its tokenizer file (name, sha256)")
        out["transferkit.tokenizer"] = json.dumps({"file": tokenizer[0], "sha256": tokenizer[1]})
    return out


VERIFY_TEXTS = (
    "Shares rose.",
    "The striker scored twice as United won the cup final in Paris on Saturday night.",
    "Heavy rain and strong winds are expected tonight",
    "A new telescope spotted a distant galaxy; astronomers said the light left it 13 billion years ago, "
    "long before the Sun formed.",
    "ok",
    "Researchers sequenced the genome of a rare frog",
)


def _long_text(spec: InputSpec) -> str:
    """A text longer than the model's ``max_length`` tokens (it is cut there: the longest input the model sees)."""
    n = int((spec.extra or {}).get("max_length", 256))
    return " ".join(f"word{i % 97} and" for i in range(n + 8))


def sample_token_batches(spec: InputSpec, texts: Sequence[str] | None = None) -> list[tuple[str, torch.Tensor]]:
    """The verification inputs of a text model: ``(name, token ids)`` for a short text alone, a text cut at
    ``max_length`` tokens alone, and a batch of texts of several lengths (``texts``, default :data:`VERIFY_TEXTS`,
    plus the long one) — so the dynamic batch and sequence axes and the padding mask are all exercised."""
    from transferkit.data.tokens import encode_texts

    texts = list(texts) if texts else list(VERIFY_TEXTS)
    long = _long_text(spec)
    with quiet_logger("transferkit.data.tokens", logging.ERROR):  # the long text is cut on purpose
        batches = [("text_short", encode_texts([min(texts, key=len)], spec, "verify")[0]),
                   ("text_max_length", encode_texts([long], spec, "verify")[0]),
                   (f"texts_{len(texts) + 1}_mixed_lengths", encode_texts([*texts, long], spec, "verify")[0])]
    return batches


def _text_inputs(ids: torch.Tensor, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of padded ids: the mask the model itself derives (``ids != pad_id``)."""
    return ids, (ids != int((spec.extra or {}).get("pad_id", 0))).long()


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


_UNSUPPORTED_OP = re.compile(r"operator '([^']+)'")


def _exporter_failure(exc: BaseException, model: nn.Module, kind: str, opset: int) -> ExportError:
    """The exporter's failure as a refusal; an operator ONNX cannot express is named, with the backbone."""
    from torch.onnx.errors import UnsupportedOperatorError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    op = _UNSUPPORTED_OP.search(first)
    if isinstance(exc, UnsupportedOperatorError) or (op and "not supported" in first):
        name = op.group(1) if op else "?"
        return ExportError(f"cannot export the {kind} bundle to ONNX: backbone '{getattr(model, 'arch', '?')}' uses "
                           f"the operator {name}, which the ONNX exporter cannot express at opset {opset} ({first}). "
                           "Try another --opset, --format torchscript, or a backbone without that operator; nothing "
                           "was written")
    return _refusal(kind, "ONNX", f"the exporter failed ({exc.__class__.__name__}: {first})")


def _example(model: nn.Module, example: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The tracing inputs: images, or (text) ``(input_ids, attention_mask)`` of texts of mixed lengths (padding
    included, so that no all-ones-mask shortcut of the encoder is frozen into the trace)."""
    if not _is_text(model):
        return (example if example is not None else sample_batch(model.input_spec, 2),)
    ids = example if example is not None else sample_token_batches(model.input_spec)[-1][1]
    return _text_inputs(ids, model.input_spec)


def _write_tokenizer(model: nn.Module, path: Path) -> tuple[str, str] | None:
    """A text model's tokenizer, written atomically beside the export ``path``; ``(file name, sha256)``."""
    if not _is_text(model):
        return None
    text = _tokenizer_json(model)
    file = tokenizer_path(path)
    atomic.write_text(file, text)
    return file.name, hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pending_tokenizer(model: nn.Module, path: Path) -> tuple[str, str] | None:
    if not _is_text(model):
        return None
    return tokenizer_path(path).name, hashlib.sha256(_tokenizer_json(model).encode("utf-8")).hexdigest()


def export_onnx(model: nn.Module, meta: dict[str, Any] | None, path: str | Path, opset: int = 17,
                example: torch.Tensor | None = None) -> Path:
    """Write ``model`` (eval mode, LoRA merged — see :func:`prepare_for_export`) as ONNX at ``path`` with the
    contract's metadata; atomically (a text model's tokenizer too, beside it, after the model). Raises
    :class:`ExportError` for a model with an op ONNX cannot express (naming the op and the backbone) or of a
    modality other than image and text. Does not verify: :func:`verify_export` (or :func:`transferkit.api.export`)
    does."""
    import onnx

    path = Path(path)
    kind = bundle_kind(model, meta)
    check_modality(model.input_spec.modality, f"export of the {kind} bundle")
    resizing = _resizing_members(model)
    if resizing:
        raise _refusal(kind, "ONNX", "its members preprocess the joint input with an antialiased bilinear resize "
                       f"inside the model ({'; '.join(resizing)}), and PyTorch's antialiased resize "
                       "(aten::_upsample_bilinear2d_aa) has no ONNX equivalent in the exporter — dropping it would "
                       "silently change those members' preprocessing")
    model.eval()
    graph = _graph(model)
    args = _example(model, example)
    if _is_text(model):
        names = list(TEXT_INPUTS)
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
    else:
        names, axes = [IMAGE_INPUT], {IMAGE_INPUT: {0: "batch"}}
    buf = io.BytesIO()
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, args, buf, input_names=names, output_names=["logits"],
                              dynamic_axes={**axes, "logits": {0: "batch"}},
                              opset_version=int(opset), do_constant_folding=True, dynamo=False)
    except Exception as exc:  # noqa: BLE001 — any exporter failure becomes a refusal that names the kind
        raise _exporter_failure(exc, model, kind, int(opset)) from exc
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, export_metadata(model, meta, _pending_tokenizer(model, path)))
    onnx.checker.check_model(proto)
    atomic.write_bytes(path, proto.SerializeToString())
    try:
        _write_tokenizer(model, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def export_torchscript(model: nn.Module, meta: dict[str, Any] | None, path: str | Path,
                       example: torch.Tensor | None = None) -> Path:
    """Write ``model`` traced (``torch.jit.trace``, eval mode) at ``path``, with the metadata as the extra file
    ``transferkit.json``; atomically (a text model: traced as :class:`TextExport`, its tokenizer beside it). Does
    not verify (see :func:`export_onnx`)."""
    path = Path(path)
    kind = bundle_kind(model, meta)
    check_modality(model.input_spec.modality, f"export of the {kind} bundle")
    model.eval()
    graph = _graph(model)
    args = _example(model, example)
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(graph, args, check_trace=False)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise _refusal(kind, "TorchScript", f"tracing failed ({exc.__class__.__name__}: {first})") from exc
    buf = io.BytesIO()
    extra = json.dumps(export_metadata(model, meta, _pending_tokenizer(model, path)))
    with _quiet():
        torch.jit.save(traced, buf, _extra_files={TORCHSCRIPT_META: extra})
    atomic.write_bytes(path, buf.getvalue())
    try:
        _write_tokenizer(model, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata (``classes``, ``input_spec``, ``lineage`` — and ``tasks``,
    ``tokenizer`` when present — decoded from JSON). A text model's module takes ``(input_ids, attention_mask)``."""
    extra = {TORCHSCRIPT_META: ""}
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    raw = json.loads(extra[TORCHSCRIPT_META] or "{}")
    if "transferkit.classes" not in raw:
        raise ValueError(f"{path}: not exported by transferkit (no {TORCHSCRIPT_META} metadata)")
    meta = {k.removeprefix("transferkit."): v for k, v in raw.items()}
    for key in ("classes", "input_spec", "lineage", "tasks", "tokenizer"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return module.eval(), meta


# -- verification ----------------------------------------------------------------------------------------------


def _exported_runner(path: Path, fmt: str, spec: InputSpec) -> Any:
    """A function running the export at ``path`` on a batch as the PyTorch model takes it (images, or padded ids)."""
    text = spec.modality == "text"
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if text:
            def run_text(x: torch.Tensor) -> torch.Tensor:
                ids, mask = _text_inputs(x, spec)
                feed = {TEXT_INPUTS[0]: ids.numpy(), TEXT_INPUTS[1]: mask.numpy()}
                return torch.from_numpy(session.run(["logits"], feed)[0])

            return run_text
        return lambda x: torch.from_numpy(session.run(["logits"], {IMAGE_INPUT: x.numpy().astype(np.float32)})[0])
    module, _ = load_torchscript(path)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.jit.optimized_execution(False):  # no profiling passes: one-off runs, faster
            return (module(*_text_inputs(x, spec)) if text else module(x)).float()

    return run


def _argmax_equal(got: torch.Tensor, ref: torch.Tensor, heads: list[tuple[str, list[str], slice]] | None) -> bool:
    """Identical predicted classes: over all logits, or within each task's columns for a multi-task model."""
    if heads is None:
        return bool(torch.equal(got.argmax(1), ref.argmax(1)))
    return all(bool(torch.equal(got[:, sl].argmax(1), ref[:, sl].argmax(1))) for _, _, sl in heads)


def verify_export(path: str | Path, model: nn.Module, fmt: str, inputs: torch.Tensor | None = None,
                  tolerance: float = TOLERANCE, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the export at ``path`` and ``model`` on the same inputs and require ``max |Δ logits| ≤ tolerance`` and
    identical argmax (per task for a multi-task ``meta``). Images: the first image alone, then a batch of several
    (``inputs``, default :data:`VERIFY_BATCH` sampled ones). Text: :func:`sample_token_batches` (short, cut at
    ``max_length``, mixed lengths), or ``inputs`` (token ids ``(N, L)``, N ≥ 2: the first alone, then all).
    Returns the figures; on failure deletes ``path`` (and a text model's tokenizer beside it) and raises
    :class:`ExportError` with them."""
    path = Path(path)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format '{fmt}'; valid formats: {', '.join(EXPORT_FORMATS)}")
    text = _is_text(model)
    if text:
        if inputs is None:
            plan = sample_token_batches(model.input_spec)
        else:
            x = inputs.detach().cpu().long()
            if len(x) < 2:
                raise ValueError("verify_export needs at least 2 inputs (a batch of 1 and a batch of several)")
            plan = [("batch_1", x[:1]), (f"batch_{len(x)}", x)]
    else:
        x = inputs if inputs is not None else sample_batch(model.input_spec, VERIFY_BATCH, seed=1)
        x = x.detach().float().cpu().contiguous()
        if len(x) < 2:
            raise ValueError("verify_export needs at least 2 inputs (a batch of 1 and a batch of several)")
        plan = [("batch_1", x[:1]), (f"batch_{len(x)}", x)]
    heads = task_heads(meta)
    try:
        run = _exported_runner(path, fmt, model.input_spec)
        model.eval()
        batches, worst, same = {}, 0.0, True
        for name, xb in plan:
            with torch.no_grad():
                ref = model(xb).float()
            got = run(xb)
            if tuple(got.shape) != tuple(ref.shape):
                raise ExportError(f"{path}: the {fmt} export gives logits of shape {tuple(got.shape)} for {name}, "
                                  f"PyTorch {tuple(ref.shape)}")
            diff = float((got - ref).abs().max())
            agree = _argmax_equal(got, ref, heads)
            batches[name] = {"max_abs_diff": diff, "argmax_equal": agree}
            if text:
                batches[name]["shape"] = list(xb.shape)
            worst, same = max(worst, diff), same and agree
        if not worst <= tolerance or not same:  # `not <=` also catches NaN
            raise ExportError(f"{path}: the {fmt} export does not reproduce PyTorch: max |Δ logits| = {worst:.3g} "
                              f"(allowed {tolerance:g}), argmax identical{' per task' if heads else ''}: {same} "
                              f"({', '.join(f'{k}: {v}' for k, v in batches.items())}); the file was deleted")
    except BaseException:
        path.unlink(missing_ok=True)
        if text:
            tokenizer_path(path).unlink(missing_ok=True)
        raise
    return {"max_abs_diff": worst, "argmax_equal": same, "tolerance": tolerance, "batches": batches}
