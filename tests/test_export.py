"""Export to ONNX / TorchScript: every bundle kind against PyTorch on real Fashion-MNIST images, the dynamic batch
axis, the metadata round trip, LoRA merging, refusals with their reasons, the CLI and bad input."""

import copy
import json

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit import api
from transferkit.backbones import create_backbone
from transferkit.backbones.cache import weights_hash
from transferkit.backbones.fused import FeatureFusionBackbone
from transferkit.backbones.registry import backbone_info
from transferkit.bundle import BundleError, load_bundle, save_bundle
from transferkit.cli.main import main
from transferkit.exporting import ExportError, export_onnx, load_torchscript, verify_export
from transferkit.fusion.model import FusedModel
from transferkit.inference import ONNX_FORMAT, OnnxPredictor, TorchPredictor, preprocess, preprocessing_text
from transferkit.strategies.lora import inject_lora, lora_targets

CLASSES = ["T-shirt", "trouser", "pullover"]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny models: one intra-op thread is fastest, above all on a shared CPU."""


@pytest.fixture(scope="module")
def images(fashion_npz):
    """Seven real Fashion-MNIST test images, each of another class (uint8, 28 × 28)."""
    x = np.load(fashion_npz)["x_test"]
    return list(x[::40][:7])


@pytest.fixture(scope="module")
def trained(fashion_npz, tmp_path_factory):
    """A seed_cnn run directory (1 epoch on real data, 10 classes): the plain case and the LoRA source."""
    out = tmp_path_factory.mktemp("export") / "pretrain"
    api.pretrain(data=f"npz:{fashion_npz}", backbone="seed_cnn", epochs=1, out=out, progress=False)
    return out


def _out(capsys) -> str:
    """Captured stdout with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


def _bundle(model, path, classes=CLASSES, lineage=None):
    return save_bundle(model.eval(), {"classes": classes, "lineage": lineage or {"kind": "test"}}, path)


def _check_onnx(onnx_path, bundle, images):
    """ONNX Runtime vs PyTorch on the same preprocessed real images, batches 1 and 7; metadata round trip."""
    torch_pred = TorchPredictor.load(bundle)
    onnx_pred = OnnxPredictor.load(onnx_path)
    assert onnx_pred.classes == torch_pred.classes
    spec = torch_pred.input_spec
    got_spec = onnx_pred.input_spec
    assert (got_spec.channels, got_spec.size, got_spec.mean, got_spec.std) == \
        (spec.channels, spec.size, spec.mean, spec.std)
    assert (got_spec.resize, got_spec.crop_pct, got_spec.interpolation) == \
        (spec.resize, spec.crop_pct, spec.interpolation)
    assert onnx_pred.meta["preprocessing"] == preprocessing_text(spec)
    assert onnx_pred.meta["lineage"] == (torch_pred.meta.get("lineage") or {})
    assert onnx_pred.session.get_modelmeta().custom_metadata_map["transferkit.format"] == ONNX_FORMAT
    x = preprocess(images, spec)
    for batch in (x[:1], x):
        ref, got = torch_pred.logits(batch), onnx_pred.logits(batch)
        assert got.shape == ref.shape == (len(batch), len(torch_pred.classes))
        assert float((got - ref).abs().max()) <= 1e-4
        assert torch.equal(got.argmax(1), ref.argmax(1))


def _check_torchscript(pt_path, bundle, images):
    torch_pred = TorchPredictor.load(bundle)
    module, meta = load_torchscript(pt_path)
    assert meta["classes"] == torch_pred.classes and meta["format"] == ONNX_FORMAT
    assert meta["input_spec"]["size"] == list(torch_pred.input_spec.size)
    assert meta["preprocessing"] == preprocessing_text(torch_pred.input_spec)
    x = preprocess(images, torch_pred.input_spec)
    for batch in (x[:1], x):
        ref = torch_pred.logits(batch)
        with torch.no_grad():
            got = module(batch)
        assert float((got - ref).abs().max()) <= 1e-4 and torch.equal(got.argmax(1), ref.argmax(1))


def test_trained_plain_bundle_exports_to_the_default_place_with_a_record(trained, images):
    res = api.export(trained, verify_inputs=preprocess(images, load_bundle(trained)[0].input_spec))
    path = trained / "export" / "model.onnx"
    assert res["path"] == str(path) and path.is_file()
    _check_onnx(path, trained, images)
    assert OnnxPredictor.load(trained / "export").meta["lineage"]["kind"] == "pretrain"
    api.export(trained, format="torchscript")
    _check_torchscript(trained / "export" / "model.pt", trained, images)
    record = json.loads((trained / "export" / "export.json").read_text())
    assert set(record) == {"model.onnx", "model.pt"}
    onnx_rec = record["model.onnx"]
    assert onnx_rec["format"] == "onnx" and onnx_rec["opset"] == 17 and len(onnx_rec["classes"]) == 10
    assert onnx_rec["verification"]["max_abs_diff"] <= 1e-4 and onnx_rec["verification"]["argmax_equal"]
    assert set(onnx_rec["verification"]["batches"]) == {"batch_1", "batch_7"}
    assert onnx_rec["input_spec"]["size"] == [28, 28] and onnx_rec["kind"].startswith("plain (seed_cnn")


