"""Knowledge distillation: losses that train a student network to match a teacher's outputs.

Two kinds of distillation, as plain loss modules kept apart from the training loop (the TLlib pattern, as in
:mod:`transferkit.adaptation`); :mod:`transferkit.distillation.train` runs teacher and student together on the
engine (not imported here, so that the losses load without the training loop):

* **response-based** — :func:`kd_loss` / :class:`KDLoss` (Hinton, Vinyals & Dean, 2015, "Distilling the
  Knowledge in a Neural Network"): the student matches the teacher's temperature-softened class
  probabilities, mixed with the ordinary cross-entropy on whatever labels the batch has;
* **hint (feature-based)** — :class:`HintLoss` (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep
  Nets"): a regressor maps an intermediate student layer onto a teacher layer's shape, matched by MSE.
  :class:`FeatureTap` reads such layers by module name (e.g. a backbone's ``"stages.conv2"``) and
  :func:`probe_shape` tells their shapes so the regressor can be built before the optimiser.

Named ``distillation`` (not ``distill/``) so that it never shadows the job function ``transferkit.distill``
(see :mod:`transferkit.adaptation`). The job is :func:`transferkit.api.distill`.
"""

from __future__ import annotations

from transferkit.distillation.hooks import FeatureTap, module_names, probe_shape
from transferkit.distillation.losses import HintLoss, KDLoss, kd_loss

__all__ = ["FeatureTap", "HintLoss", "KDLoss", "kd_loss", "module_names", "probe_shape"]
