from __future__ import annotations

import pytest
import torch
from torch import nn

from transferkit.fusion import check_soup, greedy_soup, uniform_soup

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is fastest


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_uniform_soup_is_the_mean_and_keeps_integer_buffers():
    a, b = _net(0).state_dict(), _net(1).state_dict()
    a["1.num_batches_tracked"].fill_(5)
    b["1.num_batches_tracked"].fill_(9)
    soup = uniform_soup([a, b])
    assert list(soup) == list(a)
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(soup[key], (a[key] + b[key]) / 2)
            assert soup[key].dtype == a[key].dtype
    assert soup["1.num_batches_tracked"].item() == 5
    assert soup["1.num_batches_tracked"].dtype == torch.long
    model = _net(2)
    model.load_state_dict(soup)  # a valid state dict for the architecture


def _toy_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(1, 5, generator=g)
    x = torch.randn(200, 5, generator=g)
    return w_true, x, x @ w_true.T


def _evaluator(x: torch.Tensor, y: torch.Tensor):
    model = nn.Linear(5, 1, bias=False)

    def evaluate(sd: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(sd)
        with torch.no_grad():
            return -float(((model(x) - y) ** 2).mean())  # higher is better

    return evaluate


def test_greedy_soup_beats_best_ingredient_and_skips_harmful_one():
    w_true, x, y = _toy_problem()
    d = 0.3 * torch.ones_like(w_true)
    ingredients = [{"weight": w_true + d}, {"weight": w_true + 10.0}, {"weight": w_true - d * 1.1}]
    evaluate = _evaluator(x, y)
    scores = [evaluate(sd) for sd in ingredients]
    soup, kept, history = greedy_soup(ingredients, evaluate)
    assert kept == [0, 2]  # best first, the good one added, the harmful one (index 1) skipped
    assert evaluate(soup) == pytest.approx(history[-1])
    assert history[-1] >= max(scores) and history[-1] > max(scores) + 1e-3
    assert all(b >= a for a, b in zip(history, history[1:], strict=False))
    assert len(history) == len(ingredients)
    assert evaluate(uniform_soup(ingredients)) < max(scores)  # the uniform soup would have been hurt


def test_greedy_soup_keeps_ties():
    ingredients = [{"w": torch.full((2,), float(i))} for i in range(3)]
    soup, kept, history = greedy_soup(ingredients, lambda sd: 1.0)
    assert kept == [0, 1, 2] and history == [1.0, 1.0, 1.0]
    torch.testing.assert_close(soup["w"], torch.ones(2))


class _Configured(nn.Linear):
    def __init__(self, arch: str) -> None:
        super().__init__(4, 2)
        self.arch = arch

    def config(self) -> dict:
        return {"arch": self.arch, "num_classes": 2}


def test_check_soup_refuses_different_architectures():
    with pytest.raises(ValueError, match=r"'weight' has shape \(2, 4\) in model 1 but \(3, 4\) in model 0"):
        check_soup([nn.Linear(4, 3), nn.Linear(4, 2)])
    with pytest.raises(ValueError, match="different architectures: model 1 has no '0.weight'"):
        check_soup([nn.Sequential(nn.Linear(4, 3)), nn.Linear(4, 3)])
    with pytest.raises(ValueError, match="config 'arch' is 'b' in model 1 but 'a' in model 0"):
        check_soup([_Configured("a"), _Configured("b")])  # configs read from config()
    with pytest.raises(ValueError, match="config 'depth' is 3 in model 1 but 2 in model 0"):
        check_soup([nn.Linear(4, 3), nn.Linear(4, 3)], configs=[{"depth": 2}, {"depth": 3}])
    check_soup([_Configured("a"), _Configured("a")])


def test_check_soup_refuses_different_initialisations():
    models = [nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)]
    with pytest.raises(ValueError, match="not fine-tuned from the same initialisation: model 2 started from 'def'"):
        check_soup(models, init_hashes=["abc", None, "def"])
    check_soup(models, init_hashes=["abc", None, "abc"])  # unknown hashes are not compared


def test_uniform_soup_refuses_mismatched_state_dicts():
    with pytest.raises(ValueError, match="shape"):
        uniform_soup([nn.Linear(4, 3).state_dict(), nn.Linear(5, 3).state_dict()])
