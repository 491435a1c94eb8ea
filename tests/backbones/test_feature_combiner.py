"""FeatureCombiner, the fusion layer of ``fuse:MODE:A+B`` sources (FeatureFusionBackbone): every mode's shape,
the plain concatenation, gradients, and the ``sum`` mode's convex weights."""

from __future__ import annotations

import pytest
import torch

from transferkit.backbones.fused import FUSION_MODES, FeatureCombiner

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is fastest


def _feats(b: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(b, 5, requires_grad=True), torch.randn(b, 7, requires_grad=True)]


@pytest.mark.parametrize(("mode", "width", "dim"), [("concat", None, 12), ("concat", 4, 8), ("sum", 4, 4),
                                                    ("product", 4, 4), ("max", 4, 4)])
def test_shapes_for_all_modes(mode, width, dim):
    assert mode in FUSION_MODES
    comb = FeatureCombiner([5, 7], mode=mode, width=width)
    out = comb(_feats())
    assert comb.feature_dim == dim and out.shape == (3, dim)
    torch.testing.assert_close(comb(torch.cat(_feats(), 1)), out)  # the concatenated form, split by dims


def test_plain_concat_is_the_concatenation():
    feats = _feats()
    torch.testing.assert_close(FeatureCombiner([5, 7])(feats), torch.cat(feats, 1))


@pytest.mark.parametrize("mode", ["sum", "product", "max", "concat"])
def test_gradients_reach_projections_and_inputs(mode):
    comb = FeatureCombiner([5, 7], mode=mode, width=4)
    feats = _feats(8)
    comb(feats).pow(2).sum().backward()
    for proj in comb.projections:
        assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert feats[0].grad is not None
    if mode == "sum":
        assert comb.mix_logits.grad is not None and comb.mix_logits.grad.abs().sum() > 0


def test_weighted_sum_weights_sum_to_one_and_are_used():
    comb = FeatureCombiner([5, 7], mode="sum", width=4)
    with torch.no_grad():
        comb.mix_logits.copy_(torch.tensor([2.0, -1.0]))
    w = comb.mixing_weights()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    feats = _feats()
    parts = comb.project(feats)
    torch.testing.assert_close(comb(feats), w[0] * parts[0] + w[1] * parts[1])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown feature-fusion mode 'attn'; valid modes: concat, sum"):
        FeatureCombiner([5, 7], mode="attn")
    with pytest.raises(ValueError, match="needs a common projection width"):
        FeatureCombiner([5, 7], mode="sum")
    with pytest.raises(ValueError, match="extractor 1 gave shape"):
        FeatureCombiner([5, 7])([torch.randn(2, 5), torch.randn(2, 6)])
