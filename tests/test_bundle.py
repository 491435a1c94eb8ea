import json

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.bundle import BundleError, load_bundle, resolve_bundle, save_bundle


def test_round_trip_predictions_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=3, cut_at="conv2").eval()
    path = save_bundle(model, {"classes": ["a", "b", "c"], "lineage": {"seed": 4}}, tmp_path / "b")
    loaded, meta = load_bundle(path)
    x = torch.randn(5, 1, 28, 28)
    assert torch.allclose(model(x), loaded(x))
    assert meta["classes"] == ["a", "b", "c"] and meta["lineage"]["seed"] == 4
    assert meta["architecture"]["cut_at"] == "conv2" and meta["input_spec"]["channels"] == 1
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "transferkit.json"]


def test_failed_save_leaves_previous_bundle_intact(tmp_path, monkeypatch):
    model = create_backbone("seed_cnn", num_classes=2)
    save_bundle(model, {"classes": ["x", "y"], "lineage": {"v": 1}}, tmp_path / "b")
    import safetensors.torch

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(model, {"classes": ["x", "y"], "lineage": {"v": 2}}, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "transferkit.json").read_text())["lineage"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no half-written temporary directory left


def test_mismatched_weights_and_bad_paths_are_named(tmp_path):
    save_bundle(create_backbone("seed_cnn", num_classes=2), {"classes": ["x", "y"]}, tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "transferkit.json").read_text())
    meta["architecture"]["num_classes"] = 4
    (tmp_path / "b" / "transferkit.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"shape mismatches .*head.weight: file \(2, 64\) vs model \(4, 64\)"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="no such bundle"):
        resolve_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a transferkit bundle"):
        resolve_bundle(tmp_path / "empty")


def test_class_names_must_match_outputs(tmp_path):
    with pytest.raises(BundleError, match="3 class names for a model with 2 outputs"):
        save_bundle(create_backbone("seed_cnn", num_classes=2), {"classes": ["a", "b", "c"]}, tmp_path / "b")


def _photo(h: int = 48, w: int = 80):
    import numpy as np

    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_old_bundles_without_the_resize_fields_still_squash_exactly_as_before(tmp_path):
    """A bundle written before InputSpec.resize existed (here: a MobileNetV2, now a shorter_crop architecture) loads
    as ``squash`` and predicts with the plain resize it was trained with, bit for bit."""
    import torch.nn.functional as F

    from transferkit.data.prepare import TensorBatches
    from transferkit.inference import TorchPredictor, predict_batch, preprocess

    torch.manual_seed(0)
    model = create_backbone("mobilenet_v2", num_classes=3, img_size=64).eval()
    assert model.input_spec.resize == "shorter_crop"
    path = save_bundle(model, {"classes": ["a", "b", "c"]}, tmp_path / "old")
    meta = json.loads((path / "transferkit.json").read_text())
    for key in ("resize", "crop_pct", "interpolation"):
        del meta["input_spec"][key]
    (path / "transferkit.json").write_text(json.dumps(meta))

    predictor = TorchPredictor.load(path)
    spec = predictor.input_spec
    assert (spec.resize, spec.crop_pct, spec.interpolation) == ("squash", 1.0, "bilinear")
    photo = _photo()
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float()  # the resize of every release before this field
    old = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    old = old.round().clamp(0, 255).to(torch.uint8)
    want = TensorBatches(old, None, spec.mean, spec.std).__getitems__([0])
    assert torch.equal(preprocess([photo], spec), want)
    row = predict_batch(predictor, [photo], top_k=3)[0]
    probs = torch.softmax(predictor.logits(want), 1)[0]
    assert row["probability"] == pytest.approx(float(probs.max()), abs=1e-6)


def test_new_bundles_round_trip_the_evaluation_transform(tmp_path):
    model = create_backbone("efficientnet_lite0", num_classes=2, img_size=64).eval()
    path = save_bundle(model, {"classes": ["a", "b"]}, tmp_path / "b")
    stored = json.loads((path / "transferkit.json").read_text())["input_spec"]
    assert (stored["resize"], stored["crop_pct"], stored["interpolation"]) == ("shorter_crop", 0.875, "bicubic")
    loaded, _ = load_bundle(path)
    assert loaded.input_spec == model.input_spec
    assert loaded.input_spec.to_dict() == model.input_spec.to_dict()
