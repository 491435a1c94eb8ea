from __future__ import annotations

import pytest
import torch

from transferkit.fusion import GatedFusion, fit_gating

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is fastest


def _routing_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Member A is right when x0 > 0 and confidently wrong otherwise; member B the reverse.
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    wrong = (y + 1) % 3
    a_right = x[:, 0] > 0
    logits = torch.zeros(n, 2, 3)
    rows = torch.arange(n)
    logits[rows, 0, torch.where(a_right, y, wrong)] = 4.0
    logits[rows, 1, torch.where(a_right, wrong, y)] = 4.0
    return logits, x, y


def test_gating_learns_to_route():
    logits, x, y = _routing_task(400, seed=0)
    val_logits, val_x, val_y = _routing_task(400, seed=1)
    model = fit_gating(logits, x, y, epochs=100, seed=0)
    with torch.no_grad():
        fused = model(val_logits, val_x)
    acc = (fused.argmax(1) == val_y).float().mean().item()
    member_acc = [(val_logits[:, m].argmax(1) == val_y).float().mean().item() for m in range(2)]
    average = torch.softmax(val_logits, 2).mean(1)
    # torch.argmax breaks the average's exact ties by the first index: half of them land right by chance.
    avg_acc = (average.argmax(1) == val_y).float().mean().item()
    assert acc > 0.95
    assert acc > max(member_acc) + 0.3 and acc > avg_acc + 0.3


def test_gated_output_is_log_probs_and_weights_sum_to_one():
    torch.manual_seed(0)
    model = GatedFusion(num_members=3, gate_dim=5, hidden=8)
    logits, u = torch.randn(7, 3, 4), torch.randn(7, 5)
    out = model(logits, u)
    assert out.shape == (7, 4)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))
    torch.testing.assert_close(model.gate_weights(u).sum(1), torch.ones(7))
    # With all members identical, any gate gives the member itself.
    same = torch.randn(7, 1, 4).expand(7, 3, 4)
    torch.testing.assert_close(model(same, u), torch.log_softmax(same[:, 0], 1))
    loss = torch.nn.NLLLoss()(out, torch.randint(0, 4, (7,)))
    loss.backward()
    assert model.gate[0].weight.grad is not None and model.gate[0].weight.grad.abs().sum() > 0


def test_fit_gating_is_deterministic_and_leaves_global_rng_alone():
    logits, x, y = _routing_task(100, seed=2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = fit_gating(logits, x, y, epochs=5, seed=7)
    after = torch.rand(1)
    b = fit_gating(logits, x, y, epochs=5, seed=7)
    assert torch.equal(before, after)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_gating_shape_errors():
    model = GatedFusion(2, 3)
    with pytest.raises(ValueError, match=r"\(B, 2, C\)"):
        model(torch.randn(4, 3, 5), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        model(torch.randn(4, 2, 5), torch.randn(4, 2))
    with pytest.raises(ValueError, match="labels"):
        fit_gating(torch.randn(4, 2, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
