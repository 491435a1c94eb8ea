"""Running a trained model on new images, the same way everywhere: batch prediction, export checks, the service.

* :func:`decode_image` (from :mod:`transferkit.data.images`, where file loading uses it too) — bytes →
  ``uint8`` array, refusing non-images, truncated files and decompression bombs
  (more than ``max_pixels`` pixels) with a :class:`BadImage` that says which.
* :func:`image_size` — the width and height an image's header claims, read without decoding it (PIL opens
  lazily): what the service's pixel budgets are checked against before any decoding.
* :func:`decode_to_size` — :func:`decode_image` for a model of input size ``(H, W)``: an image far larger than
  that (≥ 4× on an axis) is reduced while it is decoded (JPEG: DCT scaling via ``draft``; others: an integer box
  filter right after loading), never below twice the input size, so memory stays small and the final (training)
  resize still does the real work; a ``check`` callback, called between the steps and on every read of the
  compressed data, can cancel a decode.
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

import io
import json
import re
from collections.abc import Callable, Sequence
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
DEFAULT_REQUEST_PIXELS = 128_000_000  # 32 images × 4 MP: the pixels one service request (or predict batch) may hold
_OBJECT_NAME = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")  # PIL names the in-memory buffer in messages


class _CheckedBytes(io.BytesIO):
    """In-memory image bytes whose every read first calls ``check`` (which may raise to cancel a decode)."""

    def __init__(self, data: bytes, check: Callable[[], None]) -> None:
        super().__init__(data)
        self._check = check

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        return super().read(size)


def _bad(name: str, exc: BaseException) -> BadImage:
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return BadImage(f"{name}: refused as a decompression bomb ({exc})")
    return BadImage(f"{name}: not a readable image ({exc.__class__.__name__}: {_OBJECT_NAME.sub('', str(exc))})")


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """``(width, height)`` as the image's header claims it, without decoding the pixels; :class:`BadImage` when
    ``data`` is empty or no image format PIL knows."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad(name, exc) from None


def _nothing() -> None:
    return None


def decode_to_size(data: bytes, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   size: Sequence[int] | None = None, check: Callable[[], None] | None = None) -> np.ndarray:
    """:func:`decode_image` (same checks, errors and ``uint8`` (H, W) / (H, W, 3) result) for a model whose input
    is ``size`` = ``(H, W)``: an image at least four times that size on an axis is reduced while it is decoded,
    to between 2× and 4× ``size`` on that axis — JPEG by decoding at 1/2, 1/4 or 1/8 scale (``draft``), any format by
    an integer box filter (``reduce``) right after loading — so that a large image costs little memory after its
    decode and the final antialiased resize (:func:`preprocess`, as in training) still works from ≥ 2× the input.
    ``size=None``: no reduction (a model that takes the native size).

    ``check`` is called before each step and on every read of the compressed data; an exception it raises
    (a cancelled or timed-out request) propagates unchanged, so a decode stops within one block of input.
    """
    from PIL import Image, UnidentifiedImageError

    step = check or _nothing
    if not data:
        raise BadImage(f"{name}: empty file")
    try:
        with Image.open(_CheckedBytes(data, step)) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadImage(f"{name}: {w}×{h} = {w * h:,} pixels is more than the limit of {max_pixels:,} "
                               "(a decompression bomb?)")
            target = (2 * int(size[1]), 2 * int(size[0])) if size else None  # PIL sizes are (W, H)
            if target and w >= 2 * target[0] and h >= 2 * target[1]:
                im.draft(None, target)  # JPEG: decode at a reduced scale, never below target; others: no-op
            step()
            im.load()
            step()
            out = im
            if out.mode not in ("L", "RGB"):
                out = out.convert("RGB") if out.mode not in ("I", "I;16", "F", "1") else out.convert("L")
                step()
            if target:
                fx, fy = max(1, out.width // target[0]), max(1, out.height // target[1])
                if fx > 1 or fy > 1:
                    out = out.reduce((fx, fy))
                    step()
            return np.array(out, dtype=np.uint8)
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad(name, exc) from None
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
