import copy

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.regularizers import DELTA, feature_map_distance


def setup(seed=0, n=16):
    torch.manual_seed(seed)
    m = create_backbone("seed_cnn", num_classes=3)
    return m, torch.randn(n, 1, 28, 28), torch.randint(0, 3, (n,))


def test_feature_map_distance_matches_a_hand_loop():
    g = torch.Generator().manual_seed(0)
    t, s, w = torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g), torch.rand(4, generator=g)
    expected = sum(w[c] * (t[b, c] - s[b, c]).pow(2).sum() / 30 for b in range(3) for c in range(4)) / 3
    assert feature_map_distance(t, s, w).item() == pytest.approx(expected.item(), rel=1e-5)
    t2, s2 = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)  # (B, D): each unit is a channel
    assert feature_map_distance(t2, s2).item() == pytest.approx((t2 - s2).pow(2).sum(1).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="differ"):
        feature_map_distance(t, s[:, :2])


@pytest.mark.parametrize("attention", [False, True])
def test_zero_when_target_equals_source(attention):
    m, x, y = setup()
    reg = DELTA(beta=0.0, attention=attention).attach(m, copy.deepcopy(m), (x, y))
    assert reg(m, x, y, m(x)).item() == pytest.approx(0.0, abs=1e-10)


def test_positive_after_a_change_gradient_reaches_the_target_only():
    m, x, y = setup()
    source = copy.deepcopy(m)
    reg = DELTA(alpha=1.0, beta=0.0, attention=False).attach(m, source)
    with torch.no_grad():
        m.stages.conv1[0].weight.mul_(1.5)
    logits = m(x)
    assert set(reg._maps) == {"conv1", "conv2", "fc"}  # read by the hooks during the forward
    loss = reg(m, x, y, logits)
    assert loss.item() > 0
    loss.backward()
    assert m.stages.conv1[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in reg.source.parameters())
    # hooked maps and recomputed maps give the same value
    assert reg(m, x, y, logits).item() == pytest.approx(loss.item(), rel=1e-5)
    # unweighted: alpha/2 * sum over layers of the plain distance
    with torch.no_grad():
        t, s = m.stages.conv1(x), source.stages.conv1(x)
        t2, s2 = m.stages.conv2(t), source.stages.conv2(s)
        t3, s3 = m.stages.fc(t2), source.stages.fc(s2)
        hand = 0.5 * sum(feature_map_distance(a, b).item() for a, b in ((t, s), (t2, s2), (t3, s3)))
    assert loss.item() == pytest.approx(hand, rel=1e-5)


def test_attention_weights_favour_the_channel_the_task_needs():
    m, x, _ = setup(n=64)
    with torch.no_grad():  # only conv1 channel 0 carries signal: removing any other channel changes nothing
        m.stages.conv1[0].weight[1:] = 0
        m.stages.conv1[0].bias[1:] = 0
        m.stages.conv1[0].bias[0] = 1.0
        y = (m.forward_features(x)[:, 0] > m.forward_features(x)[:, 0].median()).long()
    reg = DELTA(layers="conv1", attention_steps=200).attach(m, copy.deepcopy(m), (x, y))
    w = reg.weights["conv1"]
    assert w.shape == (32,) and w.sum().item() == pytest.approx(32.0, rel=1e-5)  # weights average 1
    assert int(w.argmax()) == 0 and w[0] > 1.0
    assert torch.allclose(w[1:], w[1].expand(31))
    assert reg.layers == ["conv1"]


def test_options_are_checked_and_hooks_removed():
    m, x, y = setup()
    with pytest.raises(ValueError, match="need a labelled sample"):
        DELTA().attach(m)
    with pytest.raises(ValueError, match="unknown layer.*valid layers: conv1, conv2, fc"):
        DELTA(layers=["conv9"], attention=False).attach(m)
    with pytest.raises(RuntimeError, match="attach"):
        DELTA()(m, x, y, m(x))
    reg = DELTA(layers="fc, conv1", attention=False).attach(m)
    assert reg.layers == ["conv1", "fc"]
    reg.detach()
    assert not any(s._forward_hooks for s in m.stages.values())


def test_attention_pass_is_cached_per_source_weights_and_sample(monkeypatch, tmp_path):
    from transferkit.regularizers import delta as delta_mod

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(delta_mod, "_MEMORY", type(delta_mod._MEMORY)())
    calls = []
    real = DELTA.channel_attention

    def counting(self, head, x, y):
        calls.append(1)
        return real(self, head, x, y)

    monkeypatch.setattr(DELTA, "channel_attention", counting)
    m, x, y = setup(n=24)
    first = DELTA(attention_steps=20).attach(m, copy.deepcopy(m), (x, y))
    assert first.attention_cache == "miss" and len(calls) == 1
    again = DELTA(attention_steps=20).attach(m, copy.deepcopy(m), (x, y))  # same source, head, sample: no pass
    assert again.attention_cache == "hit" and len(calls) == 1
    assert all(torch.equal(first.weights[k], again.weights[k]) for k in first.weights)
    delta_mod._MEMORY.clear()  # another process: read back from the disk entry
    disk = DELTA(attention_steps=20).attach(m, copy.deepcopy(m), (x, y))
    assert disk.attention_cache == "hit" and len(calls) == 1
    assert all(torch.allclose(first.weights[k], disk.weights[k]) for k in first.weights)
    DELTA(attention_steps=20).attach(m, copy.deepcopy(m), (x[:20], y[:20]))  # another sample: measured again
    assert len(calls) == 2
    changed = copy.deepcopy(m)
    with torch.no_grad():
        changed.stages.conv1[0].weight.add_(0.1)
    DELTA(attention_steps=20).attach(m, changed, (x, y))  # other source weights: measured again
    assert len(calls) == 3
    delta_mod._MEMORY.clear()  # a corrupt disk entry is dropped and recomputed, not trusted
    for f in (tmp_path / "delta-attention").glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert DELTA(attention_steps=20).attach(m, copy.deepcopy(m), (x, y)).attention_cache == "miss"
    assert len(calls) == 4
