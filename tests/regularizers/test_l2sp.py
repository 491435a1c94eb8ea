import copy

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.regularizers import L2SP


def model_and_batch(seed=0):
    torch.manual_seed(seed)
    m = create_backbone("seed_cnn", num_classes=3)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 3, (4,))
    return m, x, y


def test_zero_at_start_and_half_alpha_squared_distance_after_a_change():
    m, x, y = model_and_batch()
    reg = L2SP(alpha=0.3, beta=0.0).attach(m)
    assert reg(m, x, y, m(x)).item() == 0.0
    delta = torch.randn_like(m.stages.fc[0].weight)
    with torch.no_grad():
        m.stages.fc[0].weight += delta
        m.head.weight.mul_(5)  # the head is not pulled toward its start, only toward zero (beta)
    assert reg(m, x, y, m(x)).item() == pytest.approx(0.5 * 0.3 * delta.pow(2).sum().item(), rel=1e-5)


def test_equals_the_hand_computed_value_with_the_head_term():
    m, x, y = model_and_batch()
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    reg = L2SP(alpha=0.1, beta=0.02).attach(m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    expected = 0.0
    for n, p in m.named_parameters():
        if n.startswith("head."):
            expected += 0.5 * 0.02 * p.pow(2).sum().item()
        else:
            expected += 0.5 * 0.1 * (p - start[n]).pow(2).sum().item()
    assert reg(m, x, y, m(x)).item() == pytest.approx(expected, rel=1e-5)


def test_reference_comes_from_the_source_and_gradient_is_alpha_times_the_displacement():
    source, x, y = model_and_batch()
    model = copy.deepcopy(source)
    with torch.no_grad():
        model.stages.conv1[0].weight.add_(1.0)
    reg = L2SP(alpha=0.5, beta=0.1).attach(model, source)
    loss = reg(model, x, y, model(x))
    assert loss.item() > 0  # the model already moved away from the source weights
    loss.backward()
    w = model.stages.conv1[0].weight
    assert torch.allclose(w.grad, 0.5 * torch.ones_like(w))
    assert torch.allclose(model.head.weight.grad, 0.1 * model.head.weight.detach())
    assert model.stages.fc[0].weight.grad.abs().max() == 0  # unchanged weights feel no pull


def test_bad_coefficients_and_missing_attach():
    m, x, y = model_and_batch()
    with pytest.raises(ValueError, match="alpha must be a number ≥ 0"):
        L2SP(alpha=-1)
    with pytest.raises(RuntimeError, match="attach"):
        L2SP()(m, x, y, m(x))
    with pytest.raises(ValueError, match="no 'classifier' submodule"):
        L2SP(head="classifier").attach(m)
