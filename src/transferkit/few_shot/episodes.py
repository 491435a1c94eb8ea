"""Episodic evaluation: N-way K-shot tasks sampled from a labelled pool, mean accuracy with a 95 % interval.

The standard protocol of few-shot learning (Vinyals et al., 2016, "Matching Networks for One Shot Learning";
Chen et al., 2019): each episode draws ``n_way`` classes, ``k_shot`` support and ``n_query`` query examples per
class, fits a classifier on the support set and scores it on the queries. Over many episodes the mean accuracy
and its 95 % confidence interval (``1.96 · std / sqrt(episodes)``) describe how well frozen features support
learning from K examples — independent of any one lucky draw. The classifier is the prototype rule (no
training) or a logistic regression on the support features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from transferkit.few_shot.prototypes import class_prototypes, cosine_scores
from transferkit.few_shot.setfit import fit_logistic_head

CLASSIFIERS = ("prototypes", "logistic")


@dataclass
class EpisodeResult:
    """Mean accuracy, its 95 % confidence half-width, and every episode's accuracy."""

    n_way: int
    k_shot: int
    n_query: int
    classifier: str
    accuracies: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def ci95(self) -> float:
        n = len(self.accuracies)
        return float(1.96 * np.std(self.accuracies, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"n_way": self.n_way, "k_shot": self.k_shot, "n_query": self.n_query, "classifier": self.classifier,
                "episodes": len(self.accuracies), "accuracy": self.mean, "ci95": self.ci95,
                "std": float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else float("nan")}


def sample_episode(labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(classes, support indices (n_way·k_shot,), query indices (n_way·n_query,))``; episode labels are positions
    in ``classes``. Only classes with at least ``k_shot + n_query`` examples are eligible."""
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts >= k_shot + n_query)
    if len(eligible) < n_way:
        raise ValueError(f"{n_way}-way {k_shot}-shot episodes with {n_query} queries need {n_way} classes with "
                         f"at least {k_shot + n_query} examples each; only {len(eligible)} have that many "
                         f"(counts per class: {counts.tolist()})")
    classes = rng.choice(eligible, n_way, replace=False)
    support, query = [], []
    for c in classes:
        idx = rng.choice(np.flatnonzero(labels == c), k_shot + n_query, replace=False)
        support.append(idx[:k_shot])
        query.append(idx[k_shot:])
    return classes, np.concatenate(support), np.concatenate(query)


def evaluate_episodes(features: torch.Tensor, labels: np.ndarray | torch.Tensor, n_way: int = 5, k_shot: int = 5,
                      n_query: int = 15, episodes: int = 600, seed: int = 0,
                      classifier: str = "prototypes") -> EpisodeResult:
    """Accuracy over ``episodes`` N-way K-shot episodes on precomputed ``features`` ``(N, D)`` of a labelled pool."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown episode classifier '{classifier}'; valid choices: {', '.join(CLASSIFIERS)}")
    checks = (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1), ("episodes", episodes, 1))
    for name, value, low in checks:
        if int(value) < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    accs = []
    for e in range(episodes):
        classes, s, q = sample_episode(y, n_way, k_shot, n_query, rng)
        pos = {int(c): i for i, c in enumerate(classes)}
        ys = torch.tensor([pos[int(c)] for c in y[s]])
        yq = torch.tensor([pos[int(c)] for c in y[q]])
        if classifier == "prototypes":
            pred = cosine_scores(features[q], class_prototypes(features[s], ys, n_way)).argmax(1)
        else:
            w, b = fit_logistic_head(features[s], ys, n_way, seed=seed + e)
            pred = (features[q].float() @ w.T + b).argmax(1)
        accs.append(float((pred == yq).float().mean()))
    return EpisodeResult(n_way, k_shot, n_query, classifier, accs)
