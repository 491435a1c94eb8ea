"""Hostile clients of ``transferkit serve`` (issue 25): each test first sends the attack the probe used.

A. exhaustion within the default limits (pixel budgets, decode pool, cancellation, stalled connections, memory),
B. a truncated multipart body, C. malformed bodies and disconnects that gave 500s or tracebacks, D. information in
``/model`` and the CDN-backed docs pages, E. text models.
"""

from __future__ import annotations

import base64
import io
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.test_serve import CLASSES, _assert_error, _files, _png, _png_claiming  # noqa: E402
from transferkit.inference import TorchPredictor, decode_image, decode_to_size  # noqa: E402
from transferkit.serve import DecodeCancelled, ServiceLimits, create_app  # noqa: E402
from transferkit.serve_thread import start_in_thread, stop_thread  # noqa: E402

BOMB_SIDE = 6300  # 6300² = 39.69 MP: just under the per-image cap of 40 MP, as in the probe


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.bundle import save_bundle

    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=len(CLASSES)).eval()
    where = tmp_path_factory.mktemp("hostile")
    lineage = {"source": str(where / "secret" / "source-run"), "data": str(where / "secret" / "data")}
    return save_bundle(model, {"classes": CLASSES, "lineage": lineage, "metrics": {"accuracy": 0.123456}},
                       where / "bundle")


@pytest.fixture(scope="module")
def predictor(bundle) -> TorchPredictor:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TorchPredictor.load(bundle)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A solid-colour 6300×6300 RGB PNG: ~130 KB on the wire, 39.7 MP (160 MB in PIL) once decoded."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (BOMB_SIDE, BOMB_SIDE), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_png() -> bytes:
    return _png(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8))


@contextmanager
def serving(app):
    srv, thread, port = start_in_thread(app)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.port = port
            yield client
    finally:
        assert stop_thread(srv, thread)


@contextmanager
def log_records(*names: str):
    """Every record logged to the loggers ``names`` (uvicorn's do not propagate to the root logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def _raw(port: int, data: bytes, read_s: float = 5.0, then_close: bool = False) -> tuple[bytes, bool, float]:
    """Send ``data`` on a raw connection and read until the server closes it or ``read_s`` passes:
    (bytes read, whether the server closed the connection, seconds until then)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as s:
        if data:
            s.sendall(data)
        if then_close:
            return b"", True, time.monotonic() - t0
        got = b""
        s.settimeout(0.1)
        while time.monotonic() - t0 < read_s:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset
                return got, True, time.monotonic() - t0
            if not chunk:
                return got, True, time.monotonic() - t0
            got += chunk
        return got, False, time.monotonic() - t0


