"""The HTTP service end to end: a real uvicorn server on a free loopback port, real requests with httpx.

A tiny seed_cnn bundle (random weights: the service must agree with :class:`TorchPredictor`, not be accurate) and
real Fashion-MNIST images encoded as PNG. Bad inputs must get a 4xx JSON error and leave the server serving.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from transferkit.api.serve_job import is_loopback  # noqa: E402
from transferkit.inference import BadImage, TorchPredictor, decode_image, predict_batch  # noqa: E402
from transferkit.serve import ServiceLimits, create_app  # noqa: E402
from transferkit.serve_thread import start_in_thread, stop_thread  # noqa: E402

CLASSES = ["tshirt", "trouser", "pullover", "dress"]
LIMITS = ServiceLimits(max_upload_bytes=200_000, max_images=8, decode_timeout_s=5.0, max_pixels=1_000_000)
KEY = "s3cret-key"


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A structurally valid PNG whose header claims ``width × height`` grey pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.bundle import save_bundle

    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=len(CLASSES)).eval()
    return save_bundle(model, {"classes": CLASSES, "lineage": {"source": "test", "seed": 0}},
                       tmp_path_factory.mktemp("serve") / "bundle")


@pytest.fixture(scope="module")
def pngs(fashion_npz) -> list[bytes]:
    with np.load(fashion_npz) as z:
        images = z["x_test"][::16][:24]  # spread over the classes
    return [_png(np.asarray(im, dtype=np.uint8)) for im in images]


@pytest.fixture(scope="module")
def predictor(bundle) -> TorchPredictor:
    return TorchPredictor.load(bundle)


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def server(predictor, one_thread):
    """The main service (no API key) on a free loopback port; shut down at the end and checked to have ended."""
    srv, thread, port = start_in_thread(create_app(predictor, LIMITS, model_name="tiny"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    t0 = time.monotonic()
    assert stop_thread(srv, thread, timeout_s=10)
    assert time.monotonic() - t0 < 5


def _files(pngs: list[bytes], field: str = "files") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, (f"img{i}.png", data, "image/png")) for i, data in enumerate(pngs)]


def _expected(bundle: Path, pngs: list[bytes], top_k: int = 1) -> list[dict]:
    fresh = TorchPredictor.load(bundle)  # an independent load: the service must agree with the library
    return predict_batch(fresh, [decode_image(p) for p in pngs], top_k)


def _assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if code:
        assert body["error"] == code, body
    return body


def test_health_model_and_docs(server):
    assert server.get("/health").json() == {"status": "ok"}
    info = server.get("/model").json()
    assert info["classes"] == CLASSES and info["num_classes"] == 4 and info["backend"] == "torch"
    assert info["name"] == "tiny"
    assert "lineage" not in info and "metrics" not in info  # local paths and test results: only when asked for
    assert info["input_spec"]["channels"] == 1 and info["input_spec"]["size"] in ([28, 28], (28, 28))
    assert info["limits"]["max_images"] == LIMITS.max_images
    assert info["limits"]["max_request_pixels"] == LIMITS.max_request_pixels
    _assert_error(server.get("/docs"), 404, "not_found")  # the docs pages load assets from a CDN: off by default
    _assert_error(server.get("/redoc"), 404, "not_found")
    spec = server.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(spec["paths"])


def test_lineage_and_docs_when_asked_for(predictor, one_thread):
    srv, thread, port = start_in_thread(create_app(predictor, LIMITS, expose_lineage=True, docs=True))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.get("/model").json()["lineage"] == {"source": "test", "seed": 0}
            assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
    finally:
        assert stop_thread(srv, thread)


def test_predict_multipart_matches_predictor(server, bundle, pngs):
    r = server.post("/predict", files=_files(pngs[:3]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny", "backend": "torch"} and body["time_ms"] >= 0
    preds, expected = body["predictions"], _expected(bundle, pngs[:3])
    assert [p["index"] for p in preds] == [0, 1, 2]
    assert [p["name"] for p in preds] == ["img0.png", "img1.png", "img2.png"]
    for got, want in zip(preds, expected, strict=True):
        assert got["predicted_class"] == want["predicted_class"]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
        assert len(got["top"]) == 1


def test_predict_any_field_name_and_query_top_k(server, bundle, pngs):
    r = server.post("/predict?top_k=2", files=_files(pngs[3:5], field="image"))
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and all(len(p["top"]) == 2 for p in preds)
    assert [p["predicted_class"] for p in preds] == [e["predicted_class"] for e in _expected(bundle, pngs[3:5])]


def test_predict_json_base64_top_k(server, bundle, pngs):
    images = [base64.b64encode(pngs[5]).decode(), {"name": "six", "data": base64.b64encode(pngs[6]).decode()}]
    r = server.post("/predict", json={"images": images, "top_k": 3})
    assert r.status_code == 200, r.text
    preds, expected = r.json()["predictions"], _expected(bundle, pngs[5:7], top_k=3)
    assert [p["name"] for p in preds] == ["0", "six"]
    for got, want in zip(preds, expected, strict=True):
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        assert [t["probability"] for t in got["top"]] == pytest.approx([t["probability"] for t in want["top"]],
                                                                       abs=1e-5)


def test_colour_image_for_grey_model_is_converted(server):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    r = server.post("/predict", files=_files([_png(rgb)]))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["predicted_class"] in CLASSES


def test_bad_images_are_422_naming_the_image(server, pngs):
    body = _assert_error(server.post("/predict", files=[("files", ("notes.txt", b"hello, not an image", "image/png"))]),
                         422, "bad_image")
    assert "notes.txt" in body["detail"]
    truncated = pngs[0][: len(pngs[0]) // 2]
    body = _assert_error(server.post("/predict", files=_files([pngs[0], truncated])), 422, "bad_image")
    assert "img1.png" in body["detail"]  # the whole request fails, naming the bad one
    _assert_error(server.post("/predict", files=_files([b""])), 422, "bad_image")


def test_huge_dimensions_are_refused_before_decoding(server):
    body = _assert_error(server.post("/predict", files=_files([_png_claiming(50_000, 50_000)])), 422,
                         "image_too_large")
    assert "50000" in body["detail"]
    bilevel = _png(np.zeros((1200, 1200), dtype=bool), mode="1")  # few bytes, 1.44 MP > max_pixels of 1 MP
    assert len(bilevel) < 10_000
    _assert_error(server.post("/predict", files=_files([bilevel])), 422, "image_too_large")


def test_bad_requests_are_4xx_json(server, pngs):
    _assert_error(server.post("/predict", content=b"hello", headers={"content-type": "text/plain"}), 415,
                  "unsupported_media_type")
    _assert_error(server.post("/predict", content=pngs[0], headers={"content-type": "image/png"}), 415)
    _assert_error(server.post("/predict", content=b'{"images": [', headers={"content-type": "application/json"}),
                  400, "bad_json")
    _assert_error(server.post("/predict", json={"images": ["***not base64***"]}), 400, "bad_base64")
    _assert_error(server.post("/predict", json={"pictures": []}), 400, "bad_request")
    _assert_error(server.post("/predict", json={"images": []}), 400, "no_images")
    _assert_error(server.post("/predict", json={"images": [base64.b64encode(pngs[0]).decode()], "top_k": 0}), 400)
    _assert_error(server.post("/predict?top_k=abc", files=_files(pngs[:1])), 400, "bad_request")
    _assert_error(server.post("/predict", content=b"--x\r\ngarbage",
                              headers={"content-type": "multipart/form-data; boundary=x"}), 400)
    _assert_error(server.get("/nowhere"), 404, "not_found")
    _assert_error(server.get("/predict"), 405, "method_not_allowed")


def test_limits_are_413(server, pngs):
    _assert_error(server.post("/predict", files=_files(pngs[:9])), 413, "too_many_images")
    _assert_error(server.post("/predict", json={"images": [base64.b64encode(pngs[0]).decode()] * 9}), 413,
                  "too_many_images")
    big = np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)  # ~480 KB of noise as PNG
    _assert_error(server.post("/predict", files=_files([_png(big)])), 413, "payload_too_large")

    def chunks():  # no Content-Length (chunked): the limit must hold on the bytes actually read
        for _ in range(30):
            yield b"x" * 10_000

    _assert_error(server.post("/predict", content=chunks(), headers={"content-type": "application/json"}), 413,
                  "payload_too_large")


def test_concurrent_burst_all_succeed(server, bundle, pngs):
    expected = _expected(bundle, pngs)

    def one(i: int) -> tuple[int, int, str]:
        if i % 2:
            r = server.post("/predict", files=_files([pngs[i]]))
        else:
            r = server.post("/predict", json={"images": [base64.b64encode(pngs[i]).decode()]})
        return i, r.status_code, r.json()["predictions"][0]["predicted_class"] if r.status_code == 200 else r.text

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(24)))
    assert [s for _, s, _ in results] == [200] * 24
    assert [c for _, _, c in results] == [e["predicted_class"] for e in expected]


def test_still_serving_after_bad_inputs(server, pngs):
    server.post("/predict", files=_files([b"\x89PNG\r\n\x1a\nbroken"]))
    server.post("/predict", content=b"x", headers={"content-type": "text/plain"})
    assert server.get("/health").json() == {"status": "ok"}
    assert server.post("/predict", files=_files(pngs[:1])).status_code == 200


def test_api_key(predictor, pngs, one_thread):
    srv, thread, port = start_in_thread(create_app(predictor, LIMITS, api_key=KEY))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.get("/health").status_code == 200
            _assert_error(c.get("/model"), 401, "unauthorized")
            _assert_error(c.get("/model", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
            _assert_error(c.post("/predict", files=_files(pngs[:1])), 401, "unauthorized")
            _assert_error(c.post("/predict", files=_files(pngs[:1]), headers={"X-API-Key": KEY + "x"}), 401)
            assert c.get("/model", headers={"X-API-Key": KEY}).status_code == 200
            r = c.post("/predict", files=_files(pngs[:2]), headers={"X-API-Key": KEY})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 2
            spec = c.get("/openapi.json").json()  # the docs stay readable; they declare the header
            assert "X-API-Key" in str(spec["components"]["securitySchemes"])
    finally:
        assert stop_thread(srv, thread)


def test_decode_timeout_is_408(predictor, pngs, one_thread):
    def slow_decoder(data: bytes, name: str, max_pixels: int) -> np.ndarray:
        time.sleep(1.0)
        return decode_image(data, name, max_pixels)

    limits = ServiceLimits(decode_timeout_s=0.2, inline_max_pixels=0)  # through the pool
    srv, thread, port = start_in_thread(create_app(predictor, limits, decoder=slow_decoder))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            t0 = time.monotonic()
            _assert_error(c.post("/predict", files=_files(pngs[:1])), 408, "decode_timeout")
            assert time.monotonic() - t0 < 0.9
            assert c.get("/health").status_code == 200
    finally:
        assert stop_thread(srv, thread)


def test_model_failure_is_500_json_and_server_survives(predictor, pngs, one_thread):
    class Broken:
        classes, input_spec, meta = predictor.classes, predictor.input_spec, {}

        def logits(self, batch):
            raise RuntimeError("boom")

    srv, thread, port = start_in_thread(create_app(Broken(), LIMITS))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            body = _assert_error(c.post("/predict", files=_files(pngs[:1])), 500, "internal_error")
            assert body["detail"].startswith("internal error; see the server log, id=") and "boom" not in body["detail"]
            assert c.get("/health").status_code == 200
    finally:
        assert stop_thread(srv, thread)


def test_decode_image_contract():
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(_png_claiming(50_000, 50_000), "x.png")


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def test_serve_function_and_cli(bundle, monkeypatch):
    """``serve`` builds the app and hands it to uvicorn (not started here); the CLI maps its flags onto it."""
    import uvicorn
    from rich.console import Console

    from transferkit import api
    from transferkit.api.serve_job import serve
    from transferkit.cli.main import main

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: ran.append(self.config))
    out = io.StringIO()
    serve(bundle, host="0.0.0.0", port=8123, console=Console(file=out, width=300))
    assert "warning" in out.getvalue() and ran[-1].host == "0.0.0.0" and ran[-1].port == 8123
    monkeypatch.setenv("TRANSFERKIT_API_KEY", "from-env")
    out = io.StringIO()
    serve(bundle, host="0.0.0.0", console=Console(file=out, width=300))
    assert "warning" not in out.getvalue() and "API key required" in out.getvalue()
    with pytest.raises(ValueError, match="backend"):
        serve(bundle, backend="tensorflow", console=Console(file=io.StringIO()))

    calls = []
    monkeypatch.setattr(api, "serve", lambda config, console: calls.append(config))
    assert main(["serve", str(bundle), "--port", "9001", "--max-images", "4", "--api-key", "k",
                 "--backend", "onnx", "--decode-timeout", "2.5", "--max-upload-mb", "3"]) == 0
    c = calls[-1]
    assert c.model == str(bundle) and c.port == 9001 and c.host == "127.0.0.1" and c.max_images == 4
    assert c.api_key == "k" and c.backend == "onnx" and c.decode_timeout_s == 2.5
    assert c.max_upload_mb == 3
    assert c.max_request_mp == 128 and c.max_inflight_mp is None and c.decode_workers == 2
    assert c.body_timeout_s == 30 and not c.expose_lineage and not c.docs
    assert main(["serve", str(bundle), "--max-request-mp", "50", "--max-inflight-mp", "200", "--decode-workers", "3",
                 "--body-timeout", "7", "--expose-lineage", "--docs"]) == 0
    c = calls[-1]
    assert c.max_request_mp == 50 and c.max_inflight_mp == 200 and c.decode_workers == 3
    assert c.body_timeout_s == 7 and c.expose_lineage and c.docs


def test_onnx_backend_agrees_with_torch(bundle, pngs, one_thread, tmp_path):
    """The ONNX Runtime backend serves the same predictions as PyTorch (skipped until export exists)."""
    pytest.importorskip("onnxruntime")
    export = pytest.importorskip("transferkit.exporting")
    if not hasattr(export, "export_onnx"):
        pytest.skip("transferkit.exporting.export_onnx not available")
    from transferkit.api.serve_job import load_service_predictor
    from transferkit.bundle import load_bundle

    model, meta = load_bundle(bundle)
    export.export_onnx(model, meta, tmp_path / "model.onnx")
    onnx_predictor = load_service_predictor(tmp_path, backend="onnx", threads=1)
    srv, thread, port = start_in_thread(create_app(onnx_predictor, LIMITS, backend_name="onnx"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            info = c.get("/model").json()
            assert info["backend"] == "onnx" and info["classes"] == CLASSES
            r = c.post("/predict?top_k=2", files=_files(pngs[:4]))
            assert r.status_code == 200, r.text
            for got, want in zip(r.json()["predictions"], _expected(bundle, pngs[:4], top_k=2), strict=True):
                assert got["predicted_class"] == want["predicted_class"]
                assert got["probability"] == pytest.approx(want["probability"], abs=1e-4)
    finally:
        assert stop_thread(srv, thread)


def test_serve_and_predict_agree_on_a_centre_cropped_photo(tmp_path):
    """A shorter_crop model (EfficientNet-Lite0 at 64 px, bicubic): the service (create_app + test client) and
    ``predict`` give the same probabilities for the same non-square photo, which decode_to_size reduces (it is over
    4× the 73-px shorter-side resize) without moving the crop."""
    import torch
    from fastapi.testclient import TestClient

    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.bundle import save_bundle
    from transferkit.inference import decode_to_size, preprocess

    torch.manual_seed(0)
    model = create_backbone("efficientnet_lite0", num_classes=3, img_size=64).eval()
    path = save_bundle(model, {"classes": CLASSES[:3]}, tmp_path / "lite")
    rng = np.random.default_rng(0)
    photo = np.kron(rng.integers(0, 256, (31, 52, 3)), np.ones((10, 10, 1))).astype(np.uint8)  # 310 × 520, smooth
    data = _png(photo)
    (tmp_path / "photo.png").write_bytes(data)
    spec = TorchPredictor.load(path).input_spec
    reduced = decode_to_size(data, "photo.png", size=spec)
    assert reduced.shape == (155, 260, 3)  # one factor (2) for both axes: the aspect ratio is kept
    full = preprocess([photo], spec)
    assert float((preprocess([reduced], spec) - full).abs().mean()) < 0.05  # the same crop, give or take resampling
    want = tk.predict(path, [tmp_path / "photo.png"], top_k=3, progress=False)[0]
    with TestClient(create_app(TorchPredictor.load(path), LIMITS)) as client:
        r = client.post("/predict?top_k=3", files=[("files", ("photo.png", data, "image/png"))])
        assert r.status_code == 200, r.text
        got = r.json()["predictions"][0]
        info = client.get("/model").json()
    assert [t["class"] for t in got["top"]] == [want[f"top{i}_class"] for i in (1, 2, 3)]
    assert [t["probability"] for t in got["top"]] == [want[f"top{i}_probability"] for i in (1, 2, 3)]
    assert info["input_spec"]["resize"] == "shorter_crop" and "centre 64×64 crop" in info["preprocessing"]
