"""Fitting a backbone to a few labelled examples, or to label prompts: the model side of ``fewshot``/``zeroshot``.

The jobs (:mod:`transferkit.api.fewshot_job`, :mod:`transferkit.api.zeroshot_job`) load the data and write run
directories; here the methods of this package become heads on a :class:`~transferkit.backbones.base.Backbone`, so
that the result is an ordinary model (``predict``, ``export`` and ``serve`` use it as it is):

* :func:`fit_prototypes` — a cosine head of class means of the frozen features (Prototypical networks, Snell et al.,
  2017; cosine nearness as in Chen et al., 2019): no training;
* :func:`fit_setfit` — SetFit (Tunstall et al., 2022): contrastive fine-tuning of the encoder on pairs of the
  support examples (the loop is :func:`transferkit.engine.pairs.fit_pairs`), then a logistic-regression head on the
  fine-tuned features;
* :func:`label_embeddings` — zero-shot: one unit vector per label from its prompts (prompt ensembling), the rows of
  a cosine head.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features
from transferkit.data.prepare import TensorBatches
from transferkit.data.tokens import encode_texts
from transferkit.engine.pairs import fit_pairs
from transferkit.few_shot.prototypes import class_prototypes
from transferkit.few_shot.setfit import CosinePairLoss, fit_logistic_head, make_pairs

StepReport = Callable[[int, int, float], None]
"""``(step, total steps, loss)`` after each contrastive step — for a progress bar."""


def fit_prototypes(model: Backbone, support: TensorBatches, num_classes: int) -> dict[str, Any]:
    """Give ``model`` a cosine head of the class prototypes of the support features (Snell et al., 2017): the
    nearest class mean by cosine, with no training — ``{"fit_s": seconds}``."""
    t = time.perf_counter()
    model.set_cosine_head(class_prototypes(extract_features(model, support), support.y, num_classes))
    return {"fit_s": time.perf_counter() - t}


def _set_linear_head(model: Backbone, num_classes: int, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Replace ``model``'s head by a linear one of ``num_classes`` outputs holding ``weight`` and ``bias``."""
    model.reset_classifier(num_classes)
    with torch.no_grad():
        model.head.weight.copy_(weight)
        model.head.bias.copy_(bias)


def fit_setfit(model: Backbone, support: TensorBatches, num_classes: int, seed: int, *, iterations: int,
               max_pairs: int | None, epochs: int, batch_size: int, lr: float, head_c: float,
               progress: StepReport | None = None) -> dict[str, Any]:
    """SetFit (Tunstall et al., 2022) on the support set: ``iterations`` rounds of one positive and one negative pair
    per example (at most ``max_pairs``), ``epochs`` passes of contrastive fine-tuning of ``model``'s body
    (``batch_size`` pairs per step, AdamW at ``lr``), then a logistic-regression head (inverse L2 strength
    ``head_c``) on the fine-tuned support features becomes ``model``'s linear head. Returns the run's details (pair
    counts, steps, times, first/last pair loss and every step's ``losses``)."""
    pairs, targets = make_pairs(support.y.numpy(), iterations, seed, max_pairs)
    params = list(model.stages.parameters())
    for p in params:
        p.requires_grad_(True)
    fit = fit_pairs(model.forward_features, params, model, support, pairs, targets, CosinePairLoss(),
                    epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    start = time.perf_counter()
    feats = extract_features(model, support)
    weight, bias = fit_logistic_head(feats, support.y, num_classes, seed=seed, c=head_c)
    _set_linear_head(model, num_classes, weight, bias)
    return {"pairs": len(pairs), "positive_pairs": int(targets.sum()), "steps": fit.steps,
            "body_train_s": fit.seconds, "head_fit_s": time.perf_counter() - start,
            "pair_loss_first": fit.losses[0], "pair_loss_last": float(np.mean(fit.losses[-max(1, fit.steps // 10):])),
            "losses": fit.losses}


def label_embeddings(model: Backbone, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """One unit vector per label: the normalised mean of its prompts' embeddings (prompt ensembling) — the rows of
    a zero-shot cosine head (the embedding-similarity approach of Yin et al., 2019, and SetFit's zero-shot mode,
    Tunstall et al., 2022)."""
    flat = [p for group in prompts for p in group]
    ids, lengths, _ = encode_texts(flat, model.input_spec, "zero-shot prompts")
    feats = torch.nn.functional.normalize(extract_features(model, TensorBatches(ids, lengths=lengths)), dim=1)
    out, i = [], 0
    for group in prompts:
        out.append(feats[i:i + len(group)].mean(0))
        i += len(group)
    return torch.nn.functional.normalize(torch.stack(out), dim=1)