@pytest.mark.parametrize("kind", ["resnet_small", "soup"])
def test_batchnorm_and_soup_bundles_export_to_both_formats(kind, images, tmp_path):
    torch.manual_seed(0)
    if kind == "soup":  # a uniform soup: the averaged weights of two models, a plain bundle
        a, b = create_backbone("seed_cnn", num_classes=3), create_backbone("seed_cnn", num_classes=3)
        sb = b.state_dict()
        a.load_state_dict({k: (v + sb[k]) / 2 if v.is_floating_point() else v for k, v in a.state_dict().items()})
        model, lineage = a, {"kind": "fuse", "method": "soup_uniform"}
    else:
        model, lineage = create_backbone("resnet_small", num_classes=3), None
        model.train()
        with torch.no_grad():  # give BatchNorm non-trivial running statistics
            model(torch.randn(16, 1, 28, 28) * 2 + 0.3)
    bundle = _bundle(model, tmp_path / "b", lineage=lineage)
    api.export(bundle, out=tmp_path / "out")
    _check_onnx(tmp_path / "out" / "model.onnx", bundle, images)
    api.export(bundle, format="torchscript", out=tmp_path / "ts" / "m.pt")
    _check_torchscript(tmp_path / "ts" / "m.pt", bundle, images)


def test_lora_bundle_is_merged_then_exported(trained, images, tmp_path, capsys):
    source, _ = load_bundle(trained)
    model = copy.deepcopy(source)
    model.reset_classifier(3)
    inject_lora(model, lora_targets(model), r=4, alpha=4)
    model.adapter.update({"bn": "frozen", "base": {"architecture": source.config(),
                                                   "weights_hash": weights_hash(source)}})
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapters change the function
            torch.nn.init.normal_(p, std=0.05)
    bundle = _bundle(model, tmp_path / "lora", lineage={"source": str(trained), "strategy": "lora"})
    assert load_bundle(bundle)[1]["adapter"]
    res = api.export(bundle, out=tmp_path / "x" / "model.onnx")
    assert res["kind"] == "LoRA (seed_cnn)" and "merged" in res["notes"][0]
    _check_onnx(tmp_path / "x" / "model.onnx", bundle, images)  # against the unmerged adapter model
    assert main(["export", str(bundle), "--format", "torchscript", "--out", str(tmp_path / "x" / "model.pt")]) == 0
    assert "LoRA adapters merged" in _out(capsys)
    _check_torchscript(tmp_path / "x" / "model.pt", bundle, images)


@pytest.mark.parametrize("method", ["average", "weighted", "stacking", "gating"])
def test_fused_ensembles_export(method, images, tmp_path):
    torch.manual_seed(0)
    members = [create_backbone("seed_cnn", num_classes=3), create_backbone("lenet", num_classes=3)]
    fused = FusedModel(members, method)
    if method == "weighted":
        fused.weights.copy_(torch.tensor([0.3, 0.7]))
    if method == "stacking":
        fused.stack_coef.copy_(torch.randn_like(fused.stack_coef))
    bundle = _bundle(fused, tmp_path / "f")
    res = api.export(bundle, out=tmp_path / "f.onnx")
    assert res["kind"] == f"fused ensemble ({method})"
    _check_onnx(tmp_path / "f.onnx", bundle, images)
    if method in ("stacking", "gating"):  # the rules with learnt tensors (kept short: the CPU is shared)
        api.export(bundle, format="torchscript", out=tmp_path / "f.pt")
        _check_torchscript(tmp_path / "f.pt", bundle, images)


def test_feature_fusion_backbone_exports(images, tmp_path):
    torch.manual_seed(0)
    ff = FeatureFusionBackbone([create_backbone("seed_cnn"), create_backbone("lenet")], mode="sum", width=16,
                               num_classes=3)
    bundle = _bundle(ff, tmp_path / "ff")
    assert api.export(bundle, out=tmp_path / "ff.onnx")["kind"] == "feature-fusion backbone (sum)"
    _check_onnx(tmp_path / "ff.onnx", bundle, images)
    api.export(bundle, format="torchscript", out=tmp_path / "ff.pt")
    _check_torchscript(tmp_path / "ff.pt", bundle, images)


def test_members_that_resize_inside_the_model_are_refused_for_onnx_but_export_to_torchscript(images, tmp_path):
    torch.manual_seed(0)
    small = create_backbone("seed_cnn", num_classes=3)  # 28 px
    large = create_backbone("seed_cnn", num_classes=3, img_size=32)  # the joint input is 32 px
    bundle = _bundle(FusedModel([small, large], "average"), tmp_path / "mix")
    with pytest.raises(ExportError, match=r"cannot export this fused ensemble \(average\) bundle to ONNX: .*"
                                          r"antialiased bilinear resize.*member 0 \(seed_cnn: \(32, 32\) → "
                                          r"\(28, 28\)\).*What exports to ONNX: plain models"):
        api.export(bundle, out=tmp_path / "mix.onnx")
    assert not (tmp_path / "mix.onnx").exists()
    assert main(["export", str(bundle), "--out", str(tmp_path / "mix2.onnx")]) == 2
    api.export(bundle, format="torchscript", out=tmp_path / "mix.pt")
    _check_torchscript(tmp_path / "mix.pt", bundle, images)


