"""Transferability estimation: which pretrained source to transfer from, judged before any fine-tuning.

Plain NumPy functions on what a frozen source model produces for the target data — no training loop, no torch.

Label-based scores (:mod:`~transferkit.transferability.scores`; higher is better, comparable across sources on the
same target set): :func:`logme` (You et al., ICML 2021) and :func:`h_score` (Bao et al., ICIP 2019; optional
shrinkage after Ibrahim et al., 2021) on penultimate features; :func:`leep` (Nguyen et al., ICML 2020) and
:func:`nce` (Tran et al., ICCV 2019) on the source head's predictions over its own classes. :data:`SCORES` maps
their names to ``(function, input kind)``.

Domain similarity (:mod:`~transferkit.transferability.similarity`; needs no target labels): :func:`mean_cosine`,
:func:`mmd` (unbiased MMD², Gretton et al., 2012) and :func:`proxy_a_distance` (Ben-David et al., 2007).

What ``transferkit select`` builds on them: :mod:`~transferkit.transferability.ranking` (ranking candidates,
correlating scores with fine-tuned accuracy; plain NumPy/SciPy) and :mod:`~transferkit.transferability.candidates`
(scoring a loaded candidate's frozen features through the feature cache; torch — not imported here).

All of them validate their inputs through :mod:`~transferkit.transferability.checks` and raise ``ValueError`` on
NaN features, malformed labels or non-probability rows rather than return a meaningless number.

Named ``transferability`` rather than ``select``: importing a subpackage sets the parent package's attribute of
the same name, so a package ``transferkit.select`` would replace a public job function ``transferkit.select(...)``
as soon as anything imported it (as ``adaptation`` avoids for ``transferkit.adapt``).
"""

from transferkit.transferability.scores import SCORES, h_score, leep, logme, nce
from transferkit.transferability.similarity import mean_cosine, mmd, proxy_a_distance

__all__ = ["SCORES", "h_score", "leep", "logme", "mean_cosine", "mmd", "nce", "proxy_a_distance"]
