"""Label-free model selection: entropy orders confident above uniform predictions, DEV matches the plain
validation loss without shift and follows the target under shift, and bad input fails clearly."""

import math

import numpy as np
import pytest
import torch

from transferkit.adaptation.selection import (
    SELECTION_CRITERIA,
    check_criterion,
    deep_embedded_validation,
    target_entropy,
)


def test_target_entropy_is_log_c_for_uniform_and_lower_for_confident_logits():
    uniform = torch.zeros(10, 5)
    confident = torch.full((10, 5), -10.0)
    confident[:, 2] = 10.0
    assert target_entropy(uniform) == pytest.approx(math.log(5), rel=1e-12)
    assert target_entropy(confident) < 1e-6 < target_entropy(uniform)
    assert target_entropy(confident.numpy()) == pytest.approx(target_entropy(confident))  # numpy in, same value
    with pytest.raises(ValueError, match=r"\(N, C\) logits"):
        target_entropy(torch.zeros(5))
    with pytest.raises(ValueError, match=r"\(N, C\) logits"):
        target_entropy(np.zeros((0, 3)))


def hot_region_loss(x):
    """Per-sample loss: high near (1.5, 1.5), where the shifted target lives, low elsewhere."""
    return np.where(np.linalg.norm(x - 1.5, axis=1) < 1.0, 2.0, 0.1)


def gaussians(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    source_train, source_val = rng.normal(0, 1, (n, 2)), rng.normal(0, 1, (n, 2))
    same, shifted = rng.normal(0, 1, (n, 2)), rng.normal(1.5, 0.5, (n, 2))
    return source_train, source_val, same, shifted


def test_dev_is_the_plain_validation_loss_when_there_is_no_shift():
    s, v, same, _ = gaussians()
    losses = hot_region_loss(v)
    assert deep_embedded_validation(s, v, losses, same) == pytest.approx(losses.mean(), rel=0.1)


def test_dev_follows_the_target_when_the_target_sits_where_losses_are_high():
    s, v, _, shifted = gaussians()
    losses = hot_region_loss(v)
    risk = deep_embedded_validation(s, v, losses, shifted)
    true_target_loss = hot_region_loss(shifted).mean()
    assert risk > 3 * losses.mean()
    assert abs(risk - true_target_loss) < abs(losses.mean() - true_target_loss)


def test_dev_is_deterministic_for_a_seed_and_accepts_tensors():
    s, v, _, shifted = gaussians(n=3000)
    losses = hot_region_loss(v)
    a = deep_embedded_validation(s, v, losses, shifted, seed=3, max_per_domain=500)
    b = deep_embedded_validation(torch.from_numpy(s), torch.from_numpy(v), torch.from_numpy(losses),
                                 torch.from_numpy(shifted), seed=3, max_per_domain=500)
    assert a == b
    assert deep_embedded_validation(s, v, losses, shifted, seed=4, max_per_domain=500) != a  # the seed matters


def test_dev_shape_errors_name_the_problem():
    s, v, _, t = gaussians(n=20)
    losses = hot_region_loss(v)
    with pytest.raises(ValueError, match="feature widths differ"):
        deep_embedded_validation(s, v, losses, np.zeros((20, 3)))
    with pytest.raises(ValueError, match=r"one loss per source-validation sample \(20\)"):
        deep_embedded_validation(s, v, losses[:-1], t)
    with pytest.raises(ValueError, match="at least 4 samples per domain, got 3 target"):
        deep_embedded_validation(s, v, losses, t[:3])
    with pytest.raises(ValueError, match=r"\(N, D\) feature matrix"):
        deep_embedded_validation(s, v[:, 0], losses, t)


def test_criteria_and_their_directions():
    assert dict(SELECTION_CRITERIA.items()) == {"source_val": "max", "target_entropy": "min", "dev": "min",
                                                "oracle": "max"}
    assert check_criterion("dev") == "dev"
    with pytest.raises(ValueError) as err:
        check_criterion("target_acc")
    assert str(err.value) == ("unknown selection criterion 'target_acc'; valid selection criteria: source_val, "
                              "target_entropy, dev, oracle")
