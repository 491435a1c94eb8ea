"""Export of text and multi-task models (issue 27): ONNX/TorchScript with the tokenizer beside, verified on texts of
several lengths; ``predict --backend onnx`` for them; refusals (unsupported operator, other modalities)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.api.export_job import export
from transferkit.backbones import create_backbone
from transferkit.bundle import BundleError, load_bundle, save_bundle
from transferkit.exporting import ExportError, export_onnx, load_torchscript, tokenizer_path
from transferkit.inference import OnnxPredictor, TorchPredictor, predict_texts

TASKS = [{"name": "topic", "classes": ["sports", "business", "science"], "start": 0, "stop": 3},
         {"name": "tone", "classes": ["calm", "urgent"], "start": 3, "stop": 5}]
TEXTS = ["Shares rose.", "The striker scored twice as United won the cup final in Paris.", "ok",
         "word " * 80,  # longer than max_length (24 tokens): truncated
         "Heavy rain and strong winds are expected in Lagos tonight."]


def tiny_text_model(num_classes: int, seed: int = 0):
    """A MiniLM-shaped BERT (2 layers, hidden 32) with MiniLM's tokenizer, built offline."""
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64).to_dict()
    torch.manual_seed(seed)
    return create_backbone("minilm", pretrained=False, hf_config=cfg, num_classes=num_classes, max_length=24)


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return save_bundle(tiny_text_model(3), {"classes": ["sports", "business", "science"]}, root / "news")


@pytest.fixture(scope="module")
def multitask_text_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt")
    classes = [f"{t['name']}:{c}" for t in TASKS for c in t["classes"]]
    return save_bundle(tiny_text_model(5, seed=1), {"classes": classes, "tasks": TASKS}, root / "mt")


def test_text_model_exports_to_onnx_with_its_tokenizer_and_predicts_like_pytorch(text_bundle, tmp_path,
                                                                                   single_thread):
    out = tmp_path / "dist"
    info = export(text_bundle, out=out)
    onnx_file, tok_file = out / "model.onnx", out / "tokenizer.json"
    assert info["path"] == str(onnx_file) and onnx_file.is_file() and tok_file.is_file()
    assert info["tokenizer"] == "tokenizer.json" and "input_ids" in info["input"]
    check = info["verification"]
    assert check["max_abs_diff"] <= 1e-4 and check["argmax_equal"]
    # texts of several lengths, one cut at max_length: the dynamic sequence and batch axes were exercised
    shapes = {name: tuple(b["shape"]) for name, b in check["batches"].items()}
    assert shapes["text_max_length"] == (1, 24) and shapes["text_short"][1] < 24
    assert len({s[1] for s in shapes.values()}) >= 2 and max(s[0] for s in shapes.values()) >= 5

    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [i.shape for i in session.get_inputs()] == [["batch", "sequence"]] * 2
    props = session.get_modelmeta().custom_metadata_map
    spec = json.loads(props["transferkit.input_spec"])
    assert spec["modality"] == "text" and spec["extra"]["max_length"] == 24 and spec["extra"]["pad_id"] == 0
    assert json.loads(props["transferkit.tokenizer"])["file"] == "tokenizer.json"
    assert "transferkit.tasks" not in props

    # the tokenizer beside is the tokenizers library's own format
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tok_file)).encode("hello world").ids[0] == 101  # [CLS]

    onnx_rows = predict_texts(OnnxPredictor.load(out), TEXTS, top_k=3)
    torch_rows = predict_texts(TorchPredictor.load(text_bundle), TEXTS, top_k=3)
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["predicted_class"] == b["predicted_class"]
        assert [t["probability"] for t in a["top"]] == pytest.approx([t["probability"] for t in b["top"]], abs=1e-5)


def test_text_model_exports_to_torchscript_too(text_bundle, tmp_path, single_thread):
    info = export(text_bundle, format="torchscript", out=tmp_path / "ts")
    module, meta = load_torchscript(info["path"])
    assert meta["tokenizer"]["file"] == "tokenizer.json" and (tmp_path / "ts" / "tokenizer.json").is_file()
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2009, 102, 0, 0]])
    model, _ = load_bundle(text_bundle)
    with torch.no_grad():
        assert torch.allclose(module(ids, (ids != 0).long()), model(ids), atol=1e-5)


