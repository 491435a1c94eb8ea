"""Running a trained model on new images, the same way everywhere: batch prediction, export checks, the service.

* :func:`decode_image` (from :mod:`transferkit.data.decode`, where file loading uses it too) — bytes →
  ``uint8`` array, refusing non-images, truncated files and decompression bombs
  (more than ``max_pixels`` pixels) with a :class:`BadImage` that says which.
* :func:`image_size` — the width and height an image's header claims, read without decoding it (PIL opens
  lazily): what the service's pixel budgets are checked against before any decoding.
* :func:`decode_to_size` — :func:`decode_image` for a model with an input spec (or a bare input size ``(H, W)``): an
  image far larger than what the evaluation transform resizes it to (≥ 4× on both axes) is reduced while it is
  decoded (JPEG: DCT scaling via ``draft``; others: an integer box filter right after loading), never below twice
  that resize size (for ``shorter_crop`` the shorter-side resize before the crop, the aspect ratio kept), so
  memory stays small and the final (training) resize still does the real work;
  a ``check`` callback, called between the steps and on every read of the
  compressed data, can cancel a decode.
* :func:`preprocess` — decoded images → the float batch ``(N, C, H, W)`` a model's :class:`InputSpec` asks for
  (channel conversion, the evaluation transform — ``squash`` or resize-shorter-side-and-centre-crop, see
  :mod:`transferkit.data.resize` —, scaling to [0, 1], per-channel normalisation) — the same code path as
  training and evaluation (:func:`transferkit.data.prepare.prepare_images`).
* :class:`Predictor` — classes, input spec and ``logits(batch)``; :class:`TorchPredictor` runs a bundle with
  PyTorch, :class:`OnnxPredictor` an exported ``model.onnx`` with ONNX Runtime (its preprocessing and classes
  read from the ONNX metadata written by :mod:`transferkit.exporting`).
* :func:`top_k_rows` — probabilities → ``{"predicted_class", "probability", "top": [...]}`` rows.

ONNX metadata contract (``model.metadata_props``): ``transferkit.classes`` (JSON list), ``transferkit.input_spec``
(JSON: modality, channels, size, mean, std, resize, crop_pct, interpolation — the last three absent from models
exported before they existed, meaning squash, 1.0, bilinear), ``transferkit.preprocessing`` (the steps in words,
enough to reproduce them: e.g. "resize … so that the shorter side is 256 …, then take the centre 224×224 crop"),
``transferkit.lineage`` (JSON), ``transferkit.format`` ("1"). Input ``images``: float32 ``(N, C, H, W)``,
already preprocessed; output ``logits``: ``(N, num_classes)``; the batch axis is dynamic.

A **text** model's export (``modality`` "text" in ``transferkit.input_spec``, whose ``extra`` holds ``max_length``,
``pad_id``, ``pooling``, ``normalize``) takes ``input_ids`` int64 ``(N, L)`` — the texts tokenised by the tokenizer
shipped beside it, truncated to ``max_length`` tokens (special tokens included), padded with ``pad_id`` — and
``attention_mask`` int64 ``(N, L)`` (1 = token, 0 = padding); both axes are dynamic. ``transferkit.tokenizer`` (JSON
``{"file", "sha256"}``) names that ``tokenizer.json`` (the ``tokenizers`` library's format, read with
``tokenizers.Tokenizer.from_file``) and its hash. A **multi-task** model's export has ``transferkit.tasks`` (JSON
``[{"name", "classes", "start", "stop"}]``): its ``logits`` are the tasks' logits side by side, task ``t`` in
columns ``start:stop`` (a softmax per task); ``transferkit.classes`` then lists ``task:class`` for every column.
Only image and text models exist (:data:`SUPPORTED_MODALITIES`); any other modality is refused by name.
"""

from __future__ import annotations

import dataclasses
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
from transferkit.data.decode import DEFAULT_MAX_PIXELS, BadImage, decode_image  # noqa: F401  (part of this API)
from transferkit.data.prepare import TensorBatches, prepare_images
from transferkit.data.resize import describe_resize, resized_shape
from transferkit.data.tokens import encode_texts, length_batches
from transferkit.errors import ConfigError

