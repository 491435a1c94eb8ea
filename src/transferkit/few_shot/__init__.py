"""Few-shot and zero-shot transfer: methods as plain functions and loss modules, apart from any training loop.

* :mod:`~transferkit.few_shot.prototypes` — nearest class mean by cosine similarity (no training);
* :mod:`~transferkit.few_shot.setfit` — SetFit-style contrastive pairs + logistic-regression head
  (the loop is :func:`transferkit.engine.pairs.fit_pairs`);
* :mod:`~transferkit.few_shot.episodes` — N-way K-shot episodic evaluation with a 95 % confidence interval;
* :mod:`~transferkit.few_shot.zeroshot` — label prompts/descriptions for similarity-based zero-shot text
  classification;
* :mod:`~transferkit.few_shot.fitting` — these methods as heads on a backbone (prototypes, SetFit, zero-shot label
  embeddings); not imported here, it needs the engine;
* :mod:`~transferkit.few_shot.methods` — the registry of ``fewshot`` methods and the checks of a request.

The jobs that run them on datasets and write run directories are :func:`transferkit.fewshot`
(:mod:`transferkit.api.fewshot_job`) and :func:`transferkit.zeroshot` (:mod:`transferkit.api.zeroshot_job`).
"""

from transferkit.few_shot.episodes import CLASSIFIERS, EpisodeResult, evaluate_episodes, sample_episode
from transferkit.few_shot.prototypes import class_prototypes, cosine_scores
from transferkit.few_shot.setfit import CosinePairLoss, fit_logistic_head, make_pairs
from transferkit.few_shot.zeroshot import DEFAULT_TEMPLATE, label_prompts

__all__ = ["CLASSIFIERS", "DEFAULT_TEMPLATE", "CosinePairLoss", "EpisodeResult", "class_prototypes", "cosine_scores",
           "evaluate_episodes", "fit_logistic_head", "label_prompts", "make_pairs", "sample_episode"]
