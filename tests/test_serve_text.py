"""The HTTP service for text and multi-task models (issue 27): ``{"texts": [...]}``, limits, long texts (truncated
and flagged, or refused), bad bodies, per-task answers and unknown task names — with PyTorch and ONNX Runtime."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tests.test_export_text import TASKS, tiny_text_model  # noqa: E402
from transferkit.api.export_job import export  # noqa: E402
from transferkit.bundle import save_bundle  # noqa: E402
from transferkit.inference import OnnxPredictor, TorchPredictor, predict_texts  # noqa: E402
from transferkit.serve import ServiceLimits, create_app  # noqa: E402

LIMITS = ServiceLimits(max_texts=4, max_text_chars=500)
GOOD = ["Shares of Acme rose after profits beat forecasts.", "ok"]
LONG = "the match ended " * 30  # far more than the model's 24 tokens


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_text")
    single = save_bundle(tiny_text_model(3), {"classes": ["sports", "business", "science"]}, root / "single")
    classes = [f"{t['name']}:{c}" for t in TASKS for c in t["classes"]]
    multi = save_bundle(tiny_text_model(5, seed=1), {"classes": classes, "tasks": TASKS}, root / "multi")
    export(single, out=root / "single_onnx")
    export(multi, out=root / "multi_onnx")
    return {"single": single, "multi": multi, "single_onnx": root / "single_onnx", "multi_onnx": root / "multi_onnx"}


def _predictor(bundles, name):
    return OnnxPredictor.load(bundles[name]) if name.endswith("_onnx") else TorchPredictor.load(bundles[name])


def _post(client, body, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/predict", content=raw, headers={"content-type": "application/json"}, **kw)


def _error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    return body["detail"]


@pytest.mark.parametrize("name", ["single", "single_onnx"])
def test_texts_are_predicted_as_the_library_predicts_them(bundles, name, one_thread):
    predictor = _predictor(bundles, name)
    with TestClient(create_app(predictor, LIMITS, backend_name="onnx" if "onnx" in name else "torch")) as client:
        r = _post(client, {"texts": [*GOOD, LONG], "top_k": 2})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        want = predict_texts(TorchPredictor.load(bundles["single"]), [*GOOD, LONG], top_k=2)
        assert [p["index"] for p in preds] == [0, 1, 2]
        assert [p["truncated"] for p in preds] == [False, False, True] and preds[2]["tokens"] == 24
        for got, ref in zip(preds, want, strict=True):
            assert got["predicted_class"] == ref["predicted_class"] and len(got["top"]) == 2
            assert got["probability"] == pytest.approx(ref["probability"], abs=1e-5)
        info = client.get("/model").json()
        assert info["input_spec"]["modality"] == "text" and info["input_spec"]["extra"]["max_length"] == 24
        assert info["limits"]["max_texts"] == 4 and info["limits"]["long_texts"] == "truncate"
        assert "tokenise" in info["preprocessing"] and "tasks" not in info
        schema = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
        assert list(schema) == ["application/json"] and "texts" in schema["application/json"]["schema"]["properties"]


def test_bad_text_requests_are_refused_with_the_reason_and_the_service_goes_on(bundles, one_thread):
    with TestClient(create_app(TorchPredictor.load(bundles["single"]), LIMITS)) as client:
        assert "texts[1]: empty text" in _error(_post(client, {"texts": ["fine", ""]}), 422, "empty_text")
        assert "texts[0]: empty text" in _error(_post(client, {"texts": [" \n\t "]}), 422, "empty_text")
        detail = _error(_post(client, b'{"texts": ["caf\xe9 au lait"]}'), 400, "bad_encoding")
        assert "not UTF-8" in detail and "0xe9 at offset 15" in detail
        detail = _error(_post(client, {"texts": ["a"] * 5}), 413, "too_many_texts")
        assert "5 texts" in detail and "the limit is 4" in detail
        detail = _error(_post(client, {"texts": ["x" * 501]}), 413, "text_too_large")
        assert "501 characters; the limit is 500" in detail
        detail = _error(_post(client, b'{"texts": ["ok", "\\ud800 lone"]}'), 422, "bad_text")
        assert "texts[1]: not valid Unicode" in detail and "U+D800" in detail
        assert "texts[0]: expected a string, got int" in _error(_post(client, {"texts": [3]}), 400, "bad_request")
        assert _error(_post(client, {"texts": []}), 400, "no_texts")
        assert '{"texts"' in _error(_post(client, {"images": ["aGk="]}), 400, "bad_request")
        _error(_post(client, b'{"texts": ["a",'), 400, "bad_json")
        _error(_post(client, {"texts": ["a"], "top_k": 0}), 400, "bad_request")
        r = client.post("/predict", files={"files": ("a.txt", b"hello", "text/plain")})
        assert "this model takes texts" in _error(r, 415, "unsupported_media_type")
        detail = _error(_post(client, {"texts": ["a"], "tasks": ["topic"]}), 400, "bad_request")
        assert "single task" in detail
        assert _post(client, {"texts": GOOD}).status_code == 200  # still serving


def test_long_texts_can_be_refused_with_the_limit(bundles, one_thread):
    limits = ServiceLimits(max_texts=4, max_text_chars=500, long_texts="refuse")
    with TestClient(create_app(OnnxPredictor.load(bundles["single_onnx"]), limits, backend_name="onnx")) as client:
        detail = _error(_post(client, {"texts": ["short", LONG]}), 422, "text_too_long")
        assert "texts[1]" in detail and "limit of 24 tokens" in detail
        r = _post(client, {"texts": GOOD})
        assert r.status_code == 200 and not any(p["truncated"] for p in r.json()["predictions"])
    with pytest.raises(ValueError, match=r"long_texts: expected one of truncate, refuse, got 'cut'"):
        ServiceLimits(long_texts="cut")


@pytest.mark.parametrize("name", ["multi", "multi_onnx"])
def test_multitask_answers_per_task_and_names_unknown_tasks(bundles, name, one_thread):
    with TestClient(create_app(_predictor(bundles, name), LIMITS)) as client:
        r = _post(client, {"texts": GOOD, "top_k": 5})
        assert r.status_code == 200, r.text
        pred = r.json()["predictions"][0]
        assert set(pred["tasks"]) == {"topic", "tone"} and len(pred["tasks"]["tone"]["top"]) == 2
        want = predict_texts(TorchPredictor.load(bundles["multi"]), GOOD[:1])[0]["tasks"]
        assert pred["tasks"]["topic"]["predicted_class"] == want["topic"]["predicted_class"]
        r = _post(client, {"texts": GOOD, "tasks": ["tone"]})
        assert set(r.json()["predictions"][1]["tasks"]) == {"tone"}
        r = _post(client, {"texts": GOOD, "tasks": ["tone"]}, params={"tasks": "topic"})  # the query wins
        assert set(r.json()["predictions"][0]["tasks"]) == {"topic"}
        detail = _error(_post(client, {"texts": GOOD, "tasks": ["topic", "colour"]}), 400, "unknown_task")
        assert detail == "unknown task 'colour'; valid tasks: topic, tone"
        detail = _error(_post(client, {"texts": GOOD}, params={"tasks": "mood,size"}), 400, "unknown_task")
        assert detail == "unknown tasks 'mood', 'size'; valid tasks: topic, tone"
        info = client.get("/model").json()
        assert info["tasks"] == [{"name": t["name"], "classes": t["classes"]} for t in TASKS]


def test_multitask_image_model_takes_tasks_as_a_form_field(tmp_path, one_thread):
    from PIL import Image

    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    classes = [f"{t['name']}:{c}" for t in TASKS for c in t["classes"]]
    bundle = save_bundle(create_backbone("seed_cnn", num_classes=5), {"classes": classes, "tasks": TASKS},
                         tmp_path / "b")
    buf = io.BytesIO()
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(buf, "PNG")
    with TestClient(create_app(TorchPredictor.load(bundle), LIMITS)) as client:
        r = client.post("/predict", files={"files": ("a.png", buf.getvalue(), "image/png")}, data={"tasks": "tone"})
        assert r.status_code == 200, r.text
        assert set(r.json()["predictions"][0]["tasks"]) == {"tone"}
        r = client.post("/predict", files={"files": ("a.png", buf.getvalue(), "image/png")}, data={"tasks": "size"})
        assert _error(r, 400, "unknown_task") == "unknown task 'size'; valid tasks: topic, tone"


def test_serve_loads_text_and_multitask_models_and_maps_the_cli_flags(bundles, monkeypatch):
    from transferkit import api
    from transferkit.api.serve_job import load_service_predictor
    from transferkit.cli.main import main

    assert load_service_predictor(bundles["multi"]).meta["tasks"][0]["name"] == "topic"
    assert load_service_predictor(bundles["single_onnx"], backend="onnx").input_spec.tokenizer is not None
    calls = []
    monkeypatch.setattr(api, "serve", lambda config, console: calls.append(config))
    assert main(["serve", str(bundles["single"]), "--max-texts", "8", "--max-text-chars", "99",
                 "--long-texts", "refuse"]) == 0
    assert (calls[-1].max_texts, calls[-1].max_text_chars, calls[-1].long_texts) == (8, 99, "refuse")
    assert main(["serve", str(bundles["single"])]) == 0
    assert (calls[-1].max_texts, calls[-1].max_text_chars, calls[-1].long_texts) == (64, 20_000, "truncate")