ONNX_FORMAT = "1"
SUPPORTED_MODALITIES = ("image", "text")  # what export, predict --backend onnx and serve take
IMAGE_INPUT = "images"
TEXT_INPUTS = ("input_ids", "attention_mask")
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


def _decode_target(size: Sequence[int] | InputSpec | None, w: int, h: int) -> tuple[tuple[int, int] | None, bool]:
    """``((W, H) twice the size a w × h image is resized to, or None), whether to keep the aspect ratio)``."""
    if size is None:
        return None, False
    if isinstance(size, InputSpec):
        if not size.size:
            return None, False
        if size.resize == "shorter_crop":
            rh, rw = resized_shape(h, w, (int(size.size[0]), int(size.size[1])), size.crop_pct)
            return (2 * rw, 2 * rh), True
        size = size.size
    return (2 * int(size[1]), 2 * int(size[0])), False  # PIL sizes are (W, H)


def decode_to_size(data: bytes, name: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                   size: Sequence[int] | InputSpec | None = None,
                   check: Callable[[], None] | None = None) -> np.ndarray:
    """:func:`decode_image` (same checks, errors and ``uint8`` (H, W) / (H, W, 3) result) for a model with input spec
    ``size`` (or a bare input size ``(H, W)``, taken as a ``squash`` resize): an image at least four times the
    size the evaluation transform resizes it to, on both axes, is reduced while it is decoded, to between 2× and
    4× that resize size — JPEG by decoding at 1/2, 1/4 or 1/8 scale (``draft``), any format by an integer box filter
    (``reduce``) right after loading — so that a large image costs little memory after its decode and the final
    antialiased resize (:func:`preprocess`, as in training) still works from ≥ 2× its output. The resize size is
    the input size for ``squash`` (each axis reduced on its own) and, for ``shorter_crop``, the shape before the
    centre crop (shorter side ``floor(size / crop_pct)``; one factor for both axes, so the aspect ratio and the
    crop stay as without the reduction, up to a pixel of rounding). ``size=None``: no reduction (native size).

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
            target, uniform = _decode_target(size, w, h)
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
                if uniform:  # shorter_crop: keep the aspect ratio the shorter-side resize relies on
                    target, _ = _decode_target(size, out.width, out.height)
                fx, fy = max(1, out.width // target[0]), max(1, out.height // target[1])
                if uniform:
                    fx = fy = min(fx, fy)
                if fx > 1 or fy > 1:
                    out = out.reduce((fx, fy))
                    step()
            return np.array(out, dtype=np.uint8)
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _bad(name, exc) from None
META_KEYS = ("transferkit.classes", "transferkit.input_spec", "transferkit.preprocessing", "transferkit.lineage",
             "transferkit.format")  # always there; text exports add transferkit.tokenizer, multi-task transferkit.tasks


def check_modality(modality: str, what: str) -> None:
    """Refuse a model of a modality this version cannot run (audio models do not exist yet): a ``ValueError`` that
    names the modality and the supported ones."""
    if modality not in SUPPORTED_MODALITIES:
        raise ValueError(f"{what}: a model of modality '{modality}'; this version supports "
                         f"{' and '.join(SUPPORTED_MODALITIES)} models only (audio models do not exist yet)")


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
    """The preprocessing in words, for people reading an exported model's metadata (and ``GET /model``): enough to
    reproduce it, the evaluation transform included (:func:`~transferkit.data.resize.describe_resize`)."""
    if spec.modality == "text":
        extra = spec.extra or {}
        return (f"tokenise each text with the tokenizer (tokenizer.json, the tokenizers library's format), special "
                f"tokens added; truncate to {extra.get('max_length')} tokens; pad the batch to its longest text with "
                f"pad id {extra.get('pad_id')}; input_ids int64 (N, L) and attention_mask int64 (N, L) (1 = token, "
                f"0 = padding); the model pools the tokens ({extra.get('pooling', 'mean')}"
                f"{', L2-normalised' if extra.get('normalize', True) else ''}) itself")
    return (f"decode to uint8; convert to {spec.channels} channel(s) (grey→RGB by repetition, RGB→grey by ITU-R 601 "
            f"luma); {describe_resize(spec)}; scale to [0, 1]; subtract mean {list(spec.mean)} and "
            f"divide by std {list(spec.std)} per channel; layout float32 (N, C, H, W)")


def spec_from_metadata(text: str, where: str = "transferkit.input_spec") -> InputSpec:
    """The :class:`InputSpec` of an export's ``transferkit.input_spec`` JSON (the contract's fields; an export made
    before ``resize``/``crop_pct``/``interpolation`` existed means squash, 1.0, bilinear); ``ValueError`` names a
    bad field (checked as a bundle's spec is)."""
    d = json.loads(text)
    keys = ("modality", "channels", "size", "mean", "std", "resize", "crop_pct", "interpolation", "extra")
    d = {k: d[k] for k in keys if isinstance(d, dict) and k in d}
    InputSpec.validate_dict(d, where)
    return InputSpec.from_dict(d)


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
    """An exported ``model.onnx`` run with ONNX Runtime (CPU); preprocessing and classes from its metadata — for a
    text model also the tokenizer beside it (checked against the hash the export recorded), for a multi-task model
    its ``tasks``."""

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
        try:
            modality = json.loads(props["transferkit.input_spec"]).get("modality", "image")
        except (ValueError, AttributeError):
            modality = "?"
        check_modality(str(modality), str(path))
        spec = spec_from_metadata(props["transferkit.input_spec"], f"{path}: transferkit.input_spec")
        meta = {"classes": json.loads(props["transferkit.classes"]),
                "lineage": json.loads(props.get("transferkit.lineage", "null")),
                "preprocessing": props.get("transferkit.preprocessing")}
        if "transferkit.tasks" in props:
            from transferkit.bundle import validate_tasks

            meta["tasks"] = json.loads(props["transferkit.tasks"])
            validate_tasks(meta["tasks"], len(meta["classes"]), f"{path}: transferkit.tasks")
        if spec.modality == "text":
            spec = dataclasses.replace(spec, tokenizer=_export_tokenizer(path, props))
        return cls(session, list(meta["classes"]), spec, meta)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a preprocessed image batch, or (text) of token ids ``(N, L)`` padded with the pad id (the
        attention mask is ``ids != pad_id``, as :class:`~transferkit.backbones.text.TextEncoder` makes it)."""
        if self.input_spec.modality == "text":
            ids = batch.detach().cpu().numpy().astype(np.int64, copy=False)
            mask = (ids != int(self.input_spec.extra.get("pad_id", 0))).astype(np.int64)
            out = self.session.run(["logits"], {TEXT_INPUTS[0]: ids, TEXT_INPUTS[1]: mask})
        else:
            out = self.session.run(["logits"], {IMAGE_INPUT: batch.detach().cpu().numpy().astype(np.float32,
                                                                                                 copy=False)})
        return torch.from_numpy(out[0])


def _export_tokenizer(path: Path, props: dict[str, str]) -> Any:
    """The tokenizer a text export names in ``transferkit.tokenizer`` — a file beside the model (a bare file name,
    never a path elsewhere), read as untrusted input and checked against the recorded sha256."""
    from transferkit.bundle import read_tokenizer

    try:
        info = json.loads(props["transferkit.tokenizer"])
        name, digest = info["file"], info["sha256"]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"{path}: a text model's export must name its tokenizer in the metadata "
                         "transferkit.tokenizer (JSON: file, sha256); export it again") from None
    if not (isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..")
            and isinstance(digest, str)):
        raise ValueError(f"{path}: transferkit.tokenizer.file must be a file name beside the model, got {name!r}"[:300])
    file = path.parent / name
    if not file.exists() and not file.is_symlink():
        raise FileNotFoundError(f"{file}: missing; a text model's ONNX export needs the tokenizer it was exported with "
                                f"beside it (transferkit export writes {name} next to {path.name})")
    return read_tokenizer(file, digest)


def load_predictor(path: str | Path, backend: str = "torch") -> TorchPredictor | OnnxPredictor:
    """``backend="torch"``: a bundle/run directory; ``"onnx"``: a ``model.onnx`` (or a folder holding one)."""
    if backend == "torch":
        return TorchPredictor.load(path)
    if backend == "onnx":
        return OnnxPredictor.load(path)
    raise ConfigError("backend", "one of torch, onnx", backend)


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


def select_tasks(meta: dict[str, Any] | None, names: Sequence[str] | None) -> list[str] | None:
    """The task names to answer for: ``None`` = all of them (or a single-task model). Names not among the model's
    tasks raise ``ValueError`` naming them and the valid ones; naming tasks for a single-task model is an error too."""
    if names is None:
        return None
    heads = task_heads(meta)
    if heads is None:
        raise ValueError("this model has a single task (it is not a multi-task model); leave out 'tasks'")
    valid = [name for name, _, _ in heads]
    unknown = [n for n in names if n not in valid]
    if unknown:
        shown = ", ".join(repr(str(u)[:64]) for u in unknown)
        raise ValueError(f"unknown task{'s' if len(unknown) > 1 else ''} {shown}; valid tasks: {', '.join(valid)}")
    if not names:
        raise ValueError(f"'tasks' is empty; name at least one of: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def prediction_rows(predictor: Predictor, logits: torch.Tensor, top_k: int = 1,
                    tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of :func:`top_k_rows` from logits; a multi-task model gives ``{"tasks": {task: row}}`` per input, each
    task's probabilities a softmax over its own classes (only the ``tasks`` named, in the model's order, when given:
    see :func:`select_tasks`)."""
    heads = task_heads(getattr(predictor, "meta", None))
    if heads is None:
        return top_k_rows(torch.softmax(logits, 1), predictor.classes, top_k)
    wanted = set(tasks) if tasks is not None else None
    per = {name: top_k_rows(torch.softmax(logits[:, sl], 1), classes, top_k) for name, classes, sl in heads
           if wanted is None or name in wanted}
    return [{"tasks": {name: rows[i] for name, rows in per.items()}} for i in range(len(logits))]


def text_logits(predictor: Predictor, ids: torch.Tensor, lengths: torch.Tensor,
                batch_size: int = 64) -> torch.Tensor:
    """Logits ``(N, num_classes)`` of token ids ``(N, L)`` (:func:`~transferkit.data.tokens.padded_ids`), in their
    order, run in batches of similar length (:func:`similar_length_batches`), each trimmed to its own longest text:
    on a CPU the padding a batch carries is time wasted — a batch of seven 20-token texts and one 256-token text
    costs as much as eight long ones."""
    logits = torch.empty(len(ids), len(predictor.classes))
    for idx in similar_length_batches(lengths, batch_size):
        width = max(1, int(lengths[idx].max()))
        logits[idx] = predictor.logits(ids[idx, :width]).float()
    return logits


def similar_length_batches(lengths: torch.Tensor, batch_size: int = 64, slack: int = 16) -> list[torch.Tensor]:
    """Index batches covering every item once, in length order (:func:`~transferkit.data.tokens.length_batches`),
    at most ``batch_size`` each, a new batch starting where a text is longer than twice the batch's shortest and
    more than ``slack`` tokens longer: padding then at most doubles a batch's tokens (or adds ``slack`` per text)."""
    out: list[torch.Tensor] = []
    for idx in length_batches(lengths, batch_size):
        start, first = 0, int(lengths[idx[0]])
        for j in range(1, len(idx)):
            n = int(lengths[idx[j]])
            if n > max(2 * first, first + slack):
                out.append(idx[start:j])
                start, first = j, n
        out.append(idx[start:])
    return out


def predict_texts(predictor: Predictor, texts: Sequence[str], top_k: int = 1) -> list[dict[str, Any]]:
    """Texts → prediction rows, for a text model (tokenised with the model's tokenizer, truncated to its
    ``max_length``; the rows keep the order of ``texts``)."""
    if not texts:
        return []
    if predictor.input_spec.modality != "text":
        raise ValueError("this model takes images, not texts")
    ids, lengths, _ = encode_texts(texts, predictor.input_spec, "predict")
    return prediction_rows(predictor, text_logits(predictor, ids, lengths), top_k)


def predict_batch(predictor: Predictor, images: Sequence[np.ndarray], top_k: int = 1) -> list[dict[str, Any]]:
    """Decoded images → prediction rows (preprocessing from the predictor's input spec)."""
    if not images:
        return []
    return prediction_rows(predictor, predictor.logits(preprocess(images, predictor.input_spec)), top_k)
