"""Running a trained model on new images, the same way everywhere: batch prediction, export checks, the service.

* :func:`decode_image` (from :mod:`transferkit.data.images`, where file loading uses it too) — bytes →
  ``uint8`` array, refusing non-images, truncated files and decompression bombs
  (more than ``max_pixels`` pixels) with a :class:`BadImage` that says which.
* :func:`preprocess` — decoded images → the float batch ``(N, C, H, W)`` a model's :class:`InputSpec` asks for
  (channel conversion, antialiased resize, scaling to [0, 1], per-channel normalisation) — the same code path as
  training (:func:`transferkit.data.prepare.prepare_images`).
* :class:`Predictor` — classes, input spec and ``logits(batch)``; :class:`TorchPredictor` runs a bundle with
  PyTorch, :class:`OnnxPredictor` an exported ``model.onnx`` with ONNX Runtime (its preprocessing and classes
  read from the ONNX metadata written by :mod:`transferkit.exporting`).
* :func:`top_k_rows` — probabilities → ``{"predicted_class", "probability", "top": [...]}`` rows.

ONNX metadata contract (``model.metadata_props``): ``transferkit.classes`` (JSON list), ``transferkit.input_spec``
(JSON: modality, channels, size, mean, std), ``transferkit.preprocessing`` (the steps in words),
``transferkit.lineage`` (JSON), ``transferkit.format`` ("1"). Input ``images``: float32 ``(N, C, H, W)``,
already preprocessed; output ``logits``: ``(N, num_classes)``; the batch axis is dynamic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from transferkit.backbones.base import InputSpec
from transferkit.data.base import ImageSet
from transferkit.data.images import DEFAULT_MAX_PIXELS, BadImage, decode_image  # noqa: F401  (part of this API)
from transferkit.data.prepare import TensorBatches, prepare_images
from transferkit.data.tokens import encode_texts, length_batches

ONNX_FORMAT = "1"
META_KEYS = ("transferkit.classes", "transferkit.input_spec", "transferkit.preprocessing", "transferkit.lineage",
             "transferkit.format")


def spec_channels_ok(images: Sequence[np.ndarray], spec: InputSpec, convert_channels: bool,
                     names: Sequence[str] | None = None) -> None:
    """Refuse colour images for a greyscale model unless ``convert_channels`` (converting loses colour)."""
    if convert_channels:
        return
    for i, im in enumerate(images):
        if im.ndim == 3 and im.shape[-1] > spec.channels:
            who = names[i] if names else f"image {i}"
            raise BadImage(f"{who} has colour channels but the model expects {spec.channels}; pass "
                           "--convert-channels (convert_channels=True) to convert colour images to greyscale")


def preprocess(images: Sequence[np.ndarray], spec: InputSpec) -> torch.Tensor:
    """Decoded images → the normalised float batch ``(N, C, H, W)`` the model takes."""
    if not images:
        return torch.empty(0, spec.channels, *(spec.size or (1, 1)))
    ds = ImageSet(list(images), np.zeros(len(images), np.int64), ["?"], "predict")
    x = prepare_images(ds, spec)
    return TensorBatches(x, None, spec.mean, spec.std).__getitems__(list(range(len(images))))


def preprocessing_text(spec: InputSpec) -> str:
    """The preprocessing in words, for people reading an exported model's metadata."""
    size = f"{spec.size[0]}×{spec.size[1]}" if spec.size else "the native size"
    return (f"decode to uint8; convert to {spec.channels} channel(s) (grey→RGB by repetition, RGB→grey by ITU-R 601 "
            f"luma); resize to {size} (bilinear, antialiased); scale to [0, 1]; subtract mean {list(spec.mean)} and "
            f"divide by std {list(spec.std)} per channel; layout float32 (N, C, H, W)")


class Predictor(Protocol):
    classes: list[str]
    input_spec: InputSpec

    def logits(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TorchPredictor:
    """A bundle (or run directory) run with PyTorch in eval and inference mode."""

    model: torch.nn.Module
    classes: list[str]
    input_spec: InputSpec
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> TorchPredictor:
        from transferkit.bundle import load_bundle

        model, meta = load_bundle(path)
        model.eval()
        classes = list(meta.get("classes") or [str(i) for i in range(model.num_classes)])
        return cls(model, classes, model.input_spec, meta)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch).float()