def test_onnx_predictor_refuses_a_tokenizer_that_is_not_the_exported_one(text_bundle, tmp_path):
    out = tmp_path / "x"
    export(text_bundle, out=out)
    tok = out / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(BundleError, match=r"tokenizer.json: not the tokenizer this model was exported with"):
        OnnxPredictor.load(out)
    tok.unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json: missing; a text model's ONNX export needs"):
        OnnxPredictor.load(out)


def test_the_tokenizer_never_replaces_a_users_file(text_bundle, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "tokenizer.json").write_text("my own file")
    with pytest.raises(Exception, match=r"out=.*tokenizer.json exists and is not an earlier output"):
        export(text_bundle, out=out / "model.onnx")
    assert (out / "tokenizer.json").read_text() == "my own file" and not (out / "model.onnx").exists()
    info = export(text_bundle, out=out / "other.onnx")  # another name: its own tokenizer file
    assert info["tokenizer"] == "other.tokenizer.json" and tokenizer_path(out / "other.onnx").is_file()
    assert OnnxPredictor.load(out / "other.onnx").input_spec.tokenizer is not None
    export(text_bundle, out=out / "other.onnx")  # an earlier export: replaced without --overwrite


def test_multitask_text_model_exports_concatenated_logits_and_predicts_per_task(multitask_text_bundle, tmp_path,
                                                                               single_thread):
    from transferkit.api.use import predict

    info = export(multitask_text_bundle, out=tmp_path / "mt")
    assert [t["name"] for t in info["tasks"]] == ["topic", "tone"] and "side by side" in info["output"]
    predictor = OnnxPredictor.load(tmp_path / "mt")
    assert [t["name"] for t in predictor.meta["tasks"]] == ["topic", "tone"]
    rows = predict_texts(predictor, TEXTS[:2], top_k=5)
    ref = predict_texts(TorchPredictor.load(multitask_text_bundle), TEXTS[:2], top_k=5)
    for got, want in zip(rows, ref, strict=True):
        assert set(got["tasks"]) == {"topic", "tone"}
        assert len(got["tasks"]["tone"]["top"]) == 2  # top_k is cut to each task's own classes
        for task in ("topic", "tone"):
            assert got["tasks"][task]["predicted_class"] == want["tasks"][task]["predicted_class"]
            assert sum(t["probability"] for t in got["tasks"][task]["top"]) == pytest.approx(1.0, abs=1e-5)

    # transferkit predict --backend onnx: one set of columns per task
    texts = tmp_path / "in.txt"
    texts.write_text("Shares rose.\n\nThe striker scored.\n", encoding="utf-8")
    out_rows = predict(tmp_path / "mt", [texts], backend="onnx", progress=False)
    assert [r["error"] is None for r in out_rows] == [True, False, True]  # the empty line is an error row
    assert out_rows[0]["topic_class"] in TASKS[0]["classes"] and out_rows[0]["tone_class"] in TASKS[1]["classes"]


def test_multitask_verification_compares_each_tasks_argmax(multitask_text_bundle, tmp_path, monkeypatch):
    """The overall argmax can agree while a task's does not: the check is per task."""
    import transferkit.exporting as ex
    from transferkit.inference import task_heads

    heads = task_heads({"tasks": TASKS})
    ref = torch.tensor([[5.0, 0, 0, 0.9, 1.0]])
    got = torch.tensor([[5.0, 0, 0, 1.0, 0.9]])  # same overall argmax (0), other 'tone' class
    assert ex._argmax_equal(got, ref, None) and not ex._argmax_equal(got, ref, heads)

    info = export(multitask_text_bundle, out=tmp_path / "mt")
    real = ex._exported_runner

    def swapped(path, fmt, spec):
        run = real(path, fmt, spec)
        return lambda x: run(x)[:, [0, 1, 2, 4, 3]]  # the tone logits swapped

    monkeypatch.setattr(ex, "_exported_runner", swapped)
    model, meta = load_bundle(multitask_text_bundle)
    with pytest.raises(ExportError, match=r"argmax identical per task: False.*the file was deleted"):
        ex.verify_export(info["path"], model, "onnx", tolerance=1e9, meta=meta)  # only the argmax can fail
    assert not (tmp_path / "mt" / "model.onnx").exists() and not (tmp_path / "mt" / "tokenizer.json").exists()