@pytest.mark.skipif(not backbone_info("mobilenet_v2").weights_available(), reason="MobileNetV2 weights not installed")
def test_mobilenet_v2_exports_at_64_px(images, tmp_path):
    model = create_backbone("mobilenet_v2", num_classes=3, pretrained=True, img_size=64)
    bundle = _bundle(model, tmp_path / "mb")
    api.export(bundle, out=tmp_path / "mb.onnx")
    _check_onnx(tmp_path / "mb.onnx", bundle, images)  # grey images → RGB 64 px by the shared preprocessing


def test_an_export_that_does_not_reproduce_pytorch_is_deleted_with_the_figures(tmp_path):
    torch.manual_seed(0)
    a, b = create_backbone("seed_cnn", num_classes=3).eval(), create_backbone("seed_cnn", num_classes=3).eval()
    path = export_onnx(a, {"classes": CLASSES}, tmp_path / "a.onnx")
    with pytest.raises(ExportError, match=r"does not reproduce PyTorch: max \|Δ logits\| = .* \(allowed 0.0001\), "
                                          r"argmax identical: .*the file was deleted"):
        verify_export(path, b, "onnx")
    assert not path.exists()


def test_bad_input(tmp_path, capsys):
    with pytest.raises(BundleError, match="no such bundle"):
        api.export(tmp_path / "nope")
    bundle = _bundle(create_backbone("seed_cnn", num_classes=3), tmp_path / "b")
    with pytest.raises(ValueError, match="format: expected one of onnx, torchscript, got 'tflite'"):
        api.export(bundle, format="tflite")
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "no such bundle" in _out(capsys)
    assert main(["export", str(bundle), "--format", "tflite"]) == 2
    assert "--format: expected one of onnx, torchscript, got 'tflite'" in _out(capsys)
    assert main(["export"]) == 2
    assert "MODEL" in _out(capsys)
    assert not (tmp_path / "b.export").exists()


def test_transferkit_export_is_the_job_even_after_importing_the_exporting_module(tmp_path):
    import transferkit.exporting  # noqa: F401 — a module of another name: tk.export stays the job function

    bundle = _bundle(create_backbone("seed_cnn", num_classes=3), tmp_path / "b")
    res = tk.export(bundle, format="torchscript")
    assert res["path"] == str(tmp_path / "b.export" / "model.pt")
    assert tk.api.export is api.export


def test_onnx_metadata_carries_the_centre_crop_and_predict_onnx_applies_it(tmp_path):
    """A shorter_crop model: the metadata holds the transform (fields and words), OnnxPredictor reads it back, and
    ``predict --backend onnx`` on a non-square photo gives PyTorch's probabilities; an export from before the fields
    existed reads as squash."""
    from PIL import Image

    from transferkit.inference import spec_from_metadata

    torch.manual_seed(0)
    model = create_backbone("mobilenet_v2", num_classes=3, img_size=64)
    bundle = _bundle(model, tmp_path / "mb")
    api.export(bundle, out=tmp_path / "mb.onnx")
    props = OnnxPredictor.load(tmp_path / "mb.onnx").session.get_modelmeta().custom_metadata_map
    stored = json.loads(props["transferkit.input_spec"])
    assert (stored["resize"], stored["crop_pct"], stored["interpolation"]) == ("shorter_crop", 0.875, "bilinear")
    assert "the shorter side is 73" in props["transferkit.preprocessing"]  # floor(64 / 0.875)
    assert "centre 64×64 crop" in props["transferkit.preprocessing"]
    fields = ("channels", "size", "mean", "std", "resize", "crop_pct", "interpolation")
    onnx_spec, torch_spec = OnnxPredictor.load(tmp_path / "mb.onnx").input_spec, TorchPredictor.load(bundle).input_spec
    assert [getattr(onnx_spec, f) for f in fields] == [getattr(torch_spec, f) for f in fields]
    photo = np.random.default_rng(5).integers(0, 256, (60, 110, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "wide.png")
    got = tk.predict(tmp_path / "mb.onnx", [tmp_path / "wide.png"], backend="onnx", top_k=3, progress=False)
    want = tk.predict(bundle, [tmp_path / "wide.png"], top_k=3, progress=False)
    for i in (1, 2, 3):
        assert got[0][f"top{i}_class"] == want[0][f"top{i}_class"]
        assert got[0][f"top{i}_probability"] == pytest.approx(want[0][f"top{i}_probability"], abs=1e-4)
    old = {k: v for k, v in stored.items() if k not in ("resize", "crop_pct", "interpolation")}
    assert spec_from_metadata(json.dumps(old)).resize == "squash"
    with pytest.raises(ValueError, match=r"input_spec.crop_pct must be a number in \(0, 1\]"):
        spec_from_metadata(json.dumps({**stored, "crop_pct": 2}))
