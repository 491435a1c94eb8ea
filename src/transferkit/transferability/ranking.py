"""Ranking candidate sources by transferability scores, and checking the ranking against fine-tuning.

What ``transferkit select`` (:func:`transferkit.api.select_job.select`) does with the scores of
:mod:`~transferkit.transferability.scores` once every candidate has them — on plain dicts, with no model and no
torch, so the rules can be read and tested apart from the job that loads models and fine-tunes:

* the candidates: display names and kinds (a run/bundle directory, ``random:<backbone>``, ``fuse:``, a pretrained
  name) and the checks on the list before anything loads (:func:`check_candidates`);
* :func:`rank_candidates` — ranked by the first score, higher is better for every score (LogME, You et al., 2021;
  H-score, Bao et al., 2019; LEEP, Nguyen et al., 2020; NCE, Tran et al., 2019); a candidate without that score
  (LEEP/NCE need a source head) goes last, every score's own ranks are recorded too;
* :func:`score_correlations` — after verification by fine-tuning, per score Kendall's τ and Pearson's r between the
  score and the fine-tuned accuracy over the verified candidates (``None`` below :data:`MIN_FOR_CORRELATION` points
  or for constant values), and whether the top-1 by score is the top-1 by accuracy;
* :func:`similarity_sample` — which source images the domain similarity looks at (never the scoring images).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError

RANDOM_PREFIX = "random:"
"""``random:<backbone>``: that architecture randomly initialised — the baseline a useful source must beat."""
MIN_FOR_CORRELATION = 3
"""Fewer verified candidates than this give no correlation (``n/a``), only the top-1 agreement."""


def candidate_label(candidate: str) -> str:
    """A short display name: the directory name of a run/bundle (its run's name for ``…/bundle``), else as given —
    what the ranking table and the verification run directories call the candidate."""
    p = Path(candidate)
    if p.exists():
        p = p.resolve()
        return p.parent.name if p.name == "bundle" and p.parent.name else p.name
    return candidate


def safe_name(name: str) -> str:
    """``name`` as a file-name part (letters, digits, ``._-``; ``candidate`` when nothing is left), so that any
    candidate label can name its verification run's directory."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "candidate"


def candidate_kind(candidate: str) -> str:
    """What kind of source ``candidate`` is, for the metrics: run/bundle, random init, feature fusion or pretrained
    (an existing directory wins over a name that happens to look like ``random:``/``fuse:``)."""
    if Path(candidate).exists():
        return "run/bundle"
    if candidate.startswith(RANDOM_PREFIX):
        return "random init"
    if candidate.startswith("fuse:"):
        return "feature fusion"
    return "pretrained"


def is_random_init(candidate: str) -> bool:
    """Whether ``candidate`` is ``random:<backbone>`` (not a directory of that name): no source head, and it is
    verified by training from scratch."""
    return candidate.startswith(RANDOM_PREFIX) and not Path(candidate).exists()


def check_candidates(candidates: str | Path | Sequence[str | Path], verify: int) -> list[str]:
    """The candidates as strings: at least one, none twice; ``verify`` a whole number ≤ their count — checked before
    anything loads, so a mistake costs no scoring time."""
    cands = [str(candidates)] if isinstance(candidates, (str, Path)) else [str(c) for c in candidates]
    if not cands:
        raise ValueError("select needs at least one candidate source (a pretrained backbone name, a run/bundle "
                         "directory, timm:/torchvision: names or random:<backbone>)")
    dupes = sorted({c for c in cands if cands.count(c) > 1})
    if dupes:
        raise ValueError(f"candidate(s) given more than once: {dupes}")
    if isinstance(verify, bool) or not isinstance(verify, (int, np.integer)) or verify < 0:
        raise ConfigError("verify", "a whole number ≥ 0 (how many top candidates to fine-tune)", verify)
    if verify > len(cands):
        raise ConfigError("verify", f"at most the {len(cands)} candidate(s) given", verify)
    return cands


def verification_count(verify: int, verify_all: bool, entries: list[dict[str, Any]],
                       skipped: list[dict[str, str]]) -> int:
    """How many of the scored candidates to fine-tune: all with ``verify_all``, else ``verify`` — which must not
    exceed the candidates left after the skipped ones (a request checked again once loading has failed for some)."""
    n_verify = len(entries) if verify_all else int(verify)
    if n_verify > len(entries):
        raise ConfigError("verify", f"at most the {len(entries)} usable candidate(s)", verify,
                          f"only {len(entries)} usable candidate(s) remain after skipping {len(skipped)} "
                          f"({', '.join(s['candidate'] for s in skipped)})")
    return n_verify


def score_ranks(entries: list[dict[str, Any]], name: str) -> dict[int, int]:
    """Index → rank (1 = best, by descending score) of the entries that have score ``name``; ties keep the input
    order (a stable sort), so equal scores never reorder the candidates as given."""
    have = [i for i, e in enumerate(entries) if e["scores"].get(name) is not None]
    order = sorted(have, key=lambda i: -entries[i]["scores"][name])
    return {i: r + 1 for r, i in enumerate(order)}


def rank_candidates(entries: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The entries ranked by the first score (candidates without it last, in input order), each given its ``rank``
    and every score's own ``ranks`` — higher is better for all the scores of :data:`~transferkit.transferability.SCORES`
    (LogME, H-score, LEEP, NCE)."""
    per_score = {name: score_ranks(entries, name) for name in names}
    first = per_score[names[0]]
    order = sorted(range(len(entries)), key=lambda i: (first.get(i, len(entries) + 1), i))
    for i, e in enumerate(entries):
        e["ranks"] = {name: per_score[name].get(i) for name in names}
        e["rank"] = first.get(i)
    return [entries[i] for i in order]


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or ``None`` when missing or not finite (JSON has no NaN; a correlation of constant values is
    NaN)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _top1(pts: list[tuple[str, float, float]]) -> dict[str, Any]:
    """The top-1 candidate by score and by fine-tuned accuracy among ``(name, score, accuracy)`` points, and whether
    they agree (all ``None`` without points)."""
    if not pts:
        return {"top1_by_score": None, "top1_by_accuracy": None, "top1_match": None}
    names, s, a = zip(*pts, strict=True)
    by_score, by_acc = names[int(np.argmax(s))], names[int(np.argmax(a))]
    return {"top1_by_score": by_score, "top1_by_accuracy": by_acc, "top1_match": by_score == by_acc}


def score_correlations(entries: list[dict[str, Any]], scores: list[str]) -> dict[str, dict[str, Any]]:
    """Per score: Kendall τ and Pearson r with the fine-tuned accuracy over the verified candidates that have the
    score (``None`` below :data:`MIN_FOR_CORRELATION` points or for constant values, with a ``note`` why), and the
    top-1 agreement — how far a transferability score (LogME, You et al., 2021; LEEP, Nguyen et al., 2020; …)
    predicted what fine-tuning found."""
    from scipy.stats import kendalltau, pearsonr

    out: dict[str, dict[str, Any]] = {}
    for name in scores:
        pts = [(e["name"], e["scores"][name], e["verification"]["accuracy"]) for e in entries
               if e.get("verification") and e["scores"].get(name) is not None]
        row: dict[str, Any] = {"n": len(pts), "kendall_tau": None, "kendall_p": None, "pearson_r": None,
                               "pearson_p": None, "note": None, **_top1(pts)}
        s = [p[1] for p in pts]
        a = [p[2] for p in pts]
        if len(pts) < MIN_FOR_CORRELATION:
            row["note"] = f"n/a: {len(pts)} verified candidate(s) with this score; a correlation needs ≥ " \
                          f"{MIN_FOR_CORRELATION}"
        elif len(set(s)) < 2 or len(set(a)) < 2:
            row["note"] = "n/a: the " + ("scores" if len(set(s)) < 2 else "fine-tuned accuracies") + " are all equal"
        else:
            tau = kendalltau(s, a)
            r = pearsonr(s, a)
            row.update(kendall_tau=finite_or_none(tau.statistic), kendall_p=finite_or_none(tau.pvalue),
                       pearson_r=finite_or_none(r.statistic), pearson_p=finite_or_none(r.pvalue))
        out[name] = row
    return out


def similarity_sample(pool_size: int, exclude: np.ndarray | None, samples: int, seed: int) -> np.ndarray:
    """Sorted indices of ``samples`` source images (all of them when fewer) drawn from ``range(pool_size)`` without
    ``exclude`` — the scoring images when the source is the target data itself, so the domain similarity is never
    measured between an image and itself. Seeded with ``seed + 99991``, apart from every other draw of the seed."""
    pool = np.arange(pool_size)
    if exclude is not None:
        pool = np.setdiff1d(pool, exclude)
    pick = np.random.default_rng(seed + 99991).choice(pool, min(samples, len(pool)), replace=False)
    return np.sort(pick)