def _multipart(files: list[tuple[str, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                    "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- A. exhaustion ----------------------------------------------------------------------------------------------


def test_probe_request_of_32_bombs_is_413_before_any_decode(predictor, bomb_png):
    """The probe's request: 32 × 39.7 MP PNGs (each under the per-image cap) in ~4 MB. It used to decode for ~12 s
    at 100 % CPU and ~5 GB; the per-request pixel budget refuses it from the headers alone."""
    decoded = []

    def recording_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        decoded.append(name)
        return decode_image(data, name, max_pixels)

    body, ctype = _multipart([(f"bomb{i}.png", bomb_png) for i in range(32)])
    assert len(body) < ServiceLimits().max_upload_bytes
    with serving(create_app(predictor, ServiceLimits(), decoder=recording_decoder)) as c:
        t0 = time.monotonic()
        r = c.post("/predict", content=body, headers={"content-type": ctype})
        elapsed = time.monotonic() - t0
        detail = _assert_error(r, 413, "too_many_pixels")["detail"]
        assert "1,270,080,000" in detail and f"{ServiceLimits().max_request_pixels:,}" in detail
        assert elapsed < 3 and decoded == []
        # the same by JSON, and a budget of a few megapixels: claimed sizes count, not bytes
        images = [base64.b64encode(_png_claiming(1000, 1000)).decode()] * 3
        small = ServiceLimits(max_request_pixels=2_500_000, max_inflight_pixels=5_000_000)
    with serving(create_app(predictor, small, decoder=recording_decoder)) as c:
        _assert_error(c.post("/predict", json={"images": images}), 413, "too_many_pixels")
        assert decoded == []
        assert c.get("/health").status_code == 200


def test_one_large_image_is_decoded_small_and_served(predictor, bomb_png):
    """A single 39.7 MP image is within the budget: it is reduced while decoding and predicted."""
    arr = decode_to_size(bomb_png, "bomb.png", size=(28, 28))
    assert arr.shape[0] == arr.shape[1] and 56 <= arr.shape[0] < 112  # between 2× and 4× the 28 px input
    assert tuple(arr[0, 0]) == (200, 30, 30)
    with serving(create_app(predictor, ServiceLimits())) as c:
        r = c.post("/predict", files=_files([bomb_png]))
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["predicted_class"] in CLASSES


def test_decode_to_size_matches_decode_image_for_small_images_and_reduces_jpeg_by_draft():
    from PIL import Image

    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    assert np.array_equal(decode_to_size(_png(small), size=(28, 28)), decode_image(_png(small)))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (2000, 1600, 3), dtype=np.uint8)).save(buf, format="JPEG")
    arr = decode_to_size(buf.getvalue(), "big.jpg", size=(224, 224))
    assert arr.shape == (500, 800, 3)  # 1/2 scale by DCT, then a box filter on H: never below 2 × 224


def test_decode_stops_at_the_next_step_when_cancelled(bomb_png):
    """Cancellation inside one image: ``check`` runs on every block of compressed data PIL reads."""
    calls = []

    def check() -> None:
        calls.append(time.monotonic())
        if len(calls) >= 3:
            raise DecodeCancelled()

    t0 = time.monotonic()
    with pytest.raises(DecodeCancelled):
        decode_to_size(bomb_png, "bomb.png", size=(28, 28), check=check)
    full = time.monotonic()
    decode_to_size(bomb_png, "bomb.png", size=(28, 28))
    assert full - t0 < (time.monotonic() - full)  # stopped before the whole decode


def test_inflight_budget_full_is_503_with_retry_after(predictor, tiny_png):
    """While the in-flight pixels are taken, a further request is refused at once (no unbounded queue)."""
    gate = threading.Event()

    def blocked_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        gate.wait(10)
        return decode_image(data, name, max_pixels)

    # one 28×28 image: 784 pixels
    limits = ServiceLimits(inline_max_pixels=0, max_request_pixels=1000, max_inflight_pixels=1000)
    app = create_app(predictor, limits, decoder=blocked_decoder)
    with serving(app) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/predict", files=_files([tiny_png]))))
        t.start()
        deadline = time.monotonic() + 10
        while app.state.pixel_budget.used == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        r = c.post("/predict", files=_files([tiny_png]))
        assert time.monotonic() - t0 < 2
        _assert_error(r, 503, "server_busy")
        assert r.headers["retry-after"] == "1"
        gate.set()
        t.join(10)
        assert first["r"].status_code == 200
        assert app.state.pixel_budget.used == 0 and app.state.byte_budget.used == 0
        assert c.post("/predict", files=_files([tiny_png])).status_code == 200


def test_no_free_worker_in_time_is_503_and_the_queued_budget_comes_back(predictor, tiny_png):
    gate = threading.Event()

    def blocked_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        gate.wait(10)
        return decode_image(data, name, max_pixels)

    limits = ServiceLimits(inline_max_pixels=0, decode_workers=1, express_max_pixels=0, queue_timeout_s=0.3)
    app = create_app(predictor, limits, decoder=blocked_decoder)
    with serving(app) as c:
        first = threading.Thread(target=lambda: c.post("/predict", files=_files([tiny_png])))
        first.start()
        deadline = time.monotonic() + 10
        while app.state.pixel_budget.used == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.post("/predict", files=_files([tiny_png]))
        _assert_error(r, 503, "server_busy")
        assert "decode worker" in r.json()["detail"] and r.headers["retry-after"] == "1"
        assert app.state.pixel_budget.used == 28 * 28  # only the running request's
        gate.set()
        first.join(10)
        assert app.state.pixel_budget.used == 0


def test_a_small_request_is_decoded_at_once_while_the_workers_are_busy(predictor, tiny_png):
    """Requests of a few pixels and bytes are decoded on the event loop itself: they neither wait for nor need a
    decode worker (the usual request's latency), while a larger one still goes through the bounded pool."""
    gate = threading.Event()

    def decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        if name.startswith("big"):
            gate.wait(10)
        return decode_image(data, name, max_pixels)

    limits = ServiceLimits(decode_workers=1, express_max_pixels=0, queue_timeout_s=0.3)
    app = create_app(predictor, limits, decoder=decoder)
    big = _png(np.zeros((600, 600), np.uint8))  # 360,000 pixels: more than inline_max_pixels
    with serving(app) as c:
        first = threading.Thread(target=lambda: c.post("/predict", files=[("files", ("big.png", big, "image/png"))]))
        first.start()
        deadline = time.monotonic() + 10
        while app.state.pixel_budget.used == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        assert c.post("/predict", files=_files([tiny_png])).status_code == 200  # the only worker is blocked
        assert time.monotonic() - t0 < 0.3
        r = c.post("/predict", files=[("files", ("big2.png", big, "image/png"))])
        _assert_error(r, 503, "server_busy")  # a larger one needs the (busy) worker
        gate.set()
        first.join(10)


def test_decode_timeout_does_not_count_waiting_for_a_worker(predictor, tiny_png):
    """With one decode worker and four concurrent requests each decoding in 0.3 s, the last waits ~0.9 s for the
    worker: more than the 0.6 s decode timeout, which must count only its own decode."""

    def slow_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        time.sleep(0.3)
        return decode_image(data, name, max_pixels)

    limits = ServiceLimits(inline_max_pixels=0, decode_workers=1, decode_timeout_s=0.6)
    with serving(create_app(predictor, limits, decoder=slow_decoder)) as c:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: c.post("/predict", files=_files([tiny_png])).status_code, range(4)))
        assert codes == [200] * 4


