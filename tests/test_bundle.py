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
