"""Adaptation losses: the reversal flips gradients, and CORAL/MK-MMD are zero for one domain and grow with shift."""

import math

import pytest
import torch

from transferkit.adaptation.losses import GradientReversal, coral_loss, dann_coefficient, entropy, mk_mmd_loss


def test_gradient_reversal_is_identity_forward_and_flips_gradients():
    x = torch.randn(4, 3, requires_grad=True)
    y = GradientReversal(0.5)(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_dann_coefficient_warms_up_from_0_to_about_1():
    assert dann_coefficient(0.0) == 0.0 and dann_coefficient(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_coefficient(0.1) < dann_coefficient(0.5) < dann_coefficient(1.0) <= 1.0


def test_coral_and_mmd_are_small_for_one_domain_and_grow_with_the_shift():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(256, 8, generator=g)
    same = torch.randn(256, 8, generator=g)
    scaled = same * 3  # other covariance
    shifted = same + 2  # other mean
    assert coral_loss(s, same) < 0.01 < coral_loss(s, scaled)
    assert mk_mmd_loss(s, same) < 0.05 < mk_mmd_loss(s, shifted)
    s.requires_grad_(True)
    (coral_loss(s, scaled) + mk_mmd_loss(s, shifted)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_entropy_and_bad_shapes():
    assert entropy(torch.zeros(2, 4)).item() == pytest.approx(math.log(4))
    assert entropy(torch.tensor([[100.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same width"):
        coral_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mk_mmd_loss(torch.zeros(1, 3), torch.zeros(4, 3))
