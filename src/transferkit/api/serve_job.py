"""``serve``: run a trained model as an HTTP inference service (FastAPI + uvicorn), see :mod:`transferkit.serve`.

:func:`serve` blocks until the server is stopped (Ctrl-C); :mod:`transferkit.serve_thread` runs an app in a
background thread instead (tests and benchmarks).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.errors import ConfigError
from transferkit.options import ServeConfig
from transferkit.terminal import Console

API_KEY_ENV = "TRANSFERKIT_API_KEY"


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_service_predictor(model: str | Path, backend: str = "torch", threads: int | None = None) -> Any:
    """The predictor for ``model``: a bundle/run directory (torch) or a ``model.onnx`` / folder holding one (onnx) —
    image or text, single- or multi-task; another modality is refused by name.

    ``threads`` caps the intra-op threads of the backend (torch: process-wide ``torch.set_num_threads``)."""
    from transferkit.inference import OnnxPredictor, TorchPredictor, check_modality

    if backend == "torch":
        if threads:
            import torch

            torch.set_num_threads(threads)
        predictor: Any = TorchPredictor.load(model)
    elif backend == "onnx":
        predictor = OnnxPredictor.load(model, threads=threads)
    else:
        raise ConfigError("backend", "one of torch, onnx", backend)
    check_modality(predictor.input_spec.modality, f"serve {model}")
    return predictor


def _model_name(predictor: Any, model: str | Path) -> str:
    meta = getattr(predictor, "meta", None) or {}
    return str(meta.get("name") or Path(str(model)).resolve().name)


def serve(*args: Any, config: ServeConfig | None = None, console: Console | None = None, **options: Any) -> None:
    """Serve ``model`` over HTTP until stopped: ``POST /predict``, ``GET /health``, ``GET /model``.

    ``serve(model, **options)`` or ``serve(config=ServeConfig(...))`` (what ``transferkit serve`` builds); the
    options are :class:`~transferkit.options.ServeConfig`'s fields.

    Binds to ``127.0.0.1`` by default (only this machine). ``api_key`` (or env ``TRANSFERKIT_API_KEY``) makes
    ``/predict`` and ``/model`` require header ``X-API-Key``; binding elsewhere without a key prints a warning.
    ``max_request_mp``: megapixels one request may hold in all (default 128, as the headers claim them);
    ``max_inflight_mp``: megapixels being decoded or waiting for a decode worker across all requests (default
    twice ``max_request_mp``; beyond it requests get 503 + Retry-After); ``decode_workers``: decode threads;
    ``body_timeout_s``: time allowed to receive a request body (else 408). ``expose_lineage``: ``/model`` also
    shows the lineage (local paths) and metrics; ``docs``: serve ``/docs`` and ``/redoc`` (assets from a CDN).
    Text models: ``max_texts`` per request and ``max_text_chars`` per text (else 413); ``long_texts`` —
    ``"truncate"`` a text over the model's ``max_length`` tokens (flagged in the answer) or ``"refuse"`` it (422).
    """
    import uvicorn

    from transferkit.serve import create_app, uvicorn_options  # FastAPI only when serving

    c = ServeConfig.given(config, args, options)
    if c.model in (None, ""):
        raise ValueError("MODEL (run directory, bundle directory or model.onnx) is required")
    console = terminal.resolve(console)
    limits = service_limits(c)
    api_key = c.api_key or os.environ.get(API_KEY_ENV) or None
    predictor = load_service_predictor(c.model, c.backend, c.threads)
    app = create_app(predictor, limits, api_key=api_key, backend_name=c.backend,
                     model_name=_model_name(predictor, c.model), expose_lineage=c.expose_lineage, docs=c.docs)
    if not is_loopback(c.host) and not api_key:
        console.print(f"[yellow]warning:[/] serving on {c.host} without an API key: anyone who can reach this "
                      f"machine can use the model; pass --api-key (or set {API_KEY_ENV})", highlight=False)
    shown = f"[{c.host}]" if ":" in c.host else c.host
    where = "docs at /docs (assets from a CDN)" if c.docs else "API description at /openapi.json"
    console.print(f"serving {c.model} ({c.backend}, {len(predictor.classes)} classes) on http://{shown}:{c.port} — "
                  f"{where}{', API key required' if api_key else ''}; Ctrl-C stops", highlight=False)
    server = uvicorn.Config(app, host=c.host, port=c.port, log_level=c.log_level,
                            access_log=c.log_level in ("info", "debug"), timeout_graceful_shutdown=10,
                            **uvicorn_options(limits))
    uvicorn.Server(server).run()


def service_limits(c: ServeConfig) -> Any:
    """The :class:`~transferkit.serve.ServiceLimits` of a configuration, checked before any model loads."""
    from transferkit.serve import ServiceLimits

    for field in ("max_upload_mb", "decode_timeout_s", "body_timeout_s"):
        if getattr(c, field) <= 0:
            raise ConfigError(field, "> 0", getattr(c, field))
    for field in ("max_images", "decode_workers", "max_texts", "max_text_chars"):
        if getattr(c, field) < 1:
            raise ConfigError(field, "≥ 1", getattr(c, field))
    if not 0 <= c.port <= 65535:
        raise ConfigError("port", "0..65535", c.port)
    defaults = ServiceLimits()
    request_px = int(c.max_request_mp * 1e6) if c.max_request_mp is not None else defaults.max_request_pixels
    inflight_px = int(c.max_inflight_mp * 1e6) if c.max_inflight_mp is not None else 2 * request_px
    if request_px < 1:
        raise ConfigError("max_request_mp", "> 0", c.max_request_mp)
    if inflight_px < request_px:
        raise ConfigError("max_inflight_mp", f"at least max_request_mp ({request_px / 1e6:g})", c.max_inflight_mp)
    return ServiceLimits(max_upload_bytes=int(c.max_upload_mb * 1024 * 1024), max_images=c.max_images,
                         decode_timeout_s=c.decode_timeout_s, max_request_pixels=request_px,
                         max_inflight_pixels=inflight_px, decode_workers=c.decode_workers,
                         body_timeout_s=c.body_timeout_s, max_texts=c.max_texts, max_text_chars=c.max_text_chars,
                         long_texts=c.long_texts)
