"""AdaBN: the re-estimated BatchNorm statistics are the exact moments of the target activations, and the
model's momenta, modes and dropout are left as they were."""

import pytest
import torch
from torch import nn

from transferkit.adaptation.adabn import adapt_batchnorm, batchnorm_layers


def make_model(dropout=False):
    torch.manual_seed(0)
    layers = [nn.Linear(4, 6)] + ([nn.Dropout(0.5)] if dropout else []) + [nn.BatchNorm1d(6, momentum=0.3),
                                                                            nn.ReLU(), nn.Linear(6, 3)]
    model = nn.Sequential(*layers)
    model.train()
    with torch.no_grad():  # source statistics from N(0, 1) inputs
        for _ in range(20):
            model(torch.randn(32, 4))
    return model


def target_batches(sizes=(50, 30, 70, 13)):
    g = torch.Generator().manual_seed(1)
    return [5 + 2 * torch.randn(n, 4, generator=g) for n in sizes]


def exact_moments(linear, batches):
    with torch.no_grad():
        h = torch.cat([linear(x) for x in batches]).double()
    return h.mean(0), h.var(0, unbiased=True)


@pytest.mark.parametrize("train_mode", [False, True])
def test_running_stats_become_the_exact_target_moments_and_modes_are_restored(train_mode):
    model = make_model()
    model.train(train_mode)
    bn = model[1]
    batches = target_batches()
    mean, var = exact_moments(model[0], batches)
    assert not torch.allclose(bn.running_mean.double(), mean, atol=0.5)  # the source stats are far off
    weights = [p.clone() for p in model.parameters()]

    seen = adapt_batchnorm(model, batches)

    assert seen == sum(len(x) for x in batches)
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.3
    assert all(m.training == train_mode for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_dropout_is_off_during_the_pass_and_tuples_and_forward_are_accepted():
    model = make_model(dropout=True)  # in train mode: dropout would be active if the pass did not switch it off
    batches = target_batches()
    mean, var = exact_moments(model[0], batches)  # without dropout
    calls = []

    def forward(x):
        calls.append(len(x))
        return model(x)

    adapt_batchnorm(model, [(x, torch.zeros(len(x))) for x in batches], forward=forward)
    bn = model[2]
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-6)
    assert calls == [len(x) for x in batches]
    assert model[1].training and bn.training


def test_conv_features_pool_over_batch_and_positions():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU()).eval()
    g = torch.Generator().manual_seed(2)
    batches = [3 - torch.rand(n, 2, 6, 6, generator=g) for n in (4, 9)]
    with torch.no_grad():
        h = torch.cat([model[0](x) for x in batches]).double().transpose(0, 1).reshape(3, -1)
    adapt_batchnorm(model, batches)
    torch.testing.assert_close(model[1].running_mean.double(), h.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[1].running_var.double(), h.var(1), rtol=1e-4, atol=1e-6)


def test_errors_without_batchnorm_or_without_batches_leave_the_model_unchanged():
    with pytest.raises(ValueError, match="AdaBN needs BatchNorm layers; Sequential has none"):
        adapt_batchnorm(nn.Sequential(nn.Linear(4, 2), nn.ReLU()), target_batches())
    untracked = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2, track_running_stats=False))
    assert len(batchnorm_layers(untracked)) == 1
    with pytest.raises(ValueError, match="track_running_stats=False"):
        adapt_batchnorm(untracked, target_batches())
    model = make_model().eval()
    before = (model[1].running_mean.clone(), model[1].running_var.clone())
    with pytest.raises(ValueError, match="no batches were given"):
        adapt_batchnorm(model, iter([]))
    assert torch.equal(model[1].running_mean, before[0]) and torch.equal(model[1].running_var, before[1])
    assert model[1].momentum == 0.3 and not any(m.training for m in model.modules())
