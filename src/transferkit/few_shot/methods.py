"""The few-shot methods ``transferkit fewshot`` runs, one registry entry each with the function that implements it
and its paper (``transferkit list few-shot-methods``)."""

from __future__ import annotations

from transferkit.errors import ConfigError
from transferkit.few_shot.episodes import CLASSIFIERS, evaluate_episodes
from transferkit.few_shot.prototypes import class_prototypes
from transferkit.few_shot.setfit import make_pairs
from transferkit.registry import Registry

FEW_SHOT_METHODS: Registry[object] = Registry("few-shot-methods", "few-shot method", sort=False)
FEW_SHOT_METHODS.add("prototypes", class_prototypes,
                     summary="nearest class mean of the frozen embeddings, by cosine similarity (no training)",
                     paper="Snell et al., 2017, Prototypical Networks; Chen et al., 2019")
FEW_SHOT_METHODS.add("setfit", make_pairs,
                     summary="contrastive fine-tuning of the encoder on labelled pairs, then a logistic head",
                     paper="Tunstall et al., 2022, Efficient Few-Shot Learning Without Prompts (SetFit)")
FEW_SHOT_METHODS.add("episodes", evaluate_episodes,
                     summary="N-way K-shot episodic evaluation with a 95 % confidence interval",
                     paper="Vinyals et al., 2016, Matching Networks; Chen et al., 2019")


def check_fewshot_options(method: str, episode_classifier: str, labels_per_class: int) -> None:
    """Refuse a ``fewshot`` request that cannot run, before any data or model loads: an unknown method (the error
    lists :data:`FEW_SHOT_METHODS`), an unknown episode classifier (prototypes, after Snell et al., 2017, or
    logistic) or fewer than one example per class."""
    if method not in FEW_SHOT_METHODS:
        raise FEW_SHOT_METHODS.unknown(method)
    if episode_classifier not in CLASSIFIERS:
        raise ConfigError("episode_classifier", f"one of {', '.join(CLASSIFIERS)}", episode_classifier)
    if labels_per_class < 1:
        raise ConfigError("labels_per_class", "≥ 1", labels_per_class)
