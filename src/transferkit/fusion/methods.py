"""The fusion methods ``transferkit fuse`` runs, one registry entry each with the function that implements it and
its paper (``transferkit list fusion-methods``).

The order is the order ``fuse`` runs and reports them in: prediction-level ensembles first, then the soups.
"""

from __future__ import annotations

from transferkit.fusion.ensemble import Stacker, average_probs, fit_weights
from transferkit.fusion.gating import fit_gating
from transferkit.fusion.soup import greedy_soup, uniform_soup
from transferkit.registry import Registry

FUSION_METHODS: Registry[object] = Registry("fusion-methods", "fusion method", sort=False)
FUSION_METHODS.add("average", average_probs, summary="mean of the members' class probabilities",
                   paper="the plain ensemble average")
FUSION_METHODS.add("weighted", fit_weights, summary="member weights fitted on held-out predictions (NLL)",
                   paper="Caruana et al., 2004, Ensemble Selection from Libraries of Models")
FUSION_METHODS.add("stacking", Stacker, summary="a logistic regression on the members' held-out predictions",
                   paper="Wolpert, 1992, Stacked Generalization")
FUSION_METHODS.add("gating", fit_gating, summary="input-dependent member weights from a gating network",
                   paper="Jacobs et al., 1991, Adaptive Mixtures of Local Experts")
FUSION_METHODS.add("soup_uniform", uniform_soup, summary="one model: the average of the members' weights",
                   paper="Wortsman et al., 2022, Model soups")
FUSION_METHODS.add("soup_greedy", greedy_soup,
                   summary="one model: members averaged in while held-out accuracy does not drop",
                   paper="Wortsman et al., 2022, Model soups")
