"""Resource admission for the HTTP service (:mod:`transferkit.serve`): what bounds the work any client can make it
do, checked before that work is paid for.

* :class:`ServiceLimits` — per-request and service-wide caps: bytes per body and in flight, images and pixels per
  request, pixels in flight, decode and queue timeouts, connection timeouts.
* :class:`Budget` / :class:`Claim` — capped counters (pixels, body bytes) that a request takes from without waiting
  and gives back, exactly once, when its work really stops.
* :class:`DecodePool` / :class:`DecodeJob` — a bounded pool of decode threads, smallest requests first plus an
  express thread for small ones, whose jobs stop cooperatively (:class:`DecodeCancelled`) once their request has
  been answered or their deadline has passed.
* :func:`guarded_h11_protocol` / :func:`uvicorn_options` — connection timeouts: request headers and keep-alive.

Why: issue 25's hostile-input probe exhausted the service with requests that were valid but costly (images just
under the pixel cap that are cheap to send and slow to decode, many such requests at once, stalled uploads and idle
connections); so every resource a request can hold is capped here and refused early (413, or 503 when busy)
instead of being queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from transferkit.errors import ConfigError
from transferkit.inference import DEFAULT_MAX_PIXELS, DEFAULT_REQUEST_PIXELS

logger = logging.getLogger("transferkit.serve")  # the service's log: these messages were always logged under it


OFF_AT_ZERO = ("express_max_pixels", "inline_max_pixels")  # limits that 0 turns off
LONG_TEXT_POLICIES = ("truncate", "refuse")  # what the service does with a text over the model's max_length


@dataclass
class ServiceLimits:
    """What one request, and all requests together, may ask of the service; anything beyond is refused with a
    4xx (or 503 when the service is busy) before it costs much.

    Defaults: ``max_request_pixels`` = 128 MP (32 images × 4 MP — a full request of phone-camera-sized images;
    one image at the ``max_pixels`` cap of 40 MP also fits; decoding it is ~1 s of one core for PNG, well within
    ``decode_timeout_s``); ``max_inflight_pixels`` = twice that (two such requests decoding or queued: at most a
    second or so of backlog on two workers, so a request that is admitted is served promptly);
    ``max_inflight_bytes`` = 8 × ``max_upload_bytes`` (bodies being received or held, 160 MB);
    ``decode_workers`` = 2 (memory ≈ workers × the largest image, ~160 MB each at 40 MP RGB), plus one express
    thread for requests of at most ``express_max_pixels`` = 1 MP (milliseconds of work), so that small requests
    stay fast while large ones decode; requests of at most ``inline_max_pixels`` = 0.26 MP (and 64 KB) skip the
    pool and are decoded on the event loop — measured on 2 cores with 10 clients of 28×28 PNGs, the two thread
    hops otherwise cost a quarter of the throughput (≈ 360 instead of ≈ 480 requests/s).

    Text models: ``max_texts`` = 64 texts per request (else 413); ``max_text_chars`` = 20 000 characters per text
    (else 413 — what bounds the tokenising work, ~13× what a 256-token model reads); a text longer than the model's
    ``max_length`` tokens is, by ``long_texts``, ``"truncate"``-d to it (the answer flags it: ``truncated: true``)
    or ``"refuse"``-d (422 naming the text and the limit)."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_images: int = 32
    decode_timeout_s: float = 5.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_top_k: int = 100
    max_concurrent_predictions: int = 1
    max_request_pixels: int = DEFAULT_REQUEST_PIXELS
    max_inflight_pixels: int = 2 * DEFAULT_REQUEST_PIXELS
    max_inflight_bytes: int | None = None  # None: 8 × max_upload_bytes
    decode_workers: int = 2
    express_max_pixels: int = 1_000_000  # requests this small also have a decode thread of their own
    inline_max_pixels: int = 262_144  # requests this small are decoded on the event loop itself (~1–2 ms)
    queue_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_texts: int = 64
    max_text_chars: int = 20_000
    long_texts: str = "truncate"

    def __post_init__(self) -> None:
        if self.max_inflight_bytes is None:
            self.max_inflight_bytes = 8 * self.max_upload_bytes
        if self.long_texts not in LONG_TEXT_POLICIES:
            raise ConfigError("long_texts", f"one of {', '.join(LONG_TEXT_POLICIES)}", self.long_texts)
        bad = {k: v for k, v in asdict(self).items() if k != "long_texts"
               and not (isinstance(v, (int, float)) and (v > 0 or (k in OFF_AT_ZERO and v == 0)))}
        if bad:
            raise ValueError(f"service limits must be positive (express_max_pixels: 0 turns it off): {bad}")
        if self.max_inflight_pixels < self.max_request_pixels or self.max_inflight_bytes < self.max_upload_bytes:
            raise ValueError("max_inflight_pixels must be ≥ max_request_pixels and max_inflight_bytes ≥ "
                             "max_upload_bytes (else one allowed request could never be admitted)")


