"""The HTTP inference service behind ``transferkit serve``: a FastAPI app around one loaded :class:`Predictor`.

Endpoints (see ``/docs`` for the OpenAPI page):

* ``GET /health`` — ``{"status": "ok"}``; never needs the API key (for load balancers and probes).
* ``GET /model`` — classes, lineage, input spec, preprocessing, backend and the service limits.
* ``POST /predict`` — one or more images as ``multipart/form-data`` (any file field name; ``files`` by convention)
  or as ``application/json`` ``{"images": ["<base64>", ...], "top_k": 3}`` (an item may also be
  ``{"name": ..., "data": "<base64>"}``; a ``data:image/...;base64,`` prefix is accepted). ``top_k`` may also be a
  query parameter, which wins over the body.

Every error is JSON ``{"error": "<short code>", "detail": "<message>"}``:

====  ======================================================================================================
400   malformed JSON, bad base64, a malformed multipart body, no images, an invalid ``top_k``
401   API key missing or wrong (only when the service has one)
404   unknown path; 405: wrong method
408   decoding the images took longer than ``decode_timeout_s``
413   body larger than ``max_upload_bytes`` (by Content-Length or by the bytes actually sent) or more than
      ``max_images`` images
415   any content type other than multipart/form-data or application/json
422   an image that cannot be used — not an image, truncated, or more pixels than ``max_pixels`` (a possible
      decompression bomb, code ``image_too_large``); the whole request fails and the detail names the image
500   an unexpected failure inside the model (the service keeps serving)
====  ======================================================================================================

Design choices, and why:

* A request with one bad image fails as a whole (422 naming it): the client learns exactly which input is wrong,
  and the response never mixes predictions with holes.
* Colour images sent to a greyscale model (and grey images to an RGB model) are converted, the same way
  training converts them (ITU-R 601 luma / channel repetition): a service should accept the photos people have.
* Decoding runs in a worker thread under ``asyncio.wait_for``; on a timeout the request gets 408 at once (the
  worker thread finishes its decode in the background — Python cannot kill a thread — but its result is dropped).
* Model calls run in the thread pool behind a semaphore of ``max_concurrent_predictions`` (default 1), so a burst
  of requests queues instead of oversubscribing torch's intra-op threads; the event loop stays free to answer
  ``/health`` and to reject bad requests meanwhile.
* ``/docs``, ``/redoc`` and ``/openapi.json`` stay open even with an API key: they describe the API, not the model,
  and a browser cannot send the header (the docs page has an *Authorize* button for ``X-API-Key``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from transferkit.inference import DEFAULT_MAX_PIXELS, BadImage, Predictor, decode_image, predict_batch

API_KEY_HEADER = "X-API-Key"
logger = logging.getLogger(__name__)
Decoder = Callable[[bytes, str, int], np.ndarray]


@dataclass
class ServiceLimits:
    """What one request may ask of the service; anything beyond is refused with a 4xx before it costs much."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_images: int = 32
    decode_timeout_s: float = 5.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_top_k: int = 100
    max_concurrent_predictions: int = 1


class ServiceError(Exception):
    """A refused request: HTTP ``status``, a short machine-readable ``code`` and a ``detail`` for people."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def _install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own included, the same ``{"error", "detail"}`` JSON shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": API_KEY_HEADER} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(400, "bad_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"{exc.__class__.__name__}: {exc}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is (or claims to be) larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ServiceError(400, "bad_request", f"invalid Content-Length '{declared}'") from None
        if size > limit:
            raise ServiceError(413, "payload_too_large",
                               f"request body of {size:,} bytes is more than the limit of {limit:,} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ServiceError(413, "payload_too_large", f"request body is more than the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _one_chunk(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


def _too_many(n: int, limits: ServiceLimits) -> ServiceError:
    return ServiceError(413, "too_many_images", f"{n} images in one request; the limit is {limits.max_images}")


async def _multipart_images(request: Request, body: bytes,
                            limits: ServiceLimits) -> tuple[list[tuple[str, bytes]], int | None]:
    """Files of any field name, in order, and an optional ``top_k`` form field."""
    parser = MultiPartParser(request.headers, _one_chunk(body), max_files=limits.max_images + 1, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in str(exc):
            raise ServiceError(413, "too_many_images", f"more than {limits.max_images} images in one request; "
                               f"the limit is {limits.max_images}") from None
        raise ServiceError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    try:
        items: list[tuple[str, bytes]] = []
        top_k = None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((value.filename or str(len(items)), await value.read()))
            elif key == "top_k":
                top_k = _int_top_k(value)
        return items, top_k
    finally:
        await form.close()


def _int_top_k(value: object) -> int:
    if isinstance(value, bool):
        raise ServiceError(400, "bad_request", f"top_k must be a positive integer, got {value!r}")
    try:
        k = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ServiceError(400, "bad_request", f"top_k must be a positive integer, got {value!r}") from None
    if isinstance(value, float) and value != k:
        raise ServiceError(400, "bad_request", f"top_k must be a positive integer, got {value!r}")
    return k


def _b64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise ServiceError(400, "bad_request", f"{where}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, "bad_base64", f"{where}: not valid base64 ({exc})") from None


def _json_images(body: bytes, limits: ServiceLimits) -> tuple[list[tuple[str, bytes]], int | None]:
    """``{"images": [b64 | {"name", "data"}, ...], "top_k": k}`` → (name, bytes) pairs and ``top_k``."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(400, "bad_json", f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ServiceError(400, "bad_request", 'expected a JSON object {"images": ["<base64>", ...], "top_k": k}')
    images = doc["images"]
    if len(images) > limits.max_images:
        raise _too_many(len(images), limits)
    items = []
    for i, item in enumerate(images):
        if isinstance(item, dict):
            name = str(item.get("name") or i)
            items.append((name, _b64(item.get("data"), f"images[{i}].data")))
        else:
            items.append((str(i), _b64(item, f"images[{i}]")))
    top_k = _int_top_k(doc["top_k"]) if doc.get("top_k") is not None else None
    return items, top_k


