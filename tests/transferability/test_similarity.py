"""Domain similarity: near 0 / near 1 where the domains match, clearly apart where they do not, an unbiased MMD
that agrees with its defining sum, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.transferability import mean_cosine, mmd, proxy_a_distance


def domains(shift=0.0, n_source=300, n_target=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n_source, d)), rng.normal(0, 1, (n_target, d)) + shift


def direct_mmd2(x, y, kernel):
    """Gretton et al. (2012), eq. 3, summed pair by pair."""
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_its_definition_for_both_kernels():
    s, t = domains(0.7, n_source=9, n_target=7, d=3, seed=1)
    h = 1.3
    rbf = direct_mmd2(s, t, lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * h**2)))
    assert mmd(s, t, bandwidth=h) == pytest.approx(rbf, rel=1e-10)
    assert mmd(s, t, kernel="linear") == pytest.approx(direct_mmd2(s, t, np.dot), rel=1e-10)
    pooled = np.concatenate([s, t])
    distances = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)[np.triu_indices(len(pooled), 1)]
    median = np.median(distances)
    by_median = direct_mmd2(s, t, lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * median**2)))
    assert mmd(s, t) == pytest.approx(by_median, rel=1e-10)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    values = [mmd(*domains(shift)) for shift in (0.0, 0.5, 2.0)]
    assert abs(values[0]) < 0.01
    assert values[0] < values[1] < values[2] and values[2] > 0.3
    s, t = domains(1.0)
    assert mmd(s * 1e3, t * 1e3) == pytest.approx(mmd(s, t), rel=1e-9)  # median heuristic: scale-free


def test_mmd_subsamples_deterministically():
    s, t = domains(0.5, n_source=400, n_target=350)
    assert mmd(s, t, max_samples=100, seed=3) == mmd(s, t, max_samples=100, seed=3)
    assert mmd(s, t, max_samples=100, seed=3) != mmd(s, t, max_samples=100, seed=4)
    assert mmd(s, t, max_samples=400) == mmd(s, t)  # nothing to drop: the full sets


def test_proxy_a_distance_is_near_0_for_one_domain_and_near_2_for_separated_ones():
    assert proxy_a_distance(*domains(0.0)) < 0.3
    assert proxy_a_distance(*domains(3.0)) > 1.8
    assert proxy_a_distance(*domains(0.5), seed=2) == proxy_a_distance(*domains(0.5), seed=2)


def test_proxy_a_distance_balances_unequal_domains():
    # 300 vs 60 from one distribution: an unbalanced classifier would score 2(1 − 2·60/360) ≈ 1.3 by
    # always answering "source"
    assert proxy_a_distance(*domains(0.0, n_source=300, n_target=60, seed=3)) < 0.5


def test_mean_cosine_ranges_from_opposite_to_identical():
    s, t = domains(0.0, seed=4)
    offset = np.linspace(1.0, 2.0, 8)
    assert mean_cosine(s + offset, t + offset) == pytest.approx(1.0, abs=0.01)
    assert mean_cosine(s + offset, -(t + offset)) == pytest.approx(-1.0, abs=0.01)
    a, b = np.zeros(8), np.zeros(8)
    a[0], b[1] = 5.0, 5.0
    assert mean_cosine(s + a, t + b) == pytest.approx(0.0, abs=0.05)
    assert mean_cosine(s * 10 + offset * 10, t + offset) == pytest.approx(mean_cosine(s + offset, t + offset))


@pytest.mark.parametrize("measure", [mean_cosine, mmd, proxy_a_distance], ids=lambda f: f.__name__)
def test_bad_feature_sets_are_clear_errors(measure):
    s, t = domains(1.0, n_source=20, n_target=20, d=4)
    with pytest.raises(ValueError, match="source and target must have the same feature width, got 4 and 3"):
        measure(s, t[:, :3])
    spoiled = t.copy()
    spoiled[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"target has 1 row\(s\) with NaN or inf values \(of 20\); rows \[5\]"):
        measure(s, spoiled)
    with pytest.raises(ValueError, match=r"source must be a 2-D \(N, D\) array, got 1-D"):
        measure(s[:, 0], t)


def test_too_few_samples_and_bad_options_are_clear_errors():
    s, t = domains(1.0, n_source=20, n_target=20, d=4)
    with pytest.raises(ValueError, match="target needs at least 2 rows, got 1"):
        mmd(s, t[:1])
    with pytest.raises(ValueError, match="source needs at least 5 rows, got 3"):
        proxy_a_distance(s[:3], t)
    with pytest.raises(ValueError, match="kernel must be 'rbf' or 'linear'"):
        mmd(s, t, kernel="laplace")
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        mmd(s, t, bandwidth=0.0)
    with pytest.raises(ValueError, match="mean of the target features is the zero vector"):
        mean_cosine(s, np.r_[t, -t])
