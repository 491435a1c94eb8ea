from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.fusion import (
    Stacker,
    align_probs,
    average_probs,
    check_members,
    fit_weights,
    weighted_probs,
)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny fits: with a CPU benchmark beside them, multithreaded BLAS only spins; one thread keeps them fast."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def test_average_of_identical_members_is_the_member():
    p = _softmax(np.random.default_rng(0).normal(size=(50, 4)))
    np.testing.assert_allclose(average_probs(np.stack([p, p, p])), p, atol=1e-12)


def test_average_is_the_mean_and_rejects_logits():
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(size=(3, 20, 5)))
    np.testing.assert_allclose(average_probs(probs), probs.mean(0))
    with pytest.raises(ValueError, match="softmax"):
        average_probs(rng.normal(size=(3, 20, 5)))


def _one_informative(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Member 0 is calibrated: labels are drawn from its own probabilities. Members 1 and 2 are unrelated noise.
    rng = np.random.default_rng(seed)
    p0 = _softmax(3.0 * rng.normal(size=(n, 4)))
    y = np.minimum((rng.random((n, 1)) > p0.cumsum(1)).sum(1), 3)  # one draw from each row's distribution
    noise = rng.dirichlet(np.ones(4), size=(2, n))
    return np.concatenate([p0[None], noise]), y


def test_fit_weights_finds_the_informative_member():
    probs, y = _one_informative(1000, seed=0)
    w = fit_weights(probs, y)
    assert w.shape == (3,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[0] > 0.9
    assert _nll(weighted_probs(probs, w), y) <= _nll(average_probs(probs), y)
    assert _nll(weighted_probs(probs, w), y) < _nll(average_probs(probs), y) - 0.1
    np.testing.assert_array_equal(w, fit_weights(probs, y))  # deterministic


def test_fit_weights_never_worse_than_uniform_and_rejects_unknown_method():
    rng = np.random.default_rng(3)
    probs, y = rng.dirichlet(np.ones(3), size=(4, 60)), rng.integers(0, 3, 60)
    w = fit_weights(probs, y)
    assert _nll(weighted_probs(probs, w), y) <= _nll(average_probs(probs), y) + 1e-12
    with pytest.raises(ValueError, match="nll"):
        fit_weights(probs, y, method="accuracy")


def test_weighted_probs_normalises_and_validates():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=(2, 10))
    np.testing.assert_allclose(weighted_probs(probs, [2.0, 0.0]), probs[0])
    with pytest.raises(ValueError, match="one weight per member"):
        weighted_probs(probs, [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_probs(probs, [1.0, -0.5])


def _complementary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # 4 classes: member A knows classes {0, 1}, member B knows {2, 3}; each outputs noise on the others.
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(2, n, 4))
    for m, known in enumerate(({0, 1}, {2, 3})):
        mask = np.isin(y, list(known))
        logits[m, mask, y[mask]] += 4.0
    return _softmax(logits), y


def test_stacking_beats_the_best_member_on_complementary_members():
    oof, y_oof = _complementary(600, seed=0)
    val, y_val = _complementary(600, seed=1)
    stacker = Stacker().fit(oof, y_oof)
    fused = stacker.predict_proba(val)
    assert fused.shape == (600, 4)
    np.testing.assert_allclose(fused.sum(1), 1.0)
    best_acc = max(float((val[m].argmax(1) == y_val).mean()) for m in range(2))
    best_nll = min(_nll(val[m], y_val) for m in range(2))
    assert float((fused.argmax(1) == y_val).mean()) > best_acc + 0.1
    assert _nll(fused, y_val) < best_nll
    assert stacker.C_ in stacker.c_grid


def test_stacker_round_trip_is_exact_through_json():
    oof, y = _complementary(200, seed=2)
    stacker = Stacker().fit(oof, y)
    record = json.loads(json.dumps(stacker.to_dict()))
    assert set(record) >= {"coef", "intercept", "classes"}
    restored = Stacker.from_dict(record)
    np.testing.assert_array_equal(restored.predict_proba(oof), stacker.predict_proba(oof))


def test_stacker_binary_and_errors():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    logits = rng.normal(size=(2, 120, 2))
    logits[0, np.arange(120), y] += 2.0
    stacker = Stacker().fit(_softmax(logits), y)
    p = stacker.predict_proba(_softmax(logits))
    assert p.shape == (120, 2) and float((p.argmax(1) == y).mean()) > 0.7
    with pytest.raises(RuntimeError, match="fit"):
        Stacker().predict_proba(_softmax(logits))
    with pytest.raises(ValueError, match="at least cv=3"):
        Stacker().fit(_softmax(logits[:, :5]), np.array([0, 0, 0, 0, 1]))


def test_check_members_aligns_permuted_class_orders():
    classes = ["cat", "dog", "fox"]
    other = ["fox", "cat", "dog"]
    perms = check_members([classes, other])
    np.testing.assert_array_equal(perms[0], [0, 1, 2])
    p = _softmax(np.random.default_rng(6).normal(size=(8, 3)))
    p_other = np.empty_like(p)
    for j, name in enumerate(other):  # the same predictions, columns in the other member's order
        p_other[:, j] = p[:, classes.index(name)]
    aligned = align_probs([p, p_other], perms)
    assert aligned.shape == (2, 8, 3)
    np.testing.assert_array_equal(aligned[1], p)


def test_check_members_refuses_different_class_sets_naming_both():
    with pytest.raises(ValueError) as err:
        check_members([["cat", "dog"], ["cat", "dog"], ["cat", "wolf"]])
    msg = str(err.value)
    assert "member 2" in msg and "['cat', 'wolf']" in msg and "member 0" in msg and "['cat', 'dog']" in msg
    with pytest.raises(ValueError, match="more than once"):
        check_members([["a", "b"], ["a", "a"]])
