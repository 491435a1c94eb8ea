"""The HTTP inference service behind ``transferkit serve``: a FastAPI app around one loaded :class:`Predictor`.

Endpoints:

* ``GET /health`` — ``{"status": "ok"}``; never needs the API key (for load balancers and probes).
* ``GET /model`` — name, classes, input spec, preprocessing, backend and the service limits; the lineage (which
  holds local paths) and the test metrics only when the app was created with ``expose_lineage=True``
  (``--expose-lineage``).
* ``POST /predict`` — one or more images as ``multipart/form-data`` (any file field name; ``files`` by convention)
  or as ``application/json`` ``{"images": ["<base64>", ...], "top_k": 3}`` (an item may also be
  ``{"name": ..., "data": "<base64>"}``; a ``data:image/...;base64,`` prefix is accepted). ``top_k`` may also be a
  query parameter, which wins over the body.
  A **text** model takes ``application/json`` ``{"texts": ["...", ...], "top_k": 3}`` instead: each text is
  tokenised with the model's tokenizer; one longer than the model's ``max_length`` tokens is truncated and flagged
  (``"truncated": true`` in its prediction) or, with ``long_texts="refuse"``, refused (422 naming it and the limit).
  A **multi-task** model answers every task (``"tasks": {task: {predicted_class, probability, top}}``), or only
  those named by ``tasks`` — a JSON list or comma-separated string in the body, a ``tasks`` form field, or the
  ``tasks`` query parameter (which wins); an unknown name is a 400 naming it and the valid ones.
* ``GET /openapi.json`` — the OpenAPI description; ``/docs`` and ``/redoc`` only with ``docs=True`` (``--docs``):
  those pages load their JavaScript and CSS from a CDN, and the service is usually run offline.

Every error is JSON ``{"error": "<short code>", "detail": "<message>"}``:

====  ======================================================================================================
400   malformed JSON (also non-finite numbers, integers over Python's digit limit, too deep nesting), bad base64,
      a malformed or truncated multipart body (``bad_multipart``), no images, an invalid ``top_k``; text models:
      a body that is not UTF-8 (``bad_encoding``), no texts (``no_texts``), an item that is not a string;
      multi-task models: an unknown task name (``unknown_task``, the detail lists the valid ones)
401   API key missing or wrong (only when the service has one)
404   unknown path; 405: wrong method
408   the body did not arrive within ``body_timeout_s`` (``body_timeout``), or decoding the images took longer
      than ``decode_timeout_s`` (``decode_timeout``; the time waiting for a decode worker does not count)
413   body larger than ``max_upload_bytes`` (by Content-Length or by the bytes actually sent), more than
      ``max_images`` images, or more than ``max_request_pixels`` pixels in all (``too_many_pixels``, as the
      images' headers claim them, checked before anything is decoded); text models: more than ``max_texts``
      texts (``too_many_texts``), a text of more than ``max_text_chars`` characters (``text_too_large``)
415   any content type other than multipart/form-data or application/json
422   an image that cannot be used — not an image, truncated, or more pixels than ``max_pixels`` (a possible
      decompression bomb, code ``image_too_large``); the whole request fails and the detail names the image.
      Text models: an empty text (``empty_text``), a text with invalid Unicode such as a lone surrogate
      (``bad_text``), or — with ``long_texts="refuse"`` — a text over the model's ``max_length`` tokens
      (``text_too_long``); the detail names the text by its index
500   an unexpected failure (the service keeps serving): the body only says ``internal error; see the server
      log, id=…``; the log has the details under that id
503   the service is busy (``server_busy``, header ``Retry-After``): the pixels waiting for or being decoded
      across all requests would exceed ``max_inflight_pixels``, the bodies being received would exceed
      ``max_inflight_bytes``, or no decode worker was free within ``queue_timeout_s``
====  ======================================================================================================

Design choices, and why:

* A request with one bad image fails as a whole (422 naming it): the client learns exactly which input is wrong,
  and the response never mixes predictions with holes.
* Colour images sent to a greyscale model (and grey images to an RGB model) are converted, the same way
  training converts them (ITU-R 601 luma / channel repetition): a service should accept the photos people have.
* Cost is checked before it is paid. Every image's header is read (PIL opens lazily) and the request is refused
  when one image claims more than ``max_pixels`` or all together more than ``max_request_pixels``; an admitted
  request holds its claimed pixels from ``max_inflight_pixels`` until its decode ends, and is refused with 503 at
  once when they do not fit (no unbounded queue). A busy service therefore answers quickly instead of slowly.
* Decoding *and resizing* run in a small pool of ``decode_workers`` threads (:func:`decode_to_size`: a large image
  is reduced while it is decoded, then :func:`preprocess` makes the model's input), smallest requests first, so
  the model lock only covers the model call and memory stays near ``decode_workers`` × the largest image. The
  decode timeout starts when a worker takes the request; on a timeout the request gets 408 at once and its
  worker stops at its next step (between images, and on every block of compressed data it reads) and then
  gives its pixels back (Python cannot kill a thread; one block of a 40 MP PNG is ~0.1 s of work).
* Model calls run in the thread pool behind a semaphore of ``max_concurrent_predictions`` (default 1), so a burst
  of requests queues instead of oversubscribing torch's intra-op threads; the event loop stays free to answer
  ``/health`` and to reject bad requests meanwhile.
* Slow clients are cut off: the body must arrive within ``body_timeout_s`` (else 408 and the connection is
  closed), and :func:`guarded_h11_protocol` closes connections whose request headers do not arrive in time.
* ``/openapi.json`` (and ``/docs``, ``/redoc`` when enabled) stay open even with an API key: they describe the
  API, not the model, and a browser cannot send the header (the docs page has an *Authorize* button).

The admission machinery — :class:`ServiceLimits`, the pixel and byte budgets, the decode pool and the connection
timeouts — lives in :mod:`transferkit.admission`; ``ServiceLimits``, ``DecodeCancelled``, ``DecodePool``,
``guarded_h11_protocol`` and ``uvicorn_options`` are still importable from here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from transferkit.admission import (  # ServiceLimits, DecodeCancelled and the uvicorn helpers stay importable from here
    Budget,
    Claim,
    DecodeCancelled,
    DecodeJob,
    DecodePool,
    ServiceLimits,
    guarded_h11_protocol,  # noqa: F401  (re-exported: transferkit.serve.guarded_h11_protocol)
    uvicorn_options,  # noqa: F401  (re-exported: transferkit.serve.uvicorn_options)
)
from transferkit.data.tokens import padded_ids, truncating_tokenizer
from transferkit.inference import (
    BadImage,
    InputSpec,
    Predictor,
    check_modality,
    decode_to_size,
    image_size,
    prediction_rows,
    preprocess,
    select_tasks,
    task_heads,
    text_logits,
)

API_KEY_HEADER = "X-API-Key"
logger = logging.getLogger(__name__)
Decoder = Callable[[bytes, str, int], np.ndarray]


class ServiceError(Exception):
    """A refused request: HTTP ``status``, a short machine-readable ``code`` and a ``detail`` for people."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


