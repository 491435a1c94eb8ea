import pytest
import torch

from transferkit.backbones import create_backbone, list_backbones


def test_seed_cnn_matches_the_tutorial_architecture():
    m = create_backbone("seed_cnn", num_classes=5)
    x = torch.randn(2, 1, 28, 28)
    assert m.forward_features(x, "conv2").shape == (2, 1600)  # the Flatten output feature transfer reads
    assert m.forward_features(x).shape == (2, 64)
    assert m(x).shape == (2, 5)
    assert [g.name for g in m.param_groups()] == ["conv1", "conv2", "fc", "head"]
    assert m.default_probe_layer == "conv2"


@pytest.mark.parametrize("name", ["seed_cnn", "lenet", "resnet_small"])
def test_builtins_interface(name):
    m = create_backbone(name, num_classes=3, in_chans=1, img_size=28)
    assert m(torch.randn(4, 1, 28, 28)).shape == (4, 3)
    assert m.forward_features(torch.randn(4, 1, 28, 28)).shape == (4, m.feature_dim)
    groups = m.param_groups()
    assert groups[-1].name == "head"
    assert sum(len(g.params) for g in groups) == len(list(m.parameters()))
    m.reset_classifier(7)
    assert m(torch.randn(1, 1, 28, 28)).shape == (1, 7)


def test_truncate_drops_later_stages_and_rebuilds_head():
    m = create_backbone("seed_cnn", num_classes=4, cut_at="conv2")
    assert list(m.stages) == ["conv1", "conv2"] and m.feature_dim == 1600
    assert m.head.in_features == 1600 and m.config()["cut_at"] == "conv2"
    with pytest.raises(ValueError, match="valid layers: conv1, conv2"):
        m.truncate("fc")


def test_bad_names_and_sizes_are_clear():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; valid backbones: .*seed_cnn"):
        create_backbone("vgg")
    with pytest.raises(ValueError, match="has no pretrained weights"):
        create_backbone("seed_cnn", pretrained=True)
    with pytest.raises(ValueError, match="image_size: expected at least"):
        create_backbone("seed_cnn", img_size=6)
    assert {"seed_cnn", "lenet", "resnet_small"} <= {b.name for b in list_backbones()}


def test_rgb_input_channels():
    m = create_backbone("resnet_small", num_classes=2, in_chans=3, img_size=32)
    assert m.input_spec.channels == 3 and m(torch.randn(2, 3, 32, 32)).shape == (2, 2)