def test_timed_out_decode_stops_at_the_next_image_and_gives_back_its_budget(predictor, tiny_png):
    calls = []

    def slow_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        calls.append(name)
        time.sleep(0.3)
        return decode_image(data, name, max_pixels)

    limits = ServiceLimits(inline_max_pixels=0, decode_timeout_s=0.45, max_images=32)
    app = create_app(predictor, limits, decoder=slow_decoder)
    with serving(app) as c:
        t0 = time.monotonic()
        _assert_error(c.post("/predict", files=_files([tiny_png] * 20)), 408, "decode_timeout")
        assert time.monotonic() - t0 < 1.5
        time.sleep(0.8)
        assert len(calls) <= 3  # not the 20 images (6 s) of an uncancelled decode
        assert app.state.pixel_budget.used == 0


def test_small_requests_are_not_stuck_behind_large_decodes(predictor, tiny_png):
    """The probe's tiny good requests got 408 behind the bombs: a small request has a decode thread of its own
    (express), and without it, small requests still go before queued large ones."""
    gate, order = threading.Event(), []
    big = _png(np.zeros((1200, 1200), dtype=np.uint8))  # 1.44 MP: more than the express lane's 1 MP

    def decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        if name != "small":
            gate.wait(10)
        order.append(name)
        return decode_image(data, name, max_pixels)

    def post(c, name: str, data: bytes) -> None:
        c.post("/predict", files=[("files", (name, data, "image/png"))])

    with serving(create_app(predictor, ServiceLimits(decode_workers=1, inline_max_pixels=0), decoder=decoder)) as c:
        large = threading.Thread(target=post, args=(c, "large", big))
        large.start()
        time.sleep(0.3)  # the only decode worker is busy with the large request
        t0 = time.monotonic()
        assert c.post("/predict", files=[("files", ("small", tiny_png, "image/png"))]).status_code == 200
        assert time.monotonic() - t0 < 2 and order == ["small"]
        gate.set()
        large.join(10)
    gate.clear()
    order.clear()
    limits = ServiceLimits(inline_max_pixels=0, decode_workers=1, express_max_pixels=0)
    with serving(create_app(predictor, limits, decoder=decoder)) as c:
        threads = [threading.Thread(target=post, args=(c, "first", big))]
        threads[0].start()
        time.sleep(0.3)  # the worker holds "first"; then a large and a small request queue up
        for name, data in (("large", big), ("small", tiny_png)):
            threads.append(threading.Thread(target=post, args=(c, name, data)))
            threads[-1].start()
            time.sleep(0.3)
        gate.set()
        for t in threads:
            t.join(10)
    assert order == ["first", "small", "large"]  # the queued small request went before the earlier large one


def test_body_stalled_mid_upload_is_408_and_the_connection_closed(predictor):
    limits = ServiceLimits(body_timeout_s=0.5)
    with serving(create_app(predictor, limits)) as c:
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        got, closed, secs = _raw(c.port, head + b'{"images": ["', read_s=5)
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b'"body_timeout"' in got and closed and 0.4 < secs < 3
        assert c.get("/health").status_code == 200


