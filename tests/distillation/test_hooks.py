"""Feature taps: a hook on a module named as in ``named_modules`` keeps its output and goes away on exit, unknown
names list candidates, and probe_shape measures a layer without changing the model's modes."""

import pytest
import torch
from torch import nn

from transferkit.distillation import FeatureTap, module_names, probe_shape


class Tiny(nn.Module):
    """Nested names like a Backbone's: ``stages.conv1``, ``stages.conv2``, ``stages.block.bn``, ``head``."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict({
            "conv1": nn.Conv2d(3, 4, 3, padding=1),
            "conv2": nn.Conv2d(4, 6, 3, stride=2, padding=1),
            "block": nn.Sequential(nn.BatchNorm2d(6), nn.ReLU()),
        })
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(6 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages.values():
            x = stage(x)
        return self.head(x)


def x(batch=2):
    return torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_module_names_are_the_dotted_submodule_names():
    names = module_names(Tiny())
    assert "" not in names
    assert names[:4] == ["stages", "stages.conv1", "stages.conv2", "stages.block"]
    assert "stages.block.0" in names and "head.2" in names


def test_feature_tap_captures_the_output_and_removes_its_hook_on_exit():
    model = Tiny()
    conv2 = model.stages["conv2"]
    with FeatureTap(model, "stages.conv2") as tap:
        assert tap.output is None and tap.module is conv2 and len(conv2._forward_hooks) == 1
        inp = x()
        model(inp)
        expected = conv2(model.stages["conv1"](inp))
        assert tap.output.shape == (2, 6, 4, 4)
        assert torch.allclose(tap.output, expected)
        assert tap.output.requires_grad  # not detached: a hint loss can train through it
    assert len(conv2._forward_hooks) == 0
    last = tap.output
    model(x(3))
    assert tap.output is last  # no longer updated
    tap.remove()  # idempotent


def test_feature_tap_remove_without_a_with_block():
    model = Tiny()
    tap = FeatureTap(model, "stages.block.1")
    model(x())
    assert tap.output.shape == (2, 6, 4, 4) and (tap.output >= 0).all()  # after the ReLU
    tap.remove()
    assert len(model.stages["block"][1]._forward_hooks) == 0


def test_unknown_name_lists_modules_containing_it():
    with pytest.raises(ValueError, match="conv3") as err:
        FeatureTap(Tiny(), "conv3")
    msg = str(err.value)
    assert "containing" not in msg and "stages.conv1" in msg  # no name contains "conv3": the first names
    with pytest.raises(ValueError) as err:
        FeatureTap(Tiny(), "conv")
    msg = str(err.value).split(":", 1)[1]
    assert "stages.conv1" in msg and "stages.conv2" in msg and "head" not in msg and "block" not in msg


def test_unknown_name_lists_at_most_20_names():
    model = nn.Sequential(*[nn.Sequential(nn.Linear(2, 2), nn.ReLU()) for _ in range(15)])
    with pytest.raises(ValueError) as err:
        FeatureTap(model, "nope")
    listed = str(err.value).split("valid module names: ", 1)[1]
    assert listed.count(",") == 20  # 20 names, then "… (25 more)"
    assert "25 more" in listed


@pytest.mark.parametrize("train", [True, False])
def test_probe_shape_returns_the_shape_and_restores_modes(train):
    model = Tiny().train(train)
    model.stages["block"][0].eval()  # a layer deliberately frozen in eval mode stays so
    bn = model.stages["block"][0]
    before = bn.running_mean.clone()
    assert probe_shape(model, "stages.conv2", x()) == (6, 4, 4)
    assert probe_shape(model, "head.0", x()) == (96,)
    assert probe_shape(model, "", x()) == (5,)
    assert model.training is train and model.head[1].training is train and not bn.training
    assert torch.equal(bn.running_mean, before)  # ran in eval mode: no statistics updated
    assert all(not m._forward_hooks for m in model.modules())


def test_probe_shape_errors():
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.rnn(x.unsqueeze(1))
            return self.used(x)

    model = Skips()
    with pytest.raises(RuntimeError, match="unused"):
        probe_shape(model, "unused", torch.randn(2, 3))
    with pytest.raises(TypeError, match="tuple"):
        probe_shape(model, "rnn", torch.randn(2, 3))
    with pytest.raises(ValueError, match="no module named"):
        probe_shape(model, "missing", torch.randn(2, 3))
    assert all(not m._forward_hooks for m in model.modules())