def test_multitask_image_model_exports_and_predicts_per_task(tmp_path, single_thread):
    from transferkit.api.use import predict

    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=5)
    bundle = save_bundle(model, {"classes": [f"{t['name']}:{c}" for t in TASKS for c in t["classes"]],
                                 "tasks": TASKS}, tmp_path / "img_mt")
    info = export(bundle, out=tmp_path / "img_mt_export")
    assert info["verification"]["argmax_equal"] and "tokenizer" not in info
    from PIL import Image

    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "a.png")
    onnx_rows = predict(tmp_path / "img_mt_export", [tmp_path / "a.png"], backend="onnx", progress=False, top_k=2)
    torch_rows = predict(bundle, [tmp_path / "a.png"], progress=False, top_k=2)
    assert onnx_rows[0]["topic_class"] == torch_rows[0]["topic_class"]
    assert onnx_rows[0]["tone_probability"] == pytest.approx(torch_rows[0]["tone_probability"], abs=1e-5)


class _SvdHead(nn.Module):
    """A head using an operator the ONNX exporter has no form for (aten::linalg_svdvals)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) + torch.linalg.svdvals(x.unsqueeze(-1)).sum(-1, keepdim=True) * 0


def test_an_unsupported_operator_is_named_with_the_backbone_and_nothing_is_written(tmp_path):
    model = tiny_text_model(3).eval()
    model.head = _SvdHead(model.head)
    out = tmp_path / "never"
    with pytest.raises(ExportError, match=r"backbone 'minilm' uses the operator aten::linalg_svdvals, which the ONNX "
                                          r"exporter cannot express at opset 17.*nothing was written"):
        export_onnx(model, {"classes": ["a", "b", "c"]}, out / "model.onnx")
    assert not out.exists() or list(out.iterdir()) == []  # no model, no tokenizer, no temporary file


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_other_modalities_are_refused_by_name(tmp_path, modality):
    model = create_backbone("seed_cnn", num_classes=2)
    model.input_spec = dataclasses.replace(model.input_spec, modality=modality)
    with pytest.raises(ValueError, match=rf"a model of modality '{modality}'; this version supports image and text "
                                         r"models only \(audio models do not exist yet\)"):
        export_onnx(model, {"classes": ["a", "b"]}, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    from transferkit.serve import create_app

    predictor = TorchPredictor(model, ["a", "b"], model.input_spec, {})
    with pytest.raises(ValueError, match=rf"the HTTP service: a model of modality '{modality}'"):
        create_app(predictor)


@pytest.mark.parametrize("tasks, message", [
    ([{"name": "a", "classes": ["x"], "start": 0, "stop": 1}], r"tasks: the tasks' logits end at 1 but the model "
                                                               r"has 2 outputs"),
    ([{"name": "a", "classes": ["x", "y"], "start": 0, "stop": 3}], r"tasks\[0\] \('a'\): start/stop must be"),
    ([{"name": "a", "classes": ["x"], "start": 0, "stop": 1}, {"name": "a", "classes": ["y"], "start": 1, "stop": 2}],
     r"tasks\[1\].name 'a' is used twice"),
    ([{"name": "a,b", "classes": ["x", "y"], "start": 0, "stop": 2}], r"tasks\[0\].name must be a short printable"),
    ("all", r"tasks must be a list of 1 to 256 tasks"),
])
def test_a_bundles_tasks_are_checked(tmp_path, tasks, message):
    bundle = save_bundle(create_backbone("seed_cnn", num_classes=2), {"classes": ["a:x", "a:y"]}, tmp_path / "b")
    meta = json.loads((bundle / "transferkit.json").read_text())
    meta["tasks"] = tasks
    (bundle / "transferkit.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_texts_are_batched_by_similar_length():
    from transferkit.inference import similar_length_batches

    lengths = torch.tensor([20, 256, 18, 22, 5, 240, 19])
    batches = similar_length_batches(lengths, batch_size=4)
    assert sorted(int(i) for b in batches for i in b) == list(range(7))  # every text once
    assert all(len(b) <= 4 for b in batches)
    for b in batches:  # padding at most doubles a batch (or adds 16 tokens per text)
        lo, hi = int(lengths[b].min()), int(lengths[b].max())
        assert hi <= max(2 * lo, lo + 16)
    assert {1, 5} in [set(b.tolist()) for b in batches]  # the two long texts together, without the short ones