class DecodeCancelled(Exception):
    """Raised inside a decode worker once its request has been answered (timeout, disconnect, shutdown)."""


class Budget:
    """A capped counter shared by the event loop and the decode workers; ``take`` never waits."""

    def __init__(self, cap: int) -> None:
        self.cap, self.used = int(cap), 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.cap:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


@dataclass(eq=False)
class Claim:
    """What one request holds of a :class:`Budget`; :meth:`release` is idempotent."""

    budget: Budget
    held: int = 0

    def grow(self, n: int) -> bool:
        if n <= 0 or self.budget.take(n):
            self.held += max(n, 0)
            return True
        return False

    def release(self) -> None:
        held, self.held = self.held, 0
        self.budget.give(held)


@dataclass(eq=False)
class DecodeJob:
    """One request's decode (and preprocessing), run by a :class:`DecodePool` worker; results reach the event loop
    through ``started`` / ``done``. The budget is given back when the work really stops: by the worker, or by
    :meth:`abandon` at once when no worker had taken the job yet."""

    work: Callable[[Callable[[], None]], Any]  # called with ``check``; returns the model input
    loop: asyncio.AbstractEventLoop
    timeout_s: float
    release: Callable[[], None]
    started: asyncio.Future = field(init=False)
    done: asyncio.Future = field(init=False)
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float = math.inf
    running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.started, self.done = self.loop.create_future(), self.loop.create_future()

    def abandon(self) -> None:
        """The request is answered (or gone): stop at the next step; give the budget back now if not yet running."""
        with self._lock:
            self.cancelled.set()
            if not self.running:
                self.release()

    def check(self) -> None:
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            raise DecodeCancelled()

    def _post(self, fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if fut.done():  # the request gave up (its future was cancelled): nobody to tell
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed, the server has stopped
            self.loop.call_soon_threadsafe(settle)

    def run(self) -> None:
        with self._lock:
            if self.cancelled.is_set():  # abandoned while queued: its budget is already back
                return
            self.running = True
        try:
            self.deadline = time.monotonic() + self.timeout_s
            self._post(self.started)
            self._post(self.done, self.work(self.check))
        except BaseException as exc:  # noqa: BLE001 — every outcome goes back to the waiting request
            self._post(self.done, exc=exc)
        finally:
            self.release()


class DecodePool:
    """``workers`` daemon threads decoding requests, smallest claimed pixel count first (FIFO among equals), plus
    one *express* thread that only takes requests of at most ``express_max_pixels``: a small request never waits
    for a large decode to finish, whatever the large ones do. Started on first use; :meth:`close` stops them
    (a later :meth:`submit` or :meth:`open` starts them again: an app's lifespan may run more than once)."""

    def __init__(self, workers: int, express_max_pixels: int = 0) -> None:
        self.workers, self.express_max_pixels = max(1, int(workers)), int(express_max_pixels)
        self._heap: list[tuple[float, int, DecodeJob]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, priority: float, job: DecodeJob) -> None:
        with self._cond:
            self._closed = False  # used again after close (an app served twice, or without its lifespan)
            if not self._threads:
                express = [True] if self.express_max_pixels > 0 else []
                for i, fast in enumerate([False] * self.workers + express):
                    name = "transferkit-decode-express" if fast else f"transferkit-decode-{i}"
                    t = threading.Thread(target=self._work, args=(fast,), name=name, daemon=True)
                    t.start()
                    self._threads.append(t)
            heapq.heappush(self._heap, (priority, next(self._seq), job))
            self._cond.notify_all()

    def _take(self, express: bool) -> DecodeJob | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._heap and (not express or self._heap[0][0] <= self.express_max_pixels):
                    return heapq.heappop(self._heap)[2]
                self._cond.wait()

    def _work(self, express: bool) -> None:
        while (job := self._take(express)) is not None:
            job.run()

    def open(self) -> None:
        with self._cond:
            self._closed = False

    def close(self, timeout_s: float = 2.0) -> None:
        with self._cond:
            self._closed, threads, queued = True, list(self._threads), [job for _, _, job in self._heap]
            self._heap.clear()
            self._threads.clear()
            self._cond.notify_all()
        for job in queued:  # their requests are gone by now
            job.abandon()
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))


def guarded_h11_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers: a connection that opens and then sends
    nothing (or trickles its headers) is closed ``header_timeout_s`` after it opened or after its last response.
    uvicorn's own keep-alive timer only starts after a first response and stops at the first byte of the next
    request. Pass as ``uvicorn.Config(http=...)``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.info("closing a connection whose request headers did not arrive within %g s",
                            header_timeout_s)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a request's headers arrived (or the connection failed)
                self._cancel_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return GuardedH11Protocol


def uvicorn_options(limits: ServiceLimits | None = None) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments that enforce ``limits``' connection timeouts (keep-alive, headers)."""
    limits = limits or ServiceLimits()
    return {"http": guarded_h11_protocol(limits.header_timeout_s),
            "timeout_keep_alive": max(1, math.ceil(limits.keep_alive_s))}
