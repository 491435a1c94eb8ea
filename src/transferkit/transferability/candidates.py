"""Scoring candidate sources on a target's labelled images, each frozen and with its own preprocessing.

The model side of ``transferkit select`` (the job, :func:`transferkit.api.select_job.select`, loads the candidates
and fine-tunes; :mod:`~transferkit.transferability.ranking` ranks what this module measures). Every candidate looks
once at the scoring set; the scores of :data:`~transferkit.transferability.SCORES` are computed on what it
produces:

* ``logme`` — LogME (You et al., ICML 2021): log evidence of a Bayesian linear model on the features;
* ``h_score`` — H-score (Bao et al., ICIP 2019): between-class over total feature covariance;
* ``h_score_shrunk`` — the same with a Ledoit–Wolf-shrunk covariance (Ibrahim et al., 2021): with few images in
  many dimensions the plain H-score saturates at ``C − 1`` and cannot tell candidates apart;
* ``leep`` — LEEP (Nguyen et al., ICML 2020): log-likelihood of the labels through the source head's classes;
* ``nce`` — NCE (Tran et al., ICCV 2019): negative conditional entropy of the labels given hard source labels.

``leep`` and ``nce`` need a source head (``num_classes ≥ 2``: ImageNet backbones' 1000 classes, a bundle's own
head); for a candidate without one (a random initialisation, a headless backbone) they are "n/a", not an error.
Features come through the on-disk feature cache (:func:`~transferkit.backbones.cache.cached_features`), so a second
selection over the same candidates is nearly free. A candidate that cannot be loaded (weights unavailable offline,
not a bundle, wrong channels, …) is skipped with the reason; the ranking covers the rest.

With a sample of a *source* dataset, the domain similarity between it and the scoring set is measured in each
candidate's feature space too — cosine of the mean features, unbiased MMD² and the proxy A-distance
(:mod:`~transferkit.transferability.similarity`): shown beside the scores, never used for ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.features import predict_logits
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.transferability.ranking import candidate_kind, candidate_label, is_random_init
from transferkit.transferability.scores import SCORES
from transferkit.transferability.similarity import similarities

Loader = Callable[[str], Backbone]
"""Loads a candidate by name as a frozen :class:`Backbone` (raises when it cannot: the candidate is skipped)."""
Similarity = Callable[[Backbone, torch.Tensor], dict[str, Any]]
"""``(model, target features) → {"values", "note", "time_s"}``: the domain similarity in that model's space."""


def source_probs(model: Backbone, feats: torch.Tensor, data: TensorBatches) -> np.ndarray:
    """The source head's softmax on the target images — what LEEP (Nguyen et al., 2020) and NCE (Tran et al., 2019)
    read: from the cached features when the model's forward is the plain ``head(features)`` (no second pass through
    the backbone), else from a full forward pass."""
    if type(model).forward is Backbone.forward:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                x = feats.clone()  # a fresh, aligned buffer: a cache hit (read from a file) computes bit for bit alike
                logits = torch.cat([model.forward_head(x[i:i + 4096]) for i in range(0, len(x), 4096)])
        finally:
            model.train(was_training)
    else:
        logits = predict_logits(model, data)
    return torch.softmax(logits.double(), 1).numpy()


def score_values(candidate: str, names: list[str], features: np.ndarray, probs: np.ndarray | None,
                 labels: np.ndarray, num_classes: int, no_head: str
                 ) -> tuple[dict[str, float | None], dict[str, str], dict[str, float]]:
    """``(values, not available → why, seconds per score)`` of the scores ``names`` on ``features`` (LogME, H-score)
    or the source head's ``probs`` (LEEP, NCE; ``None`` without a head: those scores are ``None``, ``no_head`` says
    why). A score's ValueError names the candidate and the score."""
    values: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    score_times: dict[str, float] = {}
    for name in names:
        fn, kind = SCORES[name]
        if kind == "source_probs" and probs is None:
            values[name] = None
            missing[name] = no_head
            continue
        s0 = time.perf_counter()
        try:
            values[name] = float(fn(features if kind == "features" else probs, labels, num_classes=num_classes))
        except ValueError as exc:
            raise ValueError(f"candidate {candidate}: score {name}: {exc}") from None
        score_times[name] = time.perf_counter() - s0
    return values, missing, score_times