CLOSE = {"Connection": "close"}  # the body was not read to its end: the connection cannot be reused
BUSY_RETRY_S = 1


def _busy(detail: str) -> ServiceError:
    return ServiceError(503, "server_busy", f"{detail}; retry in a moment",
                        {"Retry-After": str(BUSY_RETRY_S), **CLOSE})


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _internal(exc: BaseException, what: str) -> ServiceError:
    """A 500 whose body says nothing about the code; the log has the details under a short id."""
    rid = secrets.token_hex(4)
    logger.error("%s (id=%s): %s: %s", what, rid, exc.__class__.__name__, exc, exc_info=exc)
    return ServiceError(500, "internal_error", f"internal error; see the server log, id={rid}")


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def _install_error_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own included, the same ``{"error", "detail"}`` JSON shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status == 401:
            headers["WWW-Authenticate"] = API_KEY_HEADER
        return _error(exc.status, exc.code, exc.detail, headers or None)

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
        err = _internal(exc, f"{request.method} {request.url.path} failed")
        return _error(err.status, err.code, err.detail)


async def _read_body(request: Request, limits: ServiceLimits, claim: Claim) -> bytes:
    """The request body, refused with 413 as soon as it is (or claims to be) larger than the limit, with 408 when
    it does not arrive within ``body_timeout_s``, and with 503 when the bodies in flight would exceed
    ``max_inflight_bytes`` (``claim`` holds this body's share until the request ends). The bytes received count,
    not the declared length: a client that declares 20 MB and stalls holds only what it has sent."""
    limit = limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ServiceError(400, "bad_request", f"invalid Content-Length '{declared[:40]}'", CLOSE) from None
        if size > limit:
            raise ServiceError(413, "payload_too_large",
                               f"request body of {size:,} bytes is more than the limit of {limit:,} bytes", CLOSE)
    chunks: list[bytes] = []

    async def collect() -> None:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ServiceError(413, "payload_too_large", f"request body is more than the limit of {limit:,} "
                                   "bytes", CLOSE)
            if total > claim.held and not claim.grow(total - claim.held):
                raise _busy("too many request bodies in flight")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), limits.body_timeout_s)
    except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
        got = sum(map(len, chunks))
        logger.info("request body not received within %g s (%d bytes so far); connection closed",
                    limits.body_timeout_s, got)
        raise ServiceError(408, "body_timeout", f"the request body did not arrive within {limits.body_timeout_s:g} s "
                           f"({got:,} bytes received)", CLOSE) from None
    except ClientDisconnect:
        logger.info("client disconnected during the upload (%d bytes received)", sum(map(len, chunks)))
        raise ServiceError(400, "client_disconnected", "the client disconnected before the body ended",
                           CLOSE) from None
    return b"".join(chunks)


