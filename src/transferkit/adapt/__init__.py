"""Domain adaptation: labelled source + unlabelled target (issue 5).

Methods are loss modules (:mod:`transferkit.adapt.methods`) kept apart from the training loop
(:mod:`transferkit.engine.adapt`); :mod:`~transferkit.adapt.selection` chooses checkpoints without target
labels; :mod:`~transferkit.adapt.diagnostics` measures the domain gap; :mod:`~transferkit.adapt.adabn`
re-estimates BatchNorm statistics. The job that ties them together is :func:`transferkit.api.adapt`.
"""

from transferkit.adapt.adabn import adapt_batchnorm
from transferkit.adapt.diagnostics import mmd2, proxy_a_distance
from transferkit.adapt.losses import GradientReversal, coral_loss, dann_coefficient, entropy, mk_mmd_loss
from transferkit.adapt.methods import AdaptMethod, build_method, list_methods, parse_method, register_method
from transferkit.adapt.net import AdaptNet
from transferkit.adapt.selection import deep_embedded_validation, target_entropy

__all__ = ["AdaptMethod", "AdaptNet", "GradientReversal", "adapt_batchnorm", "build_method", "coral_loss",
           "dann_coefficient", "deep_embedded_validation", "entropy", "list_methods", "mk_mmd_loss", "mmd2",
           "parse_method", "proxy_a_distance", "register_method", "target_entropy"]
