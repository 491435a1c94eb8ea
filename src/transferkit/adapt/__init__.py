"""Domain adaptation: labelled source + unlabelled target (issue 5). So far: the shift diagnostics."""

from transferkit.adapt.diagnostics import mmd2, plot_embedding, proxy_a_distance

__all__ = ["mmd2", "plot_embedding", "proxy_a_distance"]
