"""Domain-shift diagnostics: they separate shifted from unshifted samples and fail clearly on bad input."""

import numpy as np
import pytest

from transferkit.adaptation import mmd2, proxy_a_distance
from transferkit.report.plots import plot_embedding


def blobs(shift, n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + shift


def test_proxy_a_distance_is_near_0_for_one_domain_and_near_2_for_separated_ones():
    same = proxy_a_distance(*blobs(0.0))
    far = proxy_a_distance(*blobs(3.0))
    assert same < 0.3 and far > 1.8
    assert proxy_a_distance(*blobs(0.5)) == proxy_a_distance(*blobs(0.5))  # seeded


def test_mmd_grows_with_the_shift_and_is_scale_free():
    values = [mmd2(*blobs(s)) for s in (0.0, 0.5, 2.0)]
    assert abs(values[0]) < 0.05 and values[0] < values[1] < values[2]
    s, t = blobs(1.0)
    assert mmd2(s * 100, t * 100) == pytest.approx(mmd2(s, t), rel=1e-6)


def test_bad_shapes_and_tiny_samples_are_clear_errors():
    with pytest.raises(ValueError, match="same width"):
        mmd2(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 4 samples per domain"):
        proxy_a_distance(np.zeros((3, 2)), np.ones((10, 2)))


def test_embedding_plot_writes_a_png(tmp_path):
    s, t = blobs(2.0, n=60)
    y = np.arange(60) % 3
    path = plot_embedding(s, t, y, y, tmp_path / "tsne.png", title="blobs")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
