"""Feature-fusion backbones: members with their own preprocessing, the fusion in the head, bundles, param groups."""

import pytest
import torch

from transferkit.backbones import (
    FeatureCombiner,
    FeatureFusionBackbone,
    build_from_config,
    create_backbone,
    joint_input_spec,
    member_input,
)
from transferkit.bundle import load_bundle, save_bundle


def _members():
    torch.manual_seed(0)
    grey = create_backbone("seed_cnn", num_classes=3)  # 1×28×28, mean/std 0.5
    colour = create_backbone("resnet_small", num_classes=3, in_chans=3, img_size=32)  # 3×32×32
    return grey, colour


def test_joint_input_is_the_largest_and_each_member_sees_its_own_input():
    grey, colour = _members()
    spec = joint_input_spec([grey, colour])
    assert (spec.channels, tuple(spec.size), spec.mean, spec.std) == (3, (32, 32), (0.0,) * 3, (1.0,) * 3)
    x = torch.rand(2, 3, 32, 32)
    g = member_input(grey.input_spec, x)
    assert g.shape == (2, 1, 28, 28)
    # a grey image repeated to three channels comes back as itself (luminance weights sum to 1)
    grey_img = torch.rand(2, 1, 28, 28)
    back = member_input(grey.input_spec, grey_img.expand(-1, 3, -1, -1))
    assert torch.allclose(back, (grey_img - 0.5) / 0.5, atol=1e-5)
    assert spec.resize == "squash"  # from-scratch members: a plain resize


def test_joint_input_crops_only_when_every_member_does():
    mnv2 = create_backbone("mobilenet_v2", num_classes=3, img_size=64)  # crop_pct 0.875, bilinear
    lite = create_backbone("efficientnet_lite1", num_classes=3, img_size=64)  # crop_pct 0.882, bicubic
    spec = joint_input_spec([mnv2, lite])
    assert (spec.resize, spec.crop_pct, spec.interpolation) == ("shorter_crop", 0.882, "bilinear")
    assert joint_input_spec([mnv2, _members()[1]]).resize == "squash"


@pytest.mark.parametrize("mode,width,dim", [("concat", None, 64 + 64), ("concat", 8, 16), ("sum", 8, 8),
                                            ("product", 8, 8), ("max", 8, 8)])
def test_fused_backbone_forward_and_head(mode, width, dim):
    grey, colour = _members()
    model = FeatureFusionBackbone([grey, colour], mode, width, num_classes=5)
    assert model.feature_dim == grey.feature_dim + colour.feature_dim  # raw concatenation: what a probe caches
    x = torch.rand(4, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (4, model.feature_dim)
    assert isinstance(model.head[0], FeatureCombiner) and model.head[0].feature_dim == dim
    assert model(x).shape == (4, 5)
    # the features are exactly the members' own, each on its own preprocessing
    model.eval()
    with torch.no_grad():
        ref = model.members[0].forward_features(member_input(model.members[0].input_spec, x))
        assert torch.allclose(model.forward_features(x)[:, : grey.feature_dim], ref, atol=1e-6)


def test_gradients_reach_members_projections_and_mixing_weights():
    model = FeatureFusionBackbone(list(_members()), "sum", 8, num_classes=4)
    model(torch.rand(3, 3, 32, 32)).sum().backward()
    comb = model.head[0]
    assert comb.mix_logits.grad is not None and comb.mix_logits.grad.abs().sum() > 0
    for member in model.members:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in member.parameters())


def test_param_groups_interleave_members_from_the_output_end():
    grey, colour = _members()
    model = FeatureFusionBackbone([grey, colour], "concat", num_classes=2)
    names = [g.name for g in model.param_groups()]
    g_names = [f"m0.{g.name}" for g in grey.param_groups() if g.name != "head"]
    c_names = [f"m1.{g.name}" for g in colour.param_groups() if g.name != "head"]
    assert names[-1] == "head" and sorted(names[:-1]) == sorted(g_names + c_names)
    assert names[-3:-1] == [g_names[-1], c_names[-1]]  # the last stages sit next to each other, below the head
    # every trainable parameter is in exactly one group
    ids = [id(p) for g in model.param_groups() for p in g.params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_config_rebuilds_and_bundle_round_trip(tmp_path):
    model = FeatureFusionBackbone(list(_members()), "max", 6, num_classes=3).eval()
    again = build_from_config(model.config())
    assert type(again) is FeatureFusionBackbone and again.mode == "max" and again.num_classes == 3
    assert [type(m).__name__ for m in again.members] == [type(m).__name__ for m in model.members]
    save_bundle(model, {"classes": ["a", "b", "c"]}, tmp_path / "b")
    loaded, meta = load_bundle(tmp_path / "b")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)
    assert meta["architecture"]["arch"] == "fused_features"


def test_bad_input():
    grey, colour = _members()
    with pytest.raises(ValueError, match="at least 2 members"):
        FeatureFusionBackbone([grey])
    with pytest.raises(ValueError, match="valid modes: concat, sum, product, max"):
        FeatureFusionBackbone([grey, colour], "attention", 8)
    with pytest.raises(ValueError, match="needs a common projection width"):
        FeatureFusionBackbone([grey, colour], "sum")
    model = FeatureFusionBackbone([grey, colour])
    with pytest.raises(ValueError, match="truncate each member"):
        model.truncate("conv1")
    with pytest.raises(ValueError, match="features are read after every member"):
        model.forward_features(torch.rand(1, 3, 32, 32), layer="conv1")
