"""The on-disk feature cache: hits, misses, atomic files, corruption detected and recomputed."""

import dataclasses
import logging

import pytest
import torch

from transferkit.backbones import cache_root, cached_features, create_backbone, weights_hash
from transferkit.backbones.cache import cache_key
from transferkit.backbones.features import extract_features
from transferkit.data.prepare import TensorBatches


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=3)
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    return model, TensorBatches(x, None, (0.5,), (0.5,)), tmp_path / "cache"


def _entries(root):
    return sorted(root.glob("*.safetensors"))


def test_miss_then_hit_with_identical_features(setup, caplog):
    model, data, root = setup
    assert cache_root() == root
    with caplog.at_level(logging.INFO, logger="transferkit.backbones.cache"):
        first, hit1 = cached_features(model, data, "ds-a")
        second, hit2 = cached_features(model, data, "ds-a")
    assert (hit1, hit2) == (False, True)
    assert "cache miss" in caplog.text and "cache hit" in caplog.text
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, extract_features(model, data))
    assert len(_entries(root)) == 1 and not list(root.glob("*.tmp"))  # the temp file was renamed into place


def test_key_covers_weights_data_preprocessing_and_layer(setup):
    model, data, root = setup
    cached_features(model, data, "ds-a")
    assert cached_features(model, data, "ds-a", layer="conv2")[1] is False  # another layer
    assert cached_features(model, data, "ds-b")[1] is False  # another dataset
    renorm = TensorBatches(data.x, None, (0.1,), (0.3,))
    assert cached_features(model, renorm, "ds-a")[1] is False  # another normalisation
    model.reset_classifier(7)  # a new head does not change the features …
    assert cached_features(model, data, "ds-a")[1] is True
    with torch.no_grad():
        model.stages["conv1"][0].weight.add_(0.01)  # … new backbone weights do
    assert cached_features(model, data, "ds-a")[1] is False
    assert len(_entries(root)) == 5


def test_weights_hash_ignores_memory_format_and_head():
    model = create_backbone("resnet_small", num_classes=3, in_chans=3, img_size=32)
    h = weights_hash(model)
    model.to(memory_format=torch.channels_last)
    model.reset_classifier(5)
    assert weights_hash(model) == h and len(h) == 32


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_entry_is_detected_and_recomputed(setup, caplog, damage):
    model, data, root = setup
    good, _ = cached_features(model, data, "ds-a")
    [path] = _entries(root)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF  # one feature value changes: the stored checksum no longer matches
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"\x00" * 16)
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.INFO, logger="transferkit.backbones.cache"):
        feats, hit = cached_features(model, data, "ds-a")
    assert hit is False and "corrupt cache entry" in caplog.text
    torch.testing.assert_close(feats, good)
    assert cached_features(model, data, "ds-a")[1] is True  # rewritten, sound again


def test_unwritable_cache_does_not_fail_the_run(setup, tmp_path):
    model, data, _ = setup
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    feats, hit = cached_features(model, data, "ds-a", cache_dir=blocker / "sub")
    assert hit is False and feats.shape == (40, 64)


def test_key_covers_the_evaluation_transform(setup):
    """Same weights and data name, another resize / crop_pct / interpolation or served crop: another entry."""
    model, data, _ = setup
    base = model.input_spec
    assert cached_features(model, data, "ds-a")[1] is False
    keys = set()
    for change in ({}, {"resize": "shorter_crop", "crop_pct": 0.875}, {"resize": "shorter_crop", "crop_pct": 0.9},
                   {"interpolation": "bicubic"}):
        model.input_spec = dataclasses.replace(base, **change)
        keys.add(cache_key(model, data, "ds-a", None))
    model.input_spec = base
    bordered = TensorBatches(torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8), None, (0.5,), (0.5,),
                             view=(2, 2, 28, 28))
    moved = TensorBatches(bordered.x, None, (0.5,), (0.5,), view=(0, 0, 28, 28))
    keys |= {cache_key(model, bordered, "ds-a", None), cache_key(model, moved, "ds-a", None)}
    assert len(keys) == 6