def _decode_all(items: Sequence[tuple[str, bytes]], max_pixels: int, decoder: Decoder) -> list[np.ndarray]:
    return [decoder(data, name, max_pixels) for name, data in items]


def model_info(predictor: Predictor, backend_name: str, limits: ServiceLimits | None = None) -> dict[str, Any]:
    """What ``GET /model`` answers: classes, lineage, input spec, preprocessing and backend."""
    from transferkit.inference import preprocessing_text

    meta = getattr(predictor, "meta", None) or {}
    info: dict[str, Any] = {
        "backend": backend_name,
        "classes": list(predictor.classes),
        "num_classes": len(predictor.classes),
        "input_spec": predictor.input_spec.to_dict(),
        "preprocessing": meta.get("preprocessing") or preprocessing_text(predictor.input_spec),
        "lineage": meta.get("lineage"),
    }
    for key in ("strategy", "source", "metrics", "format_version"):
        if meta.get(key) is not None:
            info[key] = meta[key]
    if limits is not None:
        info["limits"] = asdict(limits)
    return info


def create_app(predictor: Predictor, limits: ServiceLimits | None = None, api_key: str | None = None,
               backend_name: str = "torch", model_name: str | None = None,
               decoder: Decoder = decode_image) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``api_key``: when given, ``/predict`` and ``/model`` need header ``X-API-Key`` equal to it (compared in
    constant time). ``decoder`` is :func:`transferkit.inference.decode_image` unless a test injects a slow one.
    """
    from transferkit import __version__

    limits = limits or ServiceLimits()
    model_name = model_name or "model"
    info = model_info(predictor, backend_name, limits)
    semaphore = asyncio.Semaphore(max(1, limits.max_concurrent_predictions))
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="the service's API key (only when it was started with one)")

    async def check_key(key: str | None = Depends(key_header)) -> None:
        if api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise ServiceError(401, "unauthorized", f"missing or wrong {API_KEY_HEADER} header")

    protected = [Depends(check_key)] if api_key else []
    app = FastAPI(title="transferkit inference service", version=__version__,
                  description=f"Image classification with a transferkit model ({backend_name} backend). "
                              "Errors are JSON {\"error\": code, \"detail\": message}.")
    _install_error_handlers(app)

    @app.get("/health", summary="liveness probe (no API key needed)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="classes, lineage, input spec and backend", dependencies=protected)
    async def model() -> dict[str, Any]:
        return info

    @app.post("/predict", summary="classify one or more images (multipart files or JSON base64)",
              dependencies=protected,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                      "top_k": {"type": "integer"}}}},
                  "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
                      "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                      "top_k": {"type": "integer"}}}}}}})
    async def predict(request: Request,
                      top_k: int | None = Query(None, ge=1, description="most probable classes to list")) -> Any:
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("multipart/form-data", "application/json"):
            raise ServiceError(415, "unsupported_media_type",
                               f"content type '{ctype or 'none'}' is not accepted; send multipart/form-data files "
                               "or application/json {\"images\": [base64, ...]}")
        body = await _read_body(request, limits.max_upload_bytes)
        if ctype == "multipart/form-data":
            items, body_k = await _multipart_images(request, body, limits)
        else:
            items, body_k = _json_images(body, limits)
        if not items:
            raise ServiceError(400, "no_images", "the request holds no images")
        if len(items) > limits.max_images:
            raise _too_many(len(items), limits)
        k = top_k if top_k is not None else (body_k if body_k is not None else 1)
        if not 1 <= k <= limits.max_top_k:
            raise ServiceError(400, "bad_request", f"top_k must be between 1 and {limits.max_top_k}, got {k}")
        try:
            images = await asyncio.wait_for(asyncio.to_thread(_decode_all, items, limits.max_pixels, decoder),
                                            limits.decode_timeout_s)
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
            raise ServiceError(408, "decode_timeout", f"decoding {len(items)} image(s) took longer than "
                               f"{limits.decode_timeout_s:g} s") from None
        except BadImage as exc:
            code = "image_too_large" if "decompression bomb" in str(exc) else "bad_image"
            raise ServiceError(422, code, str(exc)) from None
        try:
            async with semaphore:
                rows = await run_in_threadpool(predict_batch, predictor, images, k)
        except Exception as exc:  # answered here, so the connection and the server carry on normally
            logger.exception("prediction failed")
            raise ServiceError(500, "internal_error", f"prediction failed: {exc.__class__.__name__}: {exc}") from None
        predictions = [{"index": i, "name": name, **row} for i, ((name, _), row) in enumerate(zip(items, rows,
                                                                                                strict=True))]
        return {"predictions": predictions, "model": {"name": model_name, "backend": backend_name},
                "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

    return app