async def _one_chunk(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


def _too_many(n: int, limits: ServiceLimits) -> ServiceError:
    return ServiceError(413, "too_many_images", f"{n} images in one request; the limit is {limits.max_images}")


class _CheckedMultiPartParser(MultiPartParser):
    """Starlette's parser, noting whether the closing boundary (``--BOUNDARY--``) was seen: python-multipart
    accepts a body cut anywhere, and a part cut short would silently vanish."""

    complete = False

    def on_end(self) -> None:
        self.complete = True
        super().on_end()


async def _multipart_images(request: Request, body: bytes,
                            limits: ServiceLimits) -> tuple[list[tuple[str, bytes]], int | None, list[str] | None]:
    """Files of any field name, in order, and optional ``top_k`` and ``tasks`` form fields."""
    parser = _CheckedMultiPartParser(request.headers, _one_chunk(body), max_files=limits.max_images + 1,
                                     max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in str(exc):
            raise ServiceError(413, "too_many_images", f"more than {limits.max_images} images in one request; "
                               f"the limit is {limits.max_images}") from None
        raise ServiceError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
    try:
        if not parser.complete:
            raise ServiceError(400, "bad_multipart", "malformed multipart body: it ends before its closing "
                               "boundary (truncated?)")
        items: list[tuple[str, bytes]] = []
        top_k, tasks = None, None
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append((_name(value.filename, len(items)), await value.read()))
            elif key == "top_k":
                top_k = _int_top_k(value)
            elif key == "tasks":
                tasks = [*(tasks or []), *_task_names(value)]
        return items, top_k, tasks
    finally:
        await form.close()


def _name(value: object, index: int) -> str:
    """A client-given image name, kept short (it is echoed in answers and error messages)."""
    text = str(value) if value not in (None, "") else str(index)
    return text if len(text) <= 200 else text[:199] + "…"


def _int_top_k(value: object) -> int:
    bad = ServiceError(400, "bad_request", f"top_k must be a positive integer, got {str(value)[:40]!r}")
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise bad
    try:
        k = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if isinstance(value, float) and value != k:
        raise bad
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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _load_json(body: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, no float overflowing to inf; deep nesting or huge integers are refused too."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ServiceError(400, "bad_json", "malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit, the checks above
        raise ServiceError(400, "bad_json", f"malformed JSON: {str(exc)[:200]}") from None


def _task_names(value: object) -> list[str]:
    """``tasks`` as given: a list of names or one comma-separated string → the names (400 for anything else)."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t.strip() for t in value]
    raise ServiceError(400, "bad_request", "tasks must be a list of task names or a comma-separated string, got "
                       f"{type(value).__name__}")


def _json_images(body: bytes, limits: ServiceLimits) -> tuple[list[tuple[str, bytes]], int | None, list[str] | None]:
    """``{"images": [b64 | {"name", "data"}, ...], "top_k": k, "tasks": [...]}`` → (name, bytes) pairs, ``top_k``
    and the task names asked for."""
    doc = _load_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ServiceError(400, "bad_request", 'expected a JSON object {"images": ["<base64>", ...], "top_k": k}')
    images = doc["images"]
    if len(images) > limits.max_images:
        raise _too_many(len(images), limits)
    items = []
    for i, item in enumerate(images):
        if isinstance(item, dict):
            name = item.get("name")
            items.append((_name(name if isinstance(name, (str, int)) else None, i),
                          _b64(item.get("data"), f"images[{i}].data")))
        else:
            items.append((str(i), _b64(item, f"images[{i}]")))
    top_k = _int_top_k(doc["top_k"]) if doc.get("top_k") is not None else None
    return items, top_k, _task_names(doc["tasks"]) if doc.get("tasks") is not None else None


TEXT_BODY = '{"texts": ["...", ...], "top_k": k, "tasks": [...]}'


def _json_texts(body: bytes, limits: ServiceLimits) -> tuple[list[str], int | None, list[str] | None]:
    """``{"texts": [str, ...], "top_k": k, "tasks": [...]}`` → the texts, ``top_k`` and the task names asked for.

    The body must be UTF-8 (400 ``bad_encoding`` naming the first bad byte); at most ``max_texts`` texts (413),
    each a string (400) of at most ``max_text_chars`` characters (413), not empty or whitespace only (422), and
    valid Unicode — no lone surrogate from a ``\\ud800`` escape, which no tokenizer can read (422)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(400, "bad_encoding", f"the body is not UTF-8 text (byte 0x{body[exc.start]:02x} at offset "
                           f"{exc.start}); send the JSON encoded as UTF-8") from None
    doc = _load_json(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("texts"), list):
        raise ServiceError(400, "bad_request", f"expected a JSON object {TEXT_BODY} (this model takes texts)")
    texts = doc["texts"]
    if len(texts) > limits.max_texts:
        raise ServiceError(413, "too_many_texts", f"{len(texts)} texts in one request; the limit is "
                           f"{limits.max_texts}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ServiceError(400, "bad_request", f"texts[{i}]: expected a string, got {type(t).__name__}")
        if len(t) > limits.max_text_chars:
            raise ServiceError(413, "text_too_large", f"texts[{i}]: {len(t):,} characters; the limit is "
                               f"{limits.max_text_chars:,} per text")
        if not t.strip():
            raise ServiceError(422, "empty_text", f"texts[{i}]: empty text (nothing but whitespace)")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ServiceError(422, "bad_text", f"texts[{i}]: not valid Unicode (a lone surrogate "
                               f"U+{ord(t[exc.start]):04X} at character {exc.start})") from None
    top_k = _int_top_k(doc["top_k"]) if doc.get("top_k") is not None else None
    return texts, top_k, _task_names(doc["tasks"]) if doc.get("tasks") is not None else None


def _claimed_pixels(items: Sequence[tuple[str, bytes]], limits: ServiceLimits) -> int:
    """The pixels the images' headers claim, in all (nothing decoded); 422 for a non-image or one image over
    ``max_pixels``, 413 when the sum is over ``max_request_pixels``."""
    total = 0
    for name, data in items:
        w, h = image_size(data, name)
        if w * h > limits.max_pixels:
            raise BadImage(f"{name}: {w}×{h} = {w * h:,} pixels is more than the limit of {limits.max_pixels:,} "
                           "(a decompression bomb?)")
        total += w * h
    if total > limits.max_request_pixels:
        raise ServiceError(413, "too_many_pixels", f"the {len(items)} image(s) hold {total:,} pixels in all; the "
                           f"limit per request is {limits.max_request_pixels:,} — send fewer or smaller images")
    return total


def model_info(predictor: Predictor, backend_name: str, limits: ServiceLimits | None = None,
               expose_lineage: bool = False, model_name: str | None = None) -> dict[str, Any]:
    """What ``GET /model`` answers: name, classes, input spec, preprocessing, backend and limits; the lineage, the
    source and the metrics only with ``expose_lineage`` (they hold local paths and test results)."""
    from transferkit.inference import preprocessing_text

    meta = getattr(predictor, "meta", None) or {}
    info: dict[str, Any] = {
        "name": model_name or "model",
        "backend": backend_name,
        "classes": list(predictor.classes),
        "num_classes": len(predictor.classes),
        "input_spec": predictor.input_spec.to_dict(),
        "preprocessing": meta.get("preprocessing") or preprocessing_text(predictor.input_spec),
    }
    heads = task_heads(meta)
    if heads is not None:
        info["tasks"] = [{"name": name, "classes": classes} for name, classes, _ in heads]
    for key in ("strategy", "format_version"):
        if isinstance(meta.get(key), (str, int)):
            info[key] = meta[key]
    if expose_lineage:
        info["lineage"] = meta.get("lineage")
        for key in ("source", "metrics"):
            if meta.get(key) is not None:
                info[key] = meta[key]
    if limits is not None:
        info["limits"] = asdict(limits)
    return info


INLINE_MAX_BYTES = 64 * 1024  # with ServiceLimits.inline_max_pixels: what may be decoded on the event loop
INLINE_MAX_TEXT_CHARS = 16 * 1024  # texts this short in all are tokenised on the event loop (well under a ms)


def _never_cancelled() -> None:
    """The cancellation check of a decode run inline: it is never interrupted."""


def _default_decoder(size: Sequence[int] | InputSpec | None) -> Callable[[Callable[[], None]], Decoder]:
    def make(check: Callable[[], None]) -> Decoder:
        return lambda data, name, max_pixels: decode_to_size(data, name, max_pixels, size, check)

    return make


def create_app(predictor: Predictor, limits: ServiceLimits | None = None, api_key: str | None = None,
               backend_name: str = "torch", model_name: str | None = None,
               decoder: Decoder | None = None, expose_lineage: bool = False, docs: bool = False) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``api_key``: when given, ``/predict`` and ``/model`` need header ``X-API-Key`` equal to it (compared in
    constant time). ``decoder(data, name, max_pixels)`` replaces :func:`transferkit.inference.decode_to_size`
    (tests inject a slow one). ``expose_lineage``: ``/model`` also lists the lineage, source and metrics (local
    paths, test results). ``docs``: serve ``/docs`` and ``/redoc`` (their assets come from a CDN).
    Image and text models are served (a text model takes ``{"texts": [...]}``; see the module doc); any other
    modality is refused (``ValueError`` naming it and the supported ones).
    """
    from transferkit import __version__

    check_modality(predictor.input_spec.modality, "the HTTP service")
    is_text = predictor.input_spec.modality == "text"
    limits = limits or ServiceLimits()
    model_name = model_name or "model"
    info = model_info(predictor, backend_name, limits, expose_lineage=expose_lineage, model_name=model_name)
    semaphore = asyncio.Semaphore(max(1, limits.max_concurrent_predictions))
    pixels = Budget(limits.max_inflight_pixels)
    body_bytes = Budget(limits.max_inflight_bytes or 8 * limits.max_upload_bytes)
    pool = DecodePool(limits.decode_workers, limits.express_max_pixels)
    make_decoder = _default_decoder(predictor.input_spec) if decoder is None else (lambda check: decoder)
    spec = predictor.input_spec
    meta = getattr(predictor, "meta", None) or {}
    tokenizer, pad_id = truncating_tokenizer(spec) if is_text else (None, 0)  # a copy, never re-set: thread-safe
    max_length = int((spec.extra or {}).get("max_length", 0))
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="the service's API key (only when it was started with one)")

    async def check_key(key: str | None = Depends(key_header)) -> None:
        if api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise ServiceError(401, "unauthorized", f"missing or wrong {API_KEY_HEADER} header")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
        pool.open()
        yield
        await asyncio.to_thread(pool.close)

    protected = [Depends(check_key)] if api_key else []
    app = FastAPI(title="transferkit inference service", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  description=f"{'Text' if is_text else 'Image'} classification with a transferkit model "
                              f"({backend_name} backend). "
                              "Errors are JSON {\"error\": code, \"detail\": message}.")
    app.state.limits = limits  # start_in_thread / serve read the connection timeouts from here
    app.state.decode_pool, app.state.pixel_budget, app.state.byte_budget = pool, pixels, body_bytes
    _install_error_handlers(app)

    def decode_and_prepare(items: list[tuple[str, bytes]], check: Callable[[], None]) -> torch.Tensor:
        decode = make_decoder(check)
        images = []
        for name, data in items:
            check()
            images.append(decode(data, name, limits.max_pixels))
        check()
        try:
            return preprocess(images, spec)  # the resize happens here, in the worker, not under the model lock
        except BadImage:
            raise
        except ValueError as exc:  # e.g. images of different sizes for a model that takes the native size
            raise BadImage(str(exc)) from None

    async def decode(items: list[tuple[str, bytes]], claimed: int) -> torch.Tensor:
        if claimed <= limits.inline_max_pixels and sum(len(d) for _, d in items) <= INLINE_MAX_BYTES:
            # at most a millisecond or two of work (few pixels from few bytes): cheaper here, on the event loop,
            # than two thread hops — the usual request's latency; anything larger goes to the bounded pool
            return decode_and_prepare(items, _never_cancelled)
        claim = Claim(pixels)
        if not claim.grow(claimed):
            raise _busy(f"the images being decoded already hold {pixels.used:,} of {pixels.cap:,} pixels")
        job = DecodeJob(lambda check: decode_and_prepare(items, check), asyncio.get_running_loop(),
                        limits.decode_timeout_s, claim.release)
        pool.submit(claimed, job)
        try:
            try:
                await asyncio.wait_for(job.started, limits.queue_timeout_s)
            except (TimeoutError, asyncio.TimeoutError):
                raise _busy(f"no decode worker was free within {limits.queue_timeout_s:g} s") from None
            try:
                return await asyncio.wait_for(job.done, limits.decode_timeout_s)
            except (TimeoutError, asyncio.TimeoutError, DecodeCancelled):
                raise ServiceError(408, "decode_timeout", f"decoding {len(items)} image(s) took longer than "
                                   f"{limits.decode_timeout_s:g} s") from None
        finally:
            job.abandon()  # a no-op when it has finished; else the worker stops at its next step
            for fut in (job.started, job.done):
                fut.cancel()

    def model_rows(batch: torch.Tensor, k: int, tasks: list[str] | None) -> list[dict[str, Any]]:
        return prediction_rows(predictor, predictor.logits(batch), k, tasks)

    def text_rows(ids: torch.Tensor, lengths: torch.Tensor, k: int, tasks: list[str] | None) -> list[dict[str, Any]]:
        return prediction_rows(predictor, text_logits(predictor, ids, lengths), k, tasks)

    def chosen_tasks(query: str | None, body: list[str] | None) -> list[str] | None:
        names = _task_names(query) if query is not None else body
        if names is None:
            return None
        if task_heads(meta) is None:
            raise ServiceError(400, "bad_request", "this model has a single task (it is not a multi-task model); "
                               "leave out 'tasks'")
        try:
            return select_tasks(meta, names)
        except ValueError as exc:
            raise ServiceError(400, "unknown_task", str(exc)) from None

    def top_k_of(query: int | None, body: int | None) -> int:
        k = query if query is not None else (body if body is not None else 1)
        if not 1 <= k <= limits.max_top_k:
            raise ServiceError(400, "bad_request", f"top_k must be between 1 and {limits.max_top_k}, got {k}")
        return k

    async def predict_texts(body: bytes, top_k: int | None, tasks: str | None) -> list[dict[str, Any]]:
        texts, body_k, body_tasks = _json_texts(body, limits)
        if not texts:
            raise ServiceError(400, "no_texts", "the request holds no texts")
        k, wanted = top_k_of(top_k, body_k), chosen_tasks(tasks, body_tasks)
        if sum(map(len, texts)) <= INLINE_MAX_TEXT_CHARS:  # ~0.1 ms of tokenising: cheaper than a thread hop
            ids, lengths, cut = padded_ids(tokenizer, texts, pad_id)
        else:
            ids, lengths, cut = await asyncio.to_thread(padded_ids, tokenizer, texts, pad_id)
        if limits.long_texts == "refuse" and any(cut):
            i = cut.index(True)
            raise ServiceError(422, "text_too_long", f"texts[{i}]: longer than the model's limit of {max_length} "
                               "tokens (special tokens included); send shorter texts (this service refuses them: "
                               "--long-texts refuse)")
        try:
            async with semaphore:
                rows = await run_in_threadpool(text_rows, ids, lengths, k, wanted)
        except Exception as exc:  # answered here, so the connection and the server carry on normally
            raise _internal(exc, "prediction failed") from None
        return [{"index": i, "truncated": cut[i], "tokens": int(lengths[i]), **row} for i, row in enumerate(rows)]

    @app.get("/health", summary="liveness probe (no API key needed)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="name, classes, input spec, preprocessing, backend and limits", dependencies=protected)
    async def model() -> dict[str, Any]:
        return info

    image_body = {"multipart/form-data": {"schema": {"type": "object", "properties": {
                      "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                      "top_k": {"type": "integer"}, "tasks": {"type": "string"}}}},
                  "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
                      "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                      "top_k": {"type": "integer"}, "tasks": {"type": "array", "items": {"type": "string"}}}}}}
    text_body = {"application/json": {"schema": {"type": "object", "required": ["texts"], "properties": {
        "texts": {"type": "array", "items": {"type": "string"}, "maxItems": limits.max_texts},
        "top_k": {"type": "integer"}, "tasks": {"type": "array", "items": {"type": "string"}}}}}}

    what = "texts (JSON)" if is_text else "images (multipart files or JSON base64)"

    @app.post("/predict", summary=f"classify one or more {what}", dependencies=protected,
              openapi_extra={"requestBody": {"required": True, "content": text_body if is_text else image_body}})
    async def predict(request: Request,
                      top_k: int | None = Query(None, ge=1, description="most probable classes to list"),
                      tasks: str | None = Query(None, description="multi-task models: the tasks to answer for, "
                                                "comma-separated (default: all)")) -> Any:
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if is_text and ctype != "application/json":
            raise ServiceError(415, "unsupported_media_type",
                               f"content type '{ctype[:80] or 'none'}' is not accepted; this model takes texts: send "
                               f"application/json {TEXT_BODY}", CLOSE)
        if ctype not in ("multipart/form-data", "application/json"):
            raise ServiceError(415, "unsupported_media_type",
                               f"content type '{ctype[:80] or 'none'}' is not accepted; send multipart/form-data "
                               "files or application/json {\"images\": [base64, ...]}", CLOSE)
        held = Claim(body_bytes)
        try:
            body = await _read_body(request, limits, held)
            if is_text:
                predictions = await predict_texts(body, top_k, tasks)
                return {"predictions": predictions, "model": {"name": model_name, "backend": backend_name},
                        "time_ms": round((time.perf_counter() - t0) * 1000, 2)}
            if ctype == "multipart/form-data":
                items, body_k, body_tasks = await _multipart_images(request, body, limits)
            else:
                items, body_k, body_tasks = _json_images(body, limits)
            del body
            if not items:
                raise ServiceError(400, "no_images", "the request holds no images")
            if len(items) > limits.max_images:
                raise _too_many(len(items), limits)
            k, wanted = top_k_of(top_k, body_k), chosen_tasks(tasks, body_tasks)
            try:
                claimed = await asyncio.to_thread(_claimed_pixels, items, limits)  # headers only: nothing decoded
                batch = await decode(items, claimed)
            except BadImage as exc:
                code = "image_too_large" if "decompression bomb" in str(exc) else "bad_image"
                raise ServiceError(422, code, str(exc)) from None
            try:
                async with semaphore:
                    rows = await run_in_threadpool(model_rows, batch, k, wanted)
            except Exception as exc:  # answered here, so the connection and the server carry on normally
                raise _internal(exc, "prediction failed") from None
        except ServiceError:
            raise
        except Exception as exc:  # a bug, not the client's fault: a generic 500, the details in the log
            raise _internal(exc, "predict failed") from None
        finally:
            held.release()
        predictions = [{"index": i, "name": name, **row} for i, ((name, _), row) in enumerate(zip(items, rows,
                                                                                                strict=True))]
        return {"predictions": predictions, "model": {"name": model_name, "backend": backend_name},
                "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

    return app
