"""timm:/torchvision: backbones: weights from local files, strict loading, clear errors, parameter groups."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data

from transferkit.backbones import (
    ExternalBackbone,
    PretrainedWeightsUnavailable,
    UnsafeCheckpointError,
    WeightsMismatchError,
    backbone_info,
    build_from_config,
    create_backbone,
    list_backbone_families,
)
from transferkit.backbones import imagenet as imagenet_mod
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, prepare_images


def _reference(lib: str, arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if lib == "timm":
        import timm

        return timm.create_model(arch, pretrained=False).eval()
    from torchvision.models import get_model

    return get_model(arch, weights=None).eval()


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
def test_random_init_forward_and_config_round_trip(lib):
    m = create_backbone(f"{lib}:resnet18", num_classes=5, pretrained=False, img_size=64)
    assert isinstance(m, ExternalBackbone) and m.feature_dim == 512 and m.input_spec.size == (64, 64)
    x = torch.randn(2, 3, 64, 64)
    assert m.forward_features(x).shape == (2, 512) and m(x).shape == (2, 5)
    config = m.config()
    assert config["arch"] == f"{lib}:resnet18" and "weights" not in config["kwargs"]
    rebuilt = build_from_config(config)
    rebuilt.load_state_dict(m.state_dict())
    m.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), m(x))


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_weights_file_loads_exactly_with_imagenet_head(lib, fmt, tmp_path):
    ref = _reference(lib, "resnet18")
    path = tmp_path / f"resnet18.{fmt}"
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(sd, path) if fmt == "safetensors" else torch.save(sd, path)
    m = create_backbone(f"{lib}:resnet18", num_classes=1000, weights=str(path), img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x))  # backbone and the original classifier as head
    assert m.weights_source == str(path)
    fresh = create_backbone(f"{lib}:resnet18", num_classes=3, weights=str(path), img_size=64).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_features(x), m.forward_features(x))
    assert fresh.head.out_features == 3


def test_a_transferkit_bundle_state_is_a_valid_source(tmp_path):
    src = create_backbone("timm:resnet18", num_classes=4, pretrained=False, img_size=64)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, bundle / "model.safetensors")
    m = create_backbone("timm:resnet18", num_classes=4, weights=bundle, img_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), src.eval()(x))


def test_real_imagenet_weights_through_torchvision_family():
    """torchvision's own MobileNetV2 file, loaded as a user checkpoint, recognises a cat."""
    path = imagenet_mod.MOBILENET_V2_WEIGHTS.path()
    m = create_backbone("torchvision:mobilenet_v2", num_classes=1000, weights=path, img_size=160).eval()
    spec = m.input_spec
    x = TensorBatches(prepare_images(ImageSet([data.chelsea()], np.array([0]), ["cat"], "c"), spec), None,
                      spec.mean, spec.std).__getitems__([0])
    with torch.inference_mode():
        assert set(m(x).topk(5).indices[0].tolist()) & set(range(281, 286))


def test_mismatched_weights_list_the_differences(tmp_path):
    path = tmp_path / "resnet34.safetensors"
    save_file({k: v.contiguous() for k, v in _reference("torchvision", "resnet34").state_dict().items()}, path)
    first = r"96 differences.*\n  unexpected: layer1\.2\.bn1\.bias \(64,\)"
    with pytest.raises(WeightsMismatchError, match=first) as err:
        create_backbone("torchvision:resnet18", num_classes=10, weights=path)
    assert "… and" in str(err.value)  # more differences than listed
    sd = _reference("torchvision", "resnet18").state_dict()
    sd["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match=r"shape: layer1\.0\.conv1\.weight expects \(64, 64, 3, 3\)"):
        create_backbone("torchvision:resnet18", weights=tmp_path / "bad.pth")


def test_pickled_model_is_refused_with_conversion_help(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(_reference("torchvision", "resnet18"), path)  # a whole pickled nn.Module
    with pytest.raises(UnsafeCheckpointError, match="safetensors.torch.save_file"):
        create_backbone("torchvision:resnet18", weights=path)


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18"])
def test_offline_pretrained_without_weights_is_an_error(name, monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(PretrainedWeightsUnavailable, match="weights=PATH.*pretrained=False"):
        create_backbone(name, pretrained=True)


def test_library_cache_is_used_offline(monkeypatch, tmp_path):
    """A checkpoint in torch's hub cache counts as available offline (no download involved)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = _reference("torchvision", "resnet18")
    from torchvision.models import ResNet18_Weights

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), tmp_path / "hub" / "checkpoints" / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[1])
    m = create_backbone("torchvision:resnet18", num_classes=1000, pretrained=True, img_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x))
    assert backbone_info("torchvision:resnet18").weights_available()


def test_param_groups_follow_stages_and_can_be_overridden():
    m = create_backbone("timm:resnet18", num_classes=2, img_size=64)
    assert [g.name for g in m.param_groups()] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    tv = create_backbone("torchvision:mobilenet_v3_small", num_classes=2, img_size=64)
    names = [g.name for g in tv.param_groups()]
    assert names[0] == "features.0" and names[-1] == "head" and len(names) > 10
    for model in (m, tv):
        assert sum(len(g.params) for g in model.param_groups()) == len(list(model.parameters()))
    custom = create_backbone("timm:resnet18", num_classes=2, img_size=64,
                             groups={"early": r"conv1|bn1|layer[12]\.", "late": r"layer[34]\."})
    groups = custom.param_groups()
    assert [g.name for g in groups] == ["early", "late", "head"]
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in groups[0].modules)
    assert build_from_config(custom.config()).param_groups()[0].name == "early"
    with pytest.raises(ValueError, match="match no group pattern"):
        create_backbone("timm:resnet18", img_size=64, groups={"early": r"layer1\."})


def test_bad_names_and_sizes_are_clear():
    with pytest.raises(ValueError, match="timm has no model 'resnet_nope'"):
        create_backbone("timm:resnet_nope")
    with pytest.raises(ValueError, match="unknown backbone family 'keras:'"):
        create_backbone("keras:resnet18")
    with pytest.raises(ValueError, match="image_size: expected at least"):
        create_backbone("torchvision:vit_b_16", img_size=64)
    with pytest.raises(ValueError, match="fixed input size"):
        create_backbone("timm:vit_tiny_patch16_224", img_size=96)
    with pytest.raises(ValueError, match="not supported"):
        create_backbone("timm:resnet18", img_size=64, cut_at="layer3")
    assert {f.prefix for f in list_backbone_families()} == {"hf", "timm", "torchvision"}
    assert backbone_info("timm:resnet18").default_size == 224


def test_specs_take_the_evaluation_transform_from_the_pretrained_config():
    """timm: the pretrained config's crop_pct and interpolation (resnet18 a1 recipe: 0.95, bicubic); torchvision:
    the weights' Resize(256) → CenterCrop(224), bilinear."""
    timm_spec = create_backbone("timm:resnet18", num_classes=2, img_size=64).input_spec
    assert (timm_spec.resize, timm_spec.crop_pct, timm_spec.interpolation) == ("shorter_crop", 0.95, "bicubic")
    tv_spec = create_backbone("torchvision:resnet18", num_classes=2, img_size=64).input_spec
    assert (tv_spec.resize, tv_spec.interpolation) == ("shorter_crop", "bilinear")
    assert tv_spec.crop_pct == pytest.approx(224 / 256)  # resnet18's IMAGENET1K_V1 transforms
