"""One batch of :func:`~transferkit.api.use.predict`'s inputs → its rows, in order: images decoded for the model with
the pixels held at once bounded, predicted together (one odd image does not cost the others), and texts; an input
that cannot be predicted gets an error row in its place (or, ``strict``, stops the run). ``decode_to_size`` and
``predict_batch`` are looked up in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.api.predict_inputs import PredictInput
from transferkit.inference import (
    DEFAULT_REQUEST_PIXELS,
    BadImage,
    InputSpec,
    Predictor,
    decode_to_size,
    predict_batch,
    predict_texts,
    spec_channels_ok,
)
from transferkit.report.predictions import error_row, prediction_row


def _read_image(item: PredictInput, max_pixels: int, size: Sequence[int] | InputSpec | None = None) -> np.ndarray:
    """The image of ``item``, decoded for a model of input spec (or size) ``size`` (a large image is reduced while
    decoding, so a batch of them stays small: :func:`transferkit.inference.decode_to_size`)."""
    if item.error is not None or item.file is None:
        raise BadImage(item.error or f"{item.path}: no such file")
    try:
        data = item.file.read_bytes()
    except OSError as exc:
        raise BadImage(f"{item.path}: cannot be read ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    return decode_to_size(data, item.path, max_pixels, size)


def predict_image_chunk(predictor: Predictor, items: list[PredictInput], k: int, strict: bool, convert_channels: bool,
                        max_pixels: int, fields: list[str]) -> list[dict[str, Any]]:
    """Decode and predict one batch; rows in the order of ``items`` (errors in place, unless ``strict``). The
    decoded images held at once stay under ``DEFAULT_REQUEST_PIXELS`` (a sub-batch is predicted when the next image
    would pass it), whatever their sizes."""
    rows: list[dict[str, Any] | None] = [None] * len(items)
    images: list[np.ndarray] = []
    slots: list[int] = []
    held = 0  # decoded pixels in images
    for i, item in enumerate(items):
        try:
            im = _read_image(item, max_pixels, predictor.input_spec)
            spec_channels_ok([im], predictor.input_spec, convert_channels, [item.path])
        except BadImage as exc:
            if strict:
                raise
            rows[i] = error_row(item.path, str(exc), fields)
            continue
        if images and held + im.shape[0] * im.shape[1] > DEFAULT_REQUEST_PIXELS:
            _predict_images(predictor, items, images, slots, rows, k, strict, fields)
            images, slots, held = [], [], 0
        images.append(im)
        slots.append(i)
        held += im.shape[0] * im.shape[1]
    _predict_images(predictor, items, images, slots, rows, k, strict, fields)
    return [r for r in rows if r is not None]


def _predict_images(predictor: Predictor, items: list[PredictInput], images: list[np.ndarray], slots: list[int],
                    rows: list[dict[str, Any] | None], k: int, strict: bool, fields: list[str]) -> None:
    """Predict decoded ``images`` (of ``items[slots]``) into ``rows``; one odd image does not cost the others."""
    if not images:
        return
    try:
        preds: list[dict[str, Any] | str] = list(predict_batch(predictor, images, k))
    except (ValueError, RuntimeError) as exc:
        if strict or len(images) < 2:
            if strict:
                raise
            preds = [f"cannot be predicted ({exc.__class__.__name__}: {exc})"] * len(images)
        else:  # one odd image should not cost the whole batch: try them one by one
            preds = []
            for im in images:
                try:
                    preds.extend(predict_batch(predictor, [im], k))
                except (ValueError, RuntimeError) as one:
                    preds.append(f"cannot be predicted ({one.__class__.__name__}: {one})")
    for i, pred in zip(slots, preds, strict=True):
        path = items[i].path
        rows[i] = error_row(path, f"{path}: {pred}", fields) if isinstance(pred, str) else \
            prediction_row(path, pred)


def predict_text_chunk(predictor: Predictor, items: list[PredictInput], k: int, strict: bool,
                       fields: list[str]) -> list[dict[str, Any]]:
    """Predict one batch of texts; rows in the order of ``items`` (empty texts are error rows, unless ``strict``)."""
    rows: list[dict[str, Any] | None] = [None] * len(items)
    for i, item in enumerate(items):
        if item.error is not None:
            if strict:
                raise ValueError(item.error)
            rows[i] = error_row(item.path, item.error, fields)
    slots = [i for i, r in enumerate(rows) if r is None]
    for i, pred in zip(slots, predict_texts(predictor, [items[i].text or "" for i in slots], k), strict=True):
        rows[i] = prediction_row(items[i].path, pred)
    return [r for r in rows if r is not None]
