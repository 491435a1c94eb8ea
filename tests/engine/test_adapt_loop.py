"""The adaptation loop: joint source/target batches, per-criterion checkpoints, divergence handling."""

import math

import pytest
import torch
from torch import nn

from transferkit.adaptation.methods import AdaptMethod, build_method
from transferkit.adaptation.net import AdaptNet
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine.adapt import DivergenceError, ValOutput, fit_adapt


def _blobs(n, shift, seed):
    """Two Gaussian classes in 2-D; the target domain is the same task translated by ``shift``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + torch.stack([y * 2.0 - 1.0, torch.zeros(n)], 1) + shift
    return TensorBatches(x.float(), y)


def _net():
    torch.manual_seed(0)
    return AdaptNet(None, nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)))


def _scorer(outs):
    src, tgt = outs
    return {"source_val": float((src.logits.argmax(1) == src.labels).float().mean()),
            "neg_epoch_proxy": float(tgt.logits.softmax(1).max(1).values.mean())}


def _groups(net, method, lr=0.05):
    return [{"params": list(net.parameters()), "lr": lr, "name": "head"},
            {"params": list(method.parameters()), "lr": lr, "name": "method"}]


def _cfg(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.05, "progress": False, "checkpoints": False, **kw})


class _Spy(AdaptMethod):
    """Records the shapes it sees and returns NaN from step ``nan_at`` on (or never)."""

    name = "spy"

    def __init__(self, nan_at=None):
        super().__init__(8, 2)
        self.calls, self.nan_at = [], nan_at

    def forward(self, f_s, logits_s, f_t, logits_t, progress):
        self.calls.append((tuple(f_s.shape), None if f_t is None else tuple(f_t.shape), progress))
        bad = self.nan_at is not None and len(self.calls) > self.nan_at
        return {"spy": (f_s.sum() * 0) + (float("nan") if bad else 0.0)}


def test_source_and_target_batches_are_drawn_together_and_progress_grows():
    src, tgt = _blobs(128, 0.0, 0), _blobs(96, 1.5, 1)
    tgt.y = None
    net, spy = _net(), _Spy()
    res = fit_adapt(net, spy, _groups(net, spy), src, tgt, [_blobs(64, 0, 2), _blobs(64, 1.5, 3)], _cfg(), _scorer,
                    {"source_val": "max", "neg_epoch_proxy": "min"})
    assert len(spy.calls) == 3 * 4  # max_size_cycle: 4 batches of the longer (source) loader per epoch
    assert all(s[0] == 32 and t is not None and t[0] == 32 for s, t, _ in spy.calls)
    progress = [p for *_, p in spy.calls]
    assert progress[0] == 0 and progress == sorted(progress) and progress[-1] < 1
    assert set(res.states) == {"source_val", "neg_epoch_proxy"} and res.last_epoch == 2 and res.epochs_run == 3
    assert len(res.history) == 3 and all("source_val" in r and "adapt_loss" in r for r in res.history)
    assert res.history[-1]["source_val"] > 0.9  # it learned the source task


def test_source_only_does_not_draw_target_batches():
    src = _blobs(64, 0.0, 0)
    net = _net()
    method = build_method("source_only", 8, 2)
    res = fit_adapt(net, method, _groups(net, method), src, None, [_blobs(32, 0, 2), _blobs(32, 1, 3)],
                    _cfg(epochs=1), _scorer, {"source_val": "max"})
    assert res.epochs_run == 1 and res.history[0]["adapt_loss"] == 0.0


def test_divergence_before_the_first_epoch_ends_is_an_error_naming_the_step():
    src, tgt = _blobs(128, 0.0, 0), _blobs(128, 1.5, 1)
    net, spy = _net(), _Spy(nan_at=2)
    with pytest.raises(DivergenceError, match=r"diverged at step 2 \(epoch 1\): non-finite loss .*lower lr="):
        fit_adapt(net, spy, _groups(net, spy), src, tgt, [_blobs(32, 0, 2), _blobs(32, 1, 3)], _cfg(), _scorer,
                  {"source_val": "max"})


def test_divergence_later_keeps_the_last_good_epoch_and_stops():
    src, tgt = _blobs(128, 0.0, 0), _blobs(128, 1.5, 1)
    net, spy = _net(), _Spy(nan_at=6)  # epoch 1 (0-based) goes bad at its 3rd step
    res = fit_adapt(net, spy, _groups(net, spy), src, tgt, [_blobs(32, 0, 2), _blobs(32, 1, 3)], _cfg(epochs=5),
                    _scorer, {"source_val": "max"})
    assert res.diverged is not None and res.diverged["step"] == 6 and res.diverged["epoch"] == 1
    assert res.last_epoch == 0 and res.best_epochs["source_val"] == 0  # nothing after the divergence counts
    assert res.epochs_run < 5
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_validation_outputs_carry_labels_only_when_given():
    seen = []

    def scorer(outs):
        seen.append([o.labels is None for o in outs])
        return {"source_val": 0.5}

    src, tgt = _blobs(64, 0.0, 0), _blobs(64, 1.5, 1)
    tval = _blobs(32, 1.5, 3)
    tval.y = None
    net = _net()
    m = build_method("dan", 8, 2)
    fit_adapt(net, m, _groups(net, m), src, tgt, [_blobs(32, 0, 2), tval], _cfg(epochs=1), scorer,
              {"source_val": "max"})
    assert seen == [[False, True]]
    assert isinstance(ValOutput(torch.zeros(1, 2), torch.zeros(1, 2), None).labels, type(None))
    assert not math.isnan(0.5)
