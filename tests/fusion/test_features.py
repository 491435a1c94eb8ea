from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.fusion import FUSION_MODES, FusedFeatures

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is fastest


class _Extractor(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.body = nn.Linear(d_in, d_out)
        self.feature_dim = d_out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x))


def _extractors() -> list[nn.Module]:
    torch.manual_seed(0)
    return [_Extractor(6, 5), _Extractor(6, 7)]


@pytest.mark.parametrize(("mode", "width", "dim"), [("concat", None, 12), ("concat", 4, 8), ("sum", 4, 4),
                                                    ("product", 4, 4), ("max", 4, 4)])
def test_shapes_for_all_modes(mode, width, dim):
    fused = FusedFeatures(_extractors(), mode=mode, width=width)
    out = fused(torch.randn(3, 6))
    assert fused.feature_dim == dim and out.shape == (3, dim)


def test_plain_concat_is_the_concatenation():
    ex = _extractors()
    fused = FusedFeatures(ex, mode="concat")
    x = torch.randn(3, 6)
    torch.testing.assert_close(fused(x), torch.cat([ex[0].forward_features(x), ex[1].forward_features(x)], 1))


@pytest.mark.parametrize("mode", ["sum", "product", "max", "concat"])
def test_gradients_reach_projections_and_extractors(mode):
    fused = FusedFeatures(_extractors(), mode=mode, width=4)
    fused(torch.randn(8, 6)).pow(2).sum().backward()
    for proj in fused.projections:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert fused.extractors[0].body.weight.grad is not None
    if mode == "sum":
        assert fused.mix_logits.grad is not None and fused.mix_logits.grad.abs().sum() > 0


def test_weighted_sum_weights_sum_to_one_and_are_used():
    fused = FusedFeatures(_extractors(), mode="sum", width=4)
    with torch.no_grad():
        fused.mix_logits.copy_(torch.tensor([2.0, -1.0]))
    w = fused.mixing_weights()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    x = torch.randn(3, 6)
    parts = fused.member_features(x)
    torch.testing.assert_close(fused(x), w[0] * parts[0] + w[1] * parts[1])


def test_adapters_and_per_extractor_inputs():
    ex = [_Extractor(6, 5), _Extractor(3, 7)]  # the second expects a different input
    fused = FusedFeatures(ex, mode="max", width=4, adapters=[None, lambda x: x[:, :3]])
    x = torch.randn(2, 6)
    out = fused(x)
    assert out.shape == (2, 4)
    torch.testing.assert_close(fused([x, x[:, :3]]), out)


def test_bound_forward_features_and_dims():
    ex = _extractors()
    fused = FusedFeatures([ex[0].forward_features, ex[1]], mode="concat")
    assert fused.extractors[0] is ex[0]
    plain = FusedFeatures([nn.Linear(6, 3)], mode="concat", dims=[3])
    assert plain(torch.randn(2, 6)).shape == (2, 3)
    with pytest.raises(ValueError, match="dims="):
        FusedFeatures([nn.Linear(6, 3)])
    with pytest.raises(TypeError, match="nn.Module"):
        FusedFeatures([lambda x: x], dims=[6])


def test_mode_errors():
    with pytest.raises(ValueError) as err:
        FusedFeatures(_extractors(), mode="attention", width=4)
    assert all(m in str(err.value) for m in FUSION_MODES)
    with pytest.raises(ValueError, match="width"):
        FusedFeatures(_extractors(), mode="sum")