def test_bodies_in_flight_are_bounded_and_a_staller_holds_only_what_it_sent(predictor, tiny_png):
    limits = ServiceLimits(max_upload_bytes=100_000, max_inflight_bytes=150_000, body_timeout_s=1.5)
    app = create_app(predictor, limits)
    with serving(app) as c:
        head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        staller: dict = {}
        t = threading.Thread(target=lambda: staller.update(r=_raw(c.port, head + b" " * 99_000, read_s=6)))
        t.start()
        deadline = time.monotonic() + 5
        while app.state.byte_budget.used < 99_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        pad = {"images": [base64.b64encode(tiny_png).decode()], "pad": "x" * 60_000}
        r = c.post("/predict", json=pad)
        _assert_error(r, 503, "server_busy")
        assert r.headers["retry-after"] == "1"
        assert c.post("/predict", files=_files([tiny_png])).status_code == 200  # a small body still fits
        t.join(10)
        assert staller["r"][0].startswith(b"HTTP/1.1 408")
        assert app.state.byte_budget.used == 0
        assert c.post("/predict", json=pad).status_code == 200


def test_stalled_connections_are_closed(predictor):
    """The probe's 16 stalled connections stayed open 30 s: a connection that sends nothing, or trickles its
    headers, is closed after the header timeout; an idle keep-alive connection after the keep-alive timeout."""
    limits = ServiceLimits(header_timeout_s=0.5, keep_alive_s=1)
    with serving(create_app(predictor, limits)) as c:
        got, closed, secs = _raw(c.port, b"", read_s=5)
        assert closed and got == b"" and secs < 2.5
        with socket.create_connection(("127.0.0.1", c.port), timeout=5) as s:
            t0 = time.monotonic()
            closed = False
            for part in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-C: 3\r\n",
                         b"X-D: 4\r\n", b"X-E: 5\r\n"):
                try:
                    s.sendall(part)
                except OSError:
                    closed = True
                    break
                time.sleep(0.2)
            if not closed:
                s.settimeout(3)
                try:
                    closed = s.recv(100) == b""
                except OSError:
                    closed = True
            assert closed and time.monotonic() - t0 < 2.5
        got, closed, secs = _raw(c.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", read_s=5)
        assert got.startswith(b"HTTP/1.1 200") and closed and secs < 3  # closed after the keep-alive timeout


def test_predict_api_memory_stays_small_on_large_images(bundle, bomb_png, tmp_path):
    """``transferkit predict`` on 8 such files peaked at 2.7 GB: images are now reduced while decoded."""
    for i in range(4):
        (tmp_path / f"bomb{i}.png").write_bytes(bomb_png)
    code = f"""
import sys
from transferkit.api.use import predict, _load_predictor
import torch
torch.set_num_threads(1)
_load_predictor({str(bundle)!r}, "torch")
def hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) // 1024
before = hwm()
rows = predict({str(bundle)!r}, [{str(tmp_path)!r}], progress=False, convert_channels=True)
assert len(rows) == 4 and all(r["error"] is None for r in rows), rows
print(hwm() - before)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    added_mb = int(res.stdout.strip().splitlines()[-1])
    assert added_mb < 400, f"predict added {added_mb} MB of peak memory for 4 × 39.7 MP images"


# --- B. truncated multipart -------------------------------------------------------------------------------------


def test_truncated_multipart_is_400_not_fewer_predictions(predictor, tiny_png):
    body, ctype = _multipart([("a.png", tiny_png), ("b.png", tiny_png)])
    with serving(create_app(predictor, ServiceLimits())) as c:
        assert len(c.post("/predict", content=body, headers={"content-type": ctype}).json()["predictions"]) == 2
        cut = body[: body.index(b'filename="b.png"') + 60]  # inside the second file
        _assert_error(c.post("/predict", content=cut, headers={"content-type": ctype}), 400, "bad_multipart")
        no_close = body[: body.rindex(b"--" + ctype.split("=")[1].encode() + b"--")]  # only the closing line gone
        _assert_error(c.post("/predict", content=no_close, headers={"content-type": ctype}), 400, "bad_multipart")
        with_epilogue = body + b"an epilogue is allowed after the closing boundary\r\n"
        assert c.post("/predict", content=with_epilogue, headers={"content-type": ctype}).status_code == 200


# --- C. malformed bodies, disconnects, 500s ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"images": ["AAAA"], "top_k": 1e400}',
    b'{"images": ["AAAA"], "top_k": Infinity}',
    b'{"images": ["AAAA"], "top_k": -Infinity}',
    b'{"images": ["AAAA"], "top_k": NaN}',
    b'{"images": ["AAAA"], "top_k": ' + b"1" * 5000 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"images": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
], ids=["1e400", "Infinity", "-Infinity", "NaN", "5000-digits", "deep-list", "deep-in-images"])
def test_malformed_json_is_400_bad_json(predictor, body):
    with serving(create_app(predictor, ServiceLimits())) as c:
        _assert_error(c.post("/predict", content=body, headers={"content-type": "application/json"}), 400,
                      "bad_json")
        assert c.get("/health").status_code == 200


def test_hostile_top_k_elsewhere_is_400(predictor, tiny_png):
    with serving(create_app(predictor, ServiceLimits())) as c:
        for q in ("1e400", "inf", "nan", "9" * 5000, "-1"):
            _assert_error(c.post(f"/predict?top_k={q}", files=_files([tiny_png])), 400)
        for v in ("1e400", "Infinity", "9" * 5000):
            _assert_error(c.post("/predict", files=_files([tiny_png]), data={"top_k": v}), 400, "bad_request")
        for v in (1e300, 10 ** 400, -(10 ** 400)):
            _assert_error(c.post("/predict", json={"images": [base64.b64encode(tiny_png).decode()], "top_k": v}),
                          400, "bad_request")


def test_client_disconnect_mid_upload_is_a_quiet_info_line(predictor):
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n")
    with log_records("uvicorn", "uvicorn.error", "transferkit") as records, \
            serving(create_app(predictor, ServiceLimits())) as c:
        _raw(c.port, head + b'{"images": ["' + b"A" * 1000, then_close=True)
        deadline = time.monotonic() + 5
        while not any("disconnected" in r.getMessage() for r in records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/health").status_code == 200
    quiet = [r for r in records if "disconnected" in r.getMessage()]
    assert quiet and all(r.levelno <= logging.WARNING and not r.exc_info for r in quiet)
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info]


def test_500_body_is_generic_and_the_log_has_the_details(predictor, tiny_png):
    class Broken:
        classes, input_spec, meta = predictor.classes, predictor.input_spec, {}

        def logits(self, batch):
            raise RuntimeError("boom at /home/someone/secret/path")

    with log_records("transferkit") as records, serving(create_app(Broken(), ServiceLimits())) as c:
        body = _assert_error(c.post("/predict", files=_files([tiny_png])), 500, "internal_error")
        assert c.get("/health").status_code == 200
    assert body["detail"].startswith("internal error; see the server log, id=")
    assert "boom" not in body["detail"] and "RuntimeError" not in body["detail"]
    rid = body["detail"].rsplit("id=", 1)[1]
    logged = [r for r in records if rid in r.getMessage()]
    assert logged and "boom" in logged[0].getMessage() and logged[0].levelno == logging.ERROR


# --- D. information exposure ------------------------------------------------------------------------------------


def test_model_hides_paths_and_metrics_and_docs_are_off(predictor, bundle):
    with serving(create_app(predictor, ServiceLimits(), model_name="m")) as c:
        r = c.get("/model")
        assert r.status_code == 200
        text = r.text
        assert str(bundle.parent) not in text and "secret" not in text and "0.123456" not in text
        info = r.json()
        assert {"name", "classes", "input_spec", "preprocessing", "backend", "limits"} <= set(info)
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            _assert_error(c.get(page), 404, "not_found")
        assert c.get("/openapi.json").status_code == 200
    with serving(create_app(predictor, ServiceLimits(), expose_lineage=True, docs=True)) as c:
        info = c.get("/model").json()
        assert "secret" in info["lineage"]["source"] and info["metrics"] == {"accuracy": 0.123456}
        page = c.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()


# --- E. text models ---------------------------------------------------------------------------------------------


def test_text_models_are_refused_cleanly(predictor, bundle, monkeypatch, tiny_png):
    from dataclasses import replace

    from transferkit.cli.main import main

    class TextPredictor:
        classes, meta = predictor.classes, {}
        input_spec = replace(predictor.input_spec, modality="text")

        def logits(self, batch):
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="text model"):
        create_app(TextPredictor(), ServiceLimits())
    monkeypatch.setattr(TorchPredictor, "load", classmethod(lambda cls, path: TextPredictor()))
    assert main(["serve", str(bundle)]) == 2  # a clear error line, no traceback, no server
    # text sent to an image service: 4xx, never 500
    monkeypatch.undo()
    with serving(create_app(predictor, ServiceLimits())) as c:
        _assert_error(c.post("/predict", content=b"a sentence", headers={"content-type": "text/plain"}), 415)
        _assert_error(c.post("/predict", json={"texts": ["a sentence"]}), 400, "bad_request")
        _assert_error(c.post("/predict", json={"images": ["a sentence"]}), 400, "bad_base64")
        _assert_error(c.post("/predict", json={"images": [base64.b64encode(b"a sentence").decode()]}), 422,
                      "bad_image")
