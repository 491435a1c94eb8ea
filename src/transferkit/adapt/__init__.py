"""Domain adaptation: labelled source + unlabelled target (issue 5). So far: the shift diagnostics and the
adaptation losses as plain modules; the ``adapt`` job that trains with them is still to come."""

from transferkit.adapt.diagnostics import mmd2, proxy_a_distance
from transferkit.adapt.losses import GradientReversal, coral_loss, dann_coefficient, entropy, mk_mmd_loss

__all__ = ["GradientReversal", "coral_loss", "dann_coefficient", "entropy", "mk_mmd_loss", "mmd2",
           "proxy_a_distance"]