def score_candidate(candidate: str, model: Backbone, scoring: ImageSet, scores: list[str],
                    random_init: bool) -> tuple[dict[str, Any], torch.Tensor]:
    """Features (cached), source-head probabilities and every requested score for one loaded candidate; returns
    the result (scores, what is not available, feature size, cache hit, times) and the features (for the domain
    similarity)."""
    t0 = time.perf_counter()
    batches = to_batches(scoring, model.input_spec)
    feats, hit = cached_features(model, batches, batches.key or scoring.fingerprint())
    want_probs = any(SCORES[s][1] == "source_probs" for s in scores)
    has_head = model.num_classes >= 2 and not random_init
    probs = source_probs(model, feats, batches) if want_probs and has_head else None
    t1 = time.perf_counter()
    no_head = ("random initialisation: no source head" if random_init else
               f"no source head with ≥ 2 classes (num_classes={model.num_classes})")
    values, missing, score_times = score_values(candidate, scores, feats.double().numpy(), probs,
                                                scoring.labels.astype(np.int64), scoring.num_classes, no_head)
    t2 = time.perf_counter()
    result = {"scores": values, "not_available": missing, "feature_dim": int(feats.shape[1]),
              "source_classes": int(model.num_classes) if has_head else 0, "feature_cache": "hit" if hit else "miss",
              "input": list(model.input_spec.size or []), "time": {"features_s": t1 - t0, "scores_s": t2 - t1,
                                                                   "per_score_s": score_times}}
    return result, feats


def feature_similarity(model: Backbone, source: ImageSet, target_features: torch.Tensor) -> dict[str, Any]:
    """Domain similarity (cos of means, MMD², proxy A-distance) of the ``source`` images and the target's features in
    ``model``'s feature space, the source features through the cache; ``{"values", "note": "", "time_s"}``."""
    t0 = time.perf_counter()
    batches = to_batches(source, model.input_spec)
    src = cached_features(model, batches, batches.key or source.fingerprint())[0].double().numpy()
    values = similarities(src, target_features.double().numpy())
    return {"values": values, "note": "", "time_s": time.perf_counter() - t0}


def _unique_label(candidate: str, seen: dict[str, int]) -> str:
    """The candidate's display name, numbered (``name #2``) when an earlier candidate already has it."""
    label = candidate_label(candidate)
    seen[label] = seen.get(label, 0) + 1
    return f"{label} #{seen[label]}" if seen[label] > 1 else label


def score_candidates(cands: list[str], load: Loader, scoring: ImageSet, names: list[str],
                     similarity: Similarity | None = None, on_skip: Callable[[str, Exception], None] | None = None
                     ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every candidate's entry (scores, times and — with ``similarity`` — the domain similarity), in the order
    given, and the skipped ones: a candidate that ``load`` cannot load is skipped with its reason (``on_skip`` is
    told at once); when none is left, a ValueError lists every reason. A random initialisation keeps its model
    (``_model``) so that verification trains that very initialisation."""
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    labels_seen: dict[str, int] = {}
    for cand in cands:
        t0 = time.perf_counter()
        try:
            model = load(cand)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # weights unavailable offline, not a bundle, wrong channels, …: skip with reason
            skipped.append({"candidate": cand, "reason": f"{type(exc).__name__}: {exc}"})
            if on_skip is not None:
                on_skip(cand, exc)
            continue
        load_s = time.perf_counter() - t0
        random_init = is_random_init(cand)
        res, feats = score_candidate(cand, model, scoring, names, random_init)
        label = _unique_label(cand, labels_seen)
        res["time"] = {"load_s": load_s, **res["time"]}
        res["time"]["total_s"] = load_s + res["time"]["features_s"] + res["time"]["scores_s"]
        if similarity is not None:  # timed apart: not part of the scoring time
            res["similarity"] = similarity(model, feats)
        entries.append({"candidate": cand, "name": label, "kind": candidate_kind(cand), "arch": model.arch, **res,
                        "params": model.num_parameters(), "verification": None,
                        "_model": model if random_init else None})
        del model
    if not entries:
        raise ValueError("no candidate could be scored: " + "; ".join(f"{s['candidate']}: {s['reason']}"
                                                                      for s in skipped))
    return entries, skipped
