"""Label-based transferability scores: LogME against a direct evidence maximisation, invariances, the orderings
the scores exist for, and clear errors on malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from transferkit.transferability import SCORES, h_score, leep, logme, nce


def problem(n=60, d=6, c=3, sep=1.0, seed=0):
    """Gaussian class clusters: ``sep`` scales the distance between class means (0: labels are pure noise)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    rng.shuffle(labels)
    centres = rng.normal(0, 1, (c, d)) * sep
    return centres[labels] + rng.normal(0, 1, (n, d)), labels


def source_probs(labels, z=5, informative=True, seed=0):
    """Softmax outputs over ``z`` source classes; when informative, source class ``y`` (mod z) gets most mass."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(labels), z))
    if informative:
        logits[np.arange(len(labels)), labels % z] += 4.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def direct_log_evidence(features, labels):
    """Independent LogME: maximise log N(y | 0, β⁻¹I + α⁻¹FFᵀ) over (log α, log β) numerically, per class."""
    n = len(features)
    gram = features @ features.T
    total = 0.0
    for k in range(labels.max() + 1):
        y = (labels == k).astype(np.float64)

        def negative(p, y=y):
            alpha, beta = np.exp(p)
            cov = np.eye(n) / beta + gram / alpha
            _, logdet = np.linalg.slogdet(cov)
            return 0.5 * (logdet + y @ np.linalg.solve(cov, y) + n * np.log(2 * np.pi))

        runs = [minimize(negative, np.array(x0), method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000}) for x0 in ([0.0, 0.0], [3.0, 3.0])]
        best = min(runs, key=lambda r: r.fun)
        assert best.success
        total -= best.fun
    return total / (labels.max() + 1) / n


@pytest.mark.parametrize(("n", "d"), [(40, 5), (20, 30)])  # N > D and N < D take different decompositions
def test_logme_matches_direct_maximisation_of_the_evidence(n, d):
    features, labels = problem(n, d, 3, sep=0.7, seed=n)
    assert logme(features, labels) == pytest.approx(direct_log_evidence(features, labels), rel=1e-4)


def test_scores_are_invariant_to_sample_order_and_feature_order():
    features, labels = problem(80, 7, 4, seed=1)
    rng = np.random.default_rng(1)
    rows, cols = rng.permutation(len(features)), rng.permutation(features.shape[1])
    moved_f, moved_y = features[rows][:, cols], labels[rows]
    for score in (logme, h_score, lambda f, y: h_score(f, y, shrinkage=True)):
        assert score(moved_f, moved_y) == pytest.approx(score(features, labels), rel=1e-9)


def test_leep_and_nce_are_invariant_to_the_order_of_source_classes():
    _, labels = problem(90, 2, 3, seed=2)
    probs = source_probs(labels, z=6, seed=2)
    perm = np.random.default_rng(2).permutation(6)
    assert leep(probs[:, perm], labels) == pytest.approx(leep(probs, labels), rel=1e-12)
    assert nce(probs[:, perm], labels) == pytest.approx(nce(probs, labels), rel=1e-12)
    relabelled = np.array([10, 3, 7, 42, 5, 0])[probs.argmax(axis=1)]  # any integer ids, only equality matters
    assert nce(relabelled, labels) == pytest.approx(nce(probs, labels), rel=1e-12)


def test_float32_input_and_large_scales_give_the_same_scores():
    features, labels = problem(60, 5, 3, seed=3)
    for score in (logme, h_score):
        reference = score(features, labels)
        assert score(features.astype(np.float32), labels) == pytest.approx(reference, rel=1e-6)
        big = score(features * 1e3, labels)  # LogME and H-score are both invariant to a global scale
        assert np.isfinite(big) and big == pytest.approx(reference, rel=1e-6)
    probs = source_probs(labels, seed=3)
    assert leep(probs.astype(np.float32), labels) == pytest.approx(leep(probs, labels), rel=1e-6)


def test_features_that_separate_the_classes_score_higher_than_random_ones():
    good, labels = problem(120, 8, 4, sep=2.0, seed=4)
    noise = np.random.default_rng(4).normal(0, 1, good.shape)
    assert logme(good, labels) > logme(noise, labels) + 0.05
    assert h_score(good, labels) > 5 * h_score(noise, labels)
    assert h_score(good, labels, shrinkage=True) > h_score(noise, labels, shrinkage=True)


def test_h_score_reaches_its_bound_for_one_hot_features_and_ignores_collinear_columns():
    features, labels = problem(90, 6, 3, seed=5)
    assert h_score(np.eye(3)[labels], labels) == pytest.approx(2.0, rel=1e-9)  # C − 1
    mixed = np.c_[features, features @ np.random.default_rng(5).normal(0, 1, (6, 10))]  # rank-6 covariance, 16-D
    assert h_score(mixed, labels) == pytest.approx(h_score(features, labels), rel=1e-6)


def test_shrinkage_keeps_h_score_informative_when_features_outnumber_samples():
    good, labels = problem(30, 100, 3, sep=1.0, seed=6)
    noise = np.random.default_rng(6).normal(0, 1, good.shape)
    # unregularised, any 100-D features "explain" 30 samples perfectly: both hit C − 1 = 2
    assert h_score(noise, labels) == pytest.approx(2.0, rel=1e-6)
    assert h_score(good, labels) == pytest.approx(2.0, rel=1e-6)
    assert h_score(good, labels, shrinkage=True) > 2 * h_score(noise, labels, shrinkage=True)
    assert h_score(good, labels, shrinkage=0.0) == pytest.approx(h_score(good, labels))
    assert h_score(good, labels, shrinkage=1.0) == 0.0
    assert 0.0 < h_score(good, labels, shrinkage=0.5) < 2.0


def test_informative_source_predictions_score_higher_than_random_ones():
    _, labels = problem(150, 2, 3, seed=7)
    good, bad = source_probs(labels, seed=7), source_probs(labels, informative=False, seed=7)
    assert leep(good, labels) > leep(bad, labels) + 0.3
    assert nce(good, labels) > nce(bad, labels) + 0.3
    assert leep(good, labels) <= 0.0 and nce(good, labels) <= 0.0


def test_nce_is_zero_for_a_deterministic_mapping_and_minus_entropy_for_a_constant_source():
    labels = np.array([0, 1, 2, 0, 1, 2, 2, 2, 0, 1])
    mapped = np.array([4, 1, 2, 3, 0, 2, 5, 5, 3, 0])  # many-to-one: {3,4} → 0, {0,1} → 1, {2,5} → 2
    assert nce(mapped, labels) == 0.0
    assert leep(np.eye(6)[mapped], labels) == pytest.approx(0.0, abs=1e-12)
    freq = np.bincount(labels) / len(labels)
    assert nce(np.zeros(10, dtype=int), labels) == pytest.approx(np.sum(freq * np.log(freq)), rel=1e-12)


def test_leep_on_one_hot_predictions_equals_nce_and_a_hand_computed_value():
    assert leep(np.eye(2)[[0, 0, 1, 1]], [0, 1, 1, 1]) == pytest.approx(np.log(0.5) / 2)  # P(y|z=0) = 1/2
    _, labels = problem(100, 2, 4, seed=8)
    z = source_probs(labels, z=7, seed=8).argmax(axis=1)
    assert leep(np.eye(7)[z], labels) == pytest.approx(nce(z, labels), rel=1e-12)


def test_scores_registry_names_each_function_and_its_input():
    expected = {"logme": (logme, "features"), "h_score": (h_score, "features"),
                "leep": (leep, "source_probs"), "nce": (nce, "source_probs")}
    shrunk, kind = SCORES["h_score_shrunk"]
    assert {k: v for k, v in SCORES.items() if k != "h_score_shrunk"} == expected and kind == "features"
    f = np.random.default_rng(0).normal(size=(30, 40))
    y = np.arange(30) % 3
    assert shrunk(f, y) == pytest.approx(h_score(f, y, shrinkage=True))


def _feature_scores():
    return [logme, h_score]


def _uniform_probs(features):
    return np.full((len(features), 3), 1 / 3)


def _all_scores():
    """Every score with a way to build its first argument from a feature matrix."""
    return [(logme, np.asarray), (h_score, np.asarray), (leep, _uniform_probs), (nce, _uniform_probs)]


BAD_LABELS = [
    ([0, 0, 0, 0, 0, 0], {}, r"single class \(C=1\)"),
    ([0, 1, 2, 0, 1, 2], {"num_classes": 7}, r"fewer samples \(6\) than classes \(C=7\)"),
    ([0, 1, 1.5, 0, 1, 0], {}, r"non-integer values: \[1\.5\]"),
    ([0, 1, -1, 0, 1, -3], {}, r"offending values: \[-3, -1\]"),
    ([0, 1, 2, 3, 1, 0], {"num_classes": 3}, r"integers in 0\.\.C-1 with C=3; offending values: \[3\]"),
    ([0, 0, 2, 2, 3, 3], {}, r"cover 0\.\.C-1 with C=4; missing: \[1\]"),
    (["a", "b", "a", "b", "a", "b"], {}, r"labels must be integer class ids.*dtype"),
    ([0, 1, 0, 1, 0], {}, r"labels has 5 entries but .* has 6 rows"),
    ([[0, 1, 0], [1, 0, 1]], {}, r"labels must be a 1-D array"),
]


@pytest.mark.parametrize(("labels", "kwargs", "match"), BAD_LABELS)
@pytest.mark.parametrize("score", _all_scores(), ids=lambda s: s[0].__name__)
def test_malformed_labels_are_clear_errors_in_every_score(score, labels, kwargs, match):
    fn, first = score
    features = np.random.default_rng(0).normal(0, 1, (6, 3))
    with pytest.raises(ValueError, match=match):
        fn(first(features), np.asarray(labels), **kwargs)


@pytest.mark.parametrize("score", _feature_scores(), ids=lambda f: f.__name__)
def test_malformed_features_are_clear_errors(score):
    features, labels = problem(20, 3, 2, seed=9)
    spoiled = features.copy()
    spoiled[[3, 11], 1] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"features has 2 row\(s\) with NaN or inf values \(of 20\); rows \[3, 11\]"):
        score(spoiled, labels)
    with pytest.raises(ValueError, match=r"features must be a 2-D \(N, D\) array, got 1-D"):
        score(features[:, 0], labels)
    with pytest.raises(ValueError, match=r"labels has 19 entries but features has 20 rows"):
        score(features, labels[:-1])


def test_leep_rejects_rows_that_are_not_probabilities():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([[0.5, 0.5], [2.0, 1.0], [1.0, 1.0], [0.0, 1.0]])  # unnormalised, e.g. exp(logits)
    unnormalised = r"source_probs rows must sum to 1 \(tolerance 0.001\); 2 row\(s\) do not, e.g. row 1 sums to 3"
    with pytest.raises(ValueError, match=unnormalised):
        leep(scores, labels)
    with pytest.raises(ValueError, match=r"source_probs must be probabilities; 1 row\(s\) have negative entries"):
        leep(np.array([[0.5, 0.5], [1.2, -0.2], [1.0, 0.0], [0.0, 1.0]]), labels)
    with pytest.raises(ValueError, match=r"source_probs has 1 row\(s\) with NaN"):
        leep(np.array([[0.5, 0.5], [np.nan, 1.0], [1.0, 0.0], [0.0, 1.0]]), labels)
    with pytest.raises(ValueError, match=r"labels has 3 entries but source_probs has 4 rows"):
        leep(np.full((4, 2), 0.5), labels[:3])


def test_nce_rejects_non_integer_source_labels_and_bad_shapes():
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"source_labels must be integer class ids; non-integer values: \[0\.5\]"):
        nce(np.array([0.0, 0.5, 1.0, 1.0]), labels)
    with pytest.raises(ValueError, match=r"source_labels must be 1-D class ids or a 2-D"):
        nce(np.zeros((4, 2, 2)), labels)
    with pytest.raises(ValueError, match=r"labels has 4 entries but source_labels has 3 rows"):
        nce(np.array([0, 1, 1]), labels)


def test_bad_shrinkage_is_a_clear_error():
    features, labels = problem(20, 3, 2, seed=10)
    for bad in (1.5, -0.1, "yes"):
        with pytest.raises(ValueError, match="shrinkage must be True, False or a number in"):
            h_score(features, labels, shrinkage=bad)
