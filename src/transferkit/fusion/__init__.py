"""Fusion: combining several models (or their features) into one prediction.

* :mod:`~transferkit.fusion.ensemble` — fusion of member predictions: averaging, NLL-fitted weights (Caruana et
  al., 2004), stacking (Wolpert, 1992), and the class-order checks every ensemble needs first;
* :mod:`~transferkit.fusion.gating` — input-dependent weights from a gating network, a mixture of fixed experts
  (Jacobs, Jordan, Nowlan & Hinton, 1991);
* :mod:`~transferkit.fusion.soup` — model soups, one model with averaged weights (Wortsman et al., 2022);
* :mod:`~transferkit.fusion.methods` — the registry of the methods ``fuse`` runs (``transferkit list
  fusion-methods``).

Feature-level fusion (several extractors' features joined for one head) is a source, not a fusion of trained
models: :class:`~transferkit.backbones.fused.FeatureFusionBackbone` (``--source fuse:MODE:A+B``).

Whatever is fitted here (weights, stacker, gate, greedy soup) is fitted on held-out predictions — a validation
split or out-of-fold predictions — that the caller passes in; these functions never see a test split.
"""

from transferkit.fusion.ensemble import (
    FIT_METHODS,
    Stacker,
    align_probs,
    average_probs,
    check_members,
    fit_weights,
    weighted_probs,
)
from transferkit.fusion.gating import GatedFusion, fit_gating
from transferkit.fusion.soup import check_soup, greedy_soup, uniform_soup

__all__ = ["FIT_METHODS", "GatedFusion", "Stacker", "align_probs", "average_probs",
           "check_members", "check_soup", "fit_gating", "fit_weights", "greedy_soup", "uniform_soup",
           "weighted_probs"]
