"""Domain adaptation: labelled source + unlabelled target (issue 5).

Methods are loss modules (:mod:`transferkit.adaptation.methods`) kept apart from the training loop
(:mod:`transferkit.engine.adapt`); :mod:`~transferkit.adaptation.selection` chooses checkpoints without target
labels; :mod:`~transferkit.adaptation.adabn` re-estimates BatchNorm statistics. The domain gap is measured by
:mod:`transferkit.transferability.similarity`, as ``select`` measures it. The job that ties them together is
:func:`transferkit.api.adapt`.

Named ``adaptation`` rather than ARCHITECTURE.md's ``adapt/``: importing a subpackage sets the parent package's
attribute of the same name, so a package ``transferkit.adapt`` would replace the public job function
``transferkit.adapt(...)`` as soon as anything imported it (``distillation`` likewise, for ``transferkit.distill``).
"""

from transferkit.adaptation.adabn import adapt_batchnorm
from transferkit.adaptation.losses import GradientReversal, coral_loss, dann_coefficient, entropy, mk_mmd_loss
from transferkit.adaptation.methods import AdaptMethod, build_method, list_methods, parse_method, register_method
from transferkit.adaptation.net import AdaptNet
from transferkit.adaptation.selection import deep_embedded_validation, target_entropy

__all__ = ["AdaptMethod", "AdaptNet", "GradientReversal", "adapt_batchnorm", "build_method", "coral_loss",
           "dann_coefficient", "deep_embedded_validation", "entropy", "list_methods", "mk_mmd_loss",
           "parse_method", "register_method", "target_entropy"]
