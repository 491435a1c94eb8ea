"""Loss weighting schemes, alone on small tensors, and the masked per-task losses of the engine."""

import pytest
import torch
import torch.nn.functional as F

from transferkit.engine.multitask import task_losses
from transferkit.multi_task.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    GradNorm,
    UncertaintyWeighting,
    make_weighting,
)


def test_task_losses_mask_missing_labels():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)  # task 0: columns 0-2, task 1: columns 3-4
    y = torch.tensor([[0, -1], [2, 1], [-1, 0], [1, -1], [-1, -1], [0, 1]])
    slices = [slice(0, 3), slice(3, 5)]
    losses, correct, counts = task_losses(logits, y, slices)
    assert counts.tolist() == [4, 3]
    rows0 = torch.tensor([0, 1, 3, 5])
    assert losses[0].item() == pytest.approx(F.cross_entropy(logits[rows0, 0:3], y[rows0, 0]).item())
    losses.sum().backward()
    assert logits.grad[4].abs().sum() == 0  # a row with no label contributes nothing
    assert logits.grad[0, 3:].abs().sum() == 0  # nor does a row's unlabelled task
    none, _, counts = task_losses(logits, torch.full((6, 2), -1), slices)
    assert counts.tolist() == [0, 0] and none.tolist() == [0.0, 0.0]


def test_fixed_weighting_skips_absent_tasks():
    w = FixedWeighting(3, [1.0, 2.0, 0.5])
    loss, _ = w(torch.tensor([1.0, 1.0, 4.0]), torch.tensor([True, True, False]))
    assert loss.item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="positive weights"):
        FixedWeighting(2, [1.0, 0.0])


def test_uncertainty_weighting_objective_and_gradient():
    u = UncertaintyWeighting(2)
    with torch.no_grad():
        u.log_var.copy_(torch.tensor([0.0, 1.0]))
    losses = torch.tensor([2.0, 3.0])
    loss, _ = u(losses, torch.tensor([True, True]))
    assert loss.item() == pytest.approx(2.0 + 0.0 + 3.0 * torch.exp(torch.tensor(-1.0)).item() + 0.5)
    loss.backward()
    # d/ds (exp(-s) L + s/2) = -exp(-s) L + 1/2: a large loss pushes s up (smaller weight), a small one down
    assert u.log_var.grad[0].item() == pytest.approx(-2.0 + 0.5)
    assert u.weights().tolist() == pytest.approx([1.0, torch.exp(torch.tensor(-1.0)).item()])


def test_gradnorm_moves_weight_to_the_task_with_small_gradients():
    torch.manual_seed(0)
    g = GradNorm(2, alpha=1.5)
    opt = torch.optim.SGD(g.parameters(), lr=0.05)
    features = torch.randn(16, 4)
    net = torch.nn.Linear(4, 4)
    for _ in range(30):
        rep = net(features)
        # task 0's loss has 10× the gradient of task 1's at the same value
        losses = torch.stack([(10 * rep[:, 0]).mean().abs() + 1, (rep[:, 1]).mean().abs() + 1])
        loss, parts = g(losses, torch.tensor([True, True]), rep)
        opt.zero_grad()
        net.zero_grad()
        loss.backward()
        opt.step()
    w = g.weights()
    assert w.sum().item() == pytest.approx(2.0, abs=1e-5)  # renormalised to the number of tasks
    assert w[1] > w[0]
    assert parts["gradnorm_loss"].item() >= 0


def test_gradnorm_loss_reaches_only_the_weights():
    torch.manual_seed(0)
    g = GradNorm(2)
    net = torch.nn.Linear(3, 3)
    x = torch.randn(8, 3)
    rep = net(x)
    losses = torch.stack([rep[:, 0].pow(2).mean(), rep[:, 1].abs().mean()])
    loss, _ = g(losses, torch.tensor([True, True]), rep)
    loss.backward()
    expected = torch.autograd.grad((g.weights() * torch.stack([net(x)[:, 0].pow(2).mean(),
                                                                  net(x)[:, 1].abs().mean()])).sum(), net.weight)[0]
    assert torch.allclose(net.weight.grad, expected, atol=1e-6)
    assert g.w.grad is not None
    with pytest.raises(ValueError, match="shared representation"):
        g(losses.detach(), torch.tensor([True, True]), None)


def test_dwa_weights_follow_the_loss_ratios():
    d = DynamicWeightAverage(2, temperature=2.0)
    assert d.weights().tolist() == [1.0, 1.0]
    d.epoch_end(torch.tensor([1.0, 1.0]))
    assert d.weights().tolist() == [1.0, 1.0]  # one epoch: no ratio yet
    d.epoch_end(torch.tensor([0.5, 0.9]))  # task 1 learns more slowly
    w = d.weights()
    assert w.sum().item() == pytest.approx(2.0) and w[1] > w[0]
    assert w[1].item() == pytest.approx(2 * torch.softmax(torch.tensor([0.25, 0.45]), 0)[1].item())


def test_make_weighting_names_the_choices():
    assert isinstance(make_weighting("gradnorm", 3), GradNorm)
    with pytest.raises(ValueError, match="valid choices: fixed, uncertainty, gradnorm, dwa"):
        make_weighting("average", 2)
