"""Distillation losses: KD is the T²-scaled softened KL, KDLoss mixes it with CE on labelled examples only, and
HintLoss regresses student features onto the teacher's shape and learns."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.distillation import HintLoss, KDLoss, kd_loss

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is fastest


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- kd_loss ------------------------------------------------------------------------------------------------------
def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    s = logits(6, 5)
    assert kd_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, logits(6, 5, seed=1)).item() > 1e-3


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kd_loss_matches_a_hand_computed_two_class_example(temperature):
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # T=1: teacher probabilities (0.75, 0.25)
    a = 3.0 ** (1 / temperature)
    p = (a / (a + 1), 1 / (a + 1))
    kl = p[0] * math.log(p[0] / 0.5) + p[1] * math.log(p[1] / 0.5)
    assert kd_loss(s, t, temperature).item() == pytest.approx(temperature**2 * kl, rel=1e-5)
    if temperature == 1.0:
        assert kl == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_kd_loss_is_t_squared_times_the_batchmean_kl_and_detaches_the_teacher():
    s, t, temp = logits(8, 10).requires_grad_(), logits(8, 10, seed=1).requires_grad_(), 4.0
    p_t = F.softmax(t / temp, 1)
    raw = (p_t * (F.log_softmax(t / temp, 1) - F.log_softmax(s / temp, 1))).sum(1).mean()
    loss = kd_loss(s, t, temp)
    assert loss.item() == pytest.approx(temp**2 * raw.item(), rel=1e-5)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_t_squared_keeps_the_gradient_scale_comparable_across_temperatures():
    # for large T the gradient of T²·KL tends to (s − t)/C (Hinton et al., §2.1): with zero-mean logits its size
    # no longer depends on T, whereas the unscaled KL's gradient would shrink by 1/T² (16× from T=4 to T=16)
    s, t = logits(16, 10), logits(16, 10, seed=1)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    norms = []
    for temp in (4.0, 16.0):
        x = s.clone().requires_grad_()
        kd_loss(x, t, temp).backward()
        norms.append(x.grad.norm().item())
    assert 0.5 < norms[0] / norms[1] < 2.0


def test_kd_loss_rejects_bad_shapes_and_temperatures():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        kd_loss(logits(4, 3), logits(4, 5))
    with pytest.raises(ValueError, match="temperature.*-1"):
        kd_loss(logits(4, 3), logits(4, 3), temperature=-1)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(logits(4, 3), logits(4, 3), temperature=0)
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        kd_loss(logits(4), logits(4))


# -- KDLoss -------------------------------------------------------------------------------------------------------
def test_kdloss_ignores_unlabelled_examples_in_the_cross_entropy():
    s, t = logits(6, 4), logits(6, 4, seed=1)
    labels = torch.tensor([0, -1, 3, -1, 2, 1])
    terms = KDLoss(temperature=2.0, alpha=0.7)(s, t, labels)
    assert set(terms) == {"kd", "ce"}
    keep = labels != -1
    assert terms["ce"].item() == pytest.approx(0.3 * F.cross_entropy(s[keep], labels[keep]).item(), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.7 * kd_loss(s, t, 2.0).item(), rel=1e-5)


@pytest.mark.parametrize("labels", [None, torch.full((6,), -1)])
def test_kdloss_without_labels_is_pure_distillation(labels):
    s, t = logits(6, 4).requires_grad_(), logits(6, 4, seed=1)
    terms = KDLoss(temperature=3.0, alpha=0.2)(s, t, labels)
    assert terms["ce"].item() == 0.0
    assert terms["kd"].item() == pytest.approx(kd_loss(s, t, 3.0).item(), rel=1e-6)
    sum(terms.values()).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_kdloss_validates_its_arguments():
    with pytest.raises(ValueError, match="alpha.*1.5"):
        KDLoss(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=0.0)
    with pytest.raises(ValueError, match="labels"):
        KDLoss()(logits(6, 4), logits(6, 4), torch.zeros(5, dtype=torch.long))


# -- HintLoss -----------------------------------------------------------------------------------------------------
def test_hint_same_spatial_size_uses_a_1x1_conv():
    hint = HintLoss((8, 4, 4), (16, 4, 4))
    conv = hint.regressor
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (8, 16)
    s, t = logits(2, 8, 4, 4), logits(2, 16, 4, 4, seed=1)
    assert hint(s, t).item() == pytest.approx(F.mse_loss(conv(s), t).item(), rel=1e-6)


def test_hint_pools_the_larger_feature_map_to_the_smaller_size():
    hint = HintLoss((8, 8, 8), (16, 4, 4))
    s, t = logits(2, 8, 8, 8), logits(2, 16, 4, 4, seed=1)
    expected = F.mse_loss(F.adaptive_avg_pool2d(hint.regressor(s), (4, 4)), t)
    assert hint(s, t).item() == pytest.approx(expected.item(), rel=1e-5)
    # and the other way round: the teacher's map is the one pooled
    hint = HintLoss((8, 4, 4), (16, 8, 8))
    s, t = logits(2, 8, 4, 4), logits(2, 16, 8, 8, seed=1)
    expected = F.mse_loss(hint.regressor(s), F.adaptive_avg_pool2d(t, (4, 4)))
    assert hint(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_hint_vectors_use_a_linear_regressor():
    hint = HintLoss((32,), (64,))
    assert isinstance(hint.regressor, nn.Linear)
    assert (hint.regressor.in_features, hint.regressor.out_features) == (32, 64)
    s, t = logits(4, 32), logits(4, 64, seed=1)
    assert hint(s, t).item() == pytest.approx(F.mse_loss(hint.regressor(s), t).item(), rel=1e-6)


def test_hint_global_average_pools_a_feature_map_against_a_vector():
    hint = HintLoss((8, 4, 4), (64,))
    assert isinstance(hint.regressor, nn.Linear) and hint.regressor.in_features == 8
    s, t = logits(3, 8, 4, 4), logits(3, 64, seed=1)
    assert hint(s, t).item() == pytest.approx(F.mse_loss(hint.regressor(s.mean((2, 3))), t).item(), rel=1e-6)
    hint = HintLoss((32,), (16, 2, 2))
    assert isinstance(hint.regressor, nn.Linear) and hint.regressor.out_features == 16
    s, t = logits(3, 32), logits(3, 16, 2, 2, seed=1)
    assert hint(s, t).item() == pytest.approx(F.mse_loss(hint.regressor(s), t.mean((2, 3))).item(), rel=1e-6)


@pytest.mark.parametrize(("student", "teacher"), [((8, 8, 8), (16, 4, 4)), ((32,), (64,))])
def test_hint_regressor_learns(student, teacher):
    torch.manual_seed(0)
    hint = HintLoss(student, teacher)
    s = logits(8, *student)
    # a teacher the regressor can fit: a fixed random linear map of the student's (pooled) features
    with torch.no_grad():
        t = HintLoss(student, teacher).regressor(s)
        if len(student) == 3:
            t = F.adaptive_avg_pool2d(t, teacher[1:])
    first = hint(s, t).item()
    for _ in range(20):  # plain gradient descent (a torch.optim optimiser's first use costs ~1 s of imports)
        hint.zero_grad()
        hint(s, t).backward()
        with torch.no_grad():
            for p in hint.parameters():
                p -= 2.0 * p.grad
    assert hint(s, t).item() < 0.2 * first


def test_hint_detaches_the_teacher_and_trains_student_and_regressor():
    hint = HintLoss((4,), (6,))
    s, t = logits(3, 4).requires_grad_(), logits(3, 6, seed=1).requires_grad_()
    hint(s, t).backward()
    assert s.grad is not None and hint.regressor.weight.grad is not None and t.grad is None


@pytest.mark.parametrize("shape", [(8, 4), (), (8, 0, 4), (2, 3, 4, 5)])
def test_hint_rejects_unsupported_shapes(shape):
    with pytest.raises(ValueError, match="student_shape"):
        HintLoss(shape, (16,))
    with pytest.raises(ValueError, match="teacher_shape"):
        HintLoss((16,), shape)


def test_hint_rejects_features_that_do_not_match_the_declared_shapes():
    hint = HintLoss((8, 4, 4), (16, 4, 4))
    with pytest.raises(ValueError, match="student.*\\(2, 9, 4, 4\\)"):
        hint(logits(2, 9, 4, 4), logits(2, 16, 4, 4))
    with pytest.raises(ValueError, match="teacher.*\\(2, 16\\)"):
        hint(logits(2, 8, 4, 4), logits(2, 16))
    with pytest.raises(ValueError, match="batch sizes"):
        hint(logits(2, 8, 4, 4), logits(3, 16, 4, 4))
