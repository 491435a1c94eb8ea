"""Domain-shift diagnostics: adapt reports the similarity measures select reports (one module), and draws both
domains in 2-D."""

import numpy as np

from transferkit.report.plots import plot_embedding
from transferkit.transferability.similarity import SIMILARITY_MEASURES, similarities


def blobs(shift, n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, d)), rng.normal(0, 1, (n, d)) + shift


def test_similarities_reports_every_measure_and_separates_shifted_domains():
    near, far = similarities(*blobs(0.0), seed=1), similarities(*blobs(3.0), seed=1)
    assert list(near) == SIMILARITY_MEASURES.names() == ["mean_cosine", "mmd2", "proxy_a_distance"]
    assert near["proxy_a_distance"] < 0.3 < 1.8 < far["proxy_a_distance"] and near["mmd2"] < far["mmd2"]
    assert similarities(*blobs(0.5), seed=2) == similarities(*blobs(0.5), seed=2)  # seeded


def test_embedding_plot_writes_a_png(tmp_path):
    s, t = blobs(2.0, n=60)
    y = np.arange(60) % 3
    path = plot_embedding(s, t, y, y, tmp_path / "tsne.png", title="blobs")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
