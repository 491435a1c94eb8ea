"""The score names of ``transferkit select`` (:mod:`transferkit.api.select_job`): the default list, and the parsing
of the ``scores`` option against the registered transferability scores (:data:`transferkit.transferability.SCORES`)."""

from __future__ import annotations

from collections.abc import Sequence

from transferkit.options import parse_names
from transferkit.transferability.scores import SCORES

DEFAULT_SCORES = ("logme", "h_score", "h_score_shrunk", "leep", "nce")


def parse_scores(scores: str | Sequence[str]) -> list[str]:
    """``"logme,leep"`` or ``["logme", "leep"]`` → the list of score names (order kept: the first ranks);
    an unknown name is a ValueError listing the valid ones."""
    names = parse_names(scores)
    if not names:
        raise ValueError(f"scores: give at least one score; valid scores: {SCORES.valid()}")
    bad = [s for s in names if s not in SCORES]
    if bad:
        raise SCORES.unknown(bad[0])
    return list(dict.fromkeys(names))