@dataclass
class OnnxPredictor:
    """An exported ``model.onnx`` run with ONNX Runtime (CPU); preprocessing and classes from its metadata."""

    session: Any
    classes: list[str]
    input_spec: InputSpec
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxPredictor:
        import onnxruntime as ort

        path = Path(path)
        if path.is_dir():
            path = path / "model.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ONNX model here (transferkit export BUNDLE --format onnx writes one)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
        missing = [k for k in ("transferkit.classes", "transferkit.input_spec") if k not in props]
        if missing:
            raise ValueError(f"{path}: not exported by transferkit (metadata {missing} missing)")
        spec = json.loads(props["transferkit.input_spec"])
        spec = InputSpec(modality=spec.get("modality", "image"), channels=int(spec["channels"]),
                         size=tuple(spec["size"]) if spec.get("size") else None, mean=tuple(spec["mean"]),
                         std=tuple(spec["std"]))
        meta = {"classes": json.loads(props["transferkit.classes"]),
                "lineage": json.loads(props.get("transferkit.lineage", "null")),
                "preprocessing": props.get("transferkit.preprocessing")}
        return cls(session, list(meta["classes"]), spec, meta)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["logits"], {"images": batch.detach().cpu().numpy().astype(np.float32, copy=False)})
        return torch.from_numpy(out[0])


def load_predictor(path: str | Path, backend: str = "torch") -> TorchPredictor | OnnxPredictor:
    """``backend="torch"``: a bundle/run directory; ``"onnx"``: a ``model.onnx`` (or a folder holding one)."""
    if backend == "torch":
        return TorchPredictor.load(path)
    if backend == "onnx":
        return OnnxPredictor.load(path)
    raise ValueError(f"--backend: unknown '{backend}'; valid choices: torch, onnx")


def top_k_rows(probs: torch.Tensor, classes: Sequence[str], top_k: int = 1) -> list[dict[str, Any]]:
    """One row per image: ``predicted_class``, ``probability`` and ``top`` = [{class, index, probability}, …]."""
    k = max(1, min(top_k, len(classes)))
    top_p, top_i = probs.topk(k, dim=1)
    rows = []
    for ps, idx in zip(top_p.tolist(), top_i.tolist(), strict=True):
        rows.append({"predicted_class": classes[idx[0]], "probability": round(ps[0], 6),
                     "top": [{"class": classes[i], "index": i, "probability": round(p, 6)}
                             for i, p in zip(idx, ps, strict=True)]})
    return rows


def task_heads(meta: dict[str, Any] | None) -> list[tuple[str, list[str], slice]] | None:
    """``[(task, classes, logit columns)]`` of a multi-task bundle (``tasks`` in its JSON), ``None`` otherwise."""
    tasks = (meta or {}).get("tasks")
    if not tasks:
        return None
    return [(t["name"], list(t["classes"]), slice(int(t["start"]), int(t["stop"]))) for t in tasks]


def prediction_rows(predictor: Predictor, logits: torch.Tensor, top_k: int = 1) -> list[dict[str, Any]]:
    """Rows of :func:`top_k_rows` from logits; a multi-task model gives ``{"tasks": {task: row}}`` per input, each
    task's probabilities a softmax over its own classes."""
    heads = task_heads(getattr(predictor, "meta", None))
    if heads is None:
        return top_k_rows(torch.softmax(logits, 1), predictor.classes, top_k)
    per = {name: top_k_rows(torch.softmax(logits[:, sl], 1), classes, top_k) for name, classes, sl in heads}
    return [{"tasks": {name: rows[i] for name, rows in per.items()}} for i in range(len(logits))]


def predict_texts(predictor: Predictor, texts: Sequence[str], top_k: int = 1) -> list[dict[str, Any]]:
    """Texts → prediction rows, for a text model (tokenised with the model's tokenizer, truncated to its
    ``max_length``; the rows keep the order of ``texts``)."""
    if not texts:
        return []
    if predictor.input_spec.modality != "text":
        raise ValueError("this model takes images, not texts")
    ids, lengths, _ = encode_texts(texts, predictor.input_spec, "predict")
    logits = torch.empty(len(texts), len(predictor.classes))
    for idx in length_batches(lengths, 64):  # similar lengths per batch: less padding
        logits[idx] = predictor.logits(ids[idx])
    return prediction_rows(predictor, logits, top_k)


def predict_batch(predictor: Predictor, images: Sequence[np.ndarray], top_k: int = 1) -> list[dict[str, Any]]:
    """Decoded images → prediction rows (preprocessing from the predictor's input spec)."""
    if not images:
        return []
    return prediction_rows(predictor, predictor.logits(preprocess(images, predictor.input_spec)), top_k)
