"""Model soups: one model whose weights are the average of several fine-tuned models' weights (Wortsman et al., ICML
2022, "Model soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference
time").

Averaging weights only works for models of the *same architecture* fine-tuned from the *same pretrained
initialisation*: such fine-tunes tend to lie in one low-loss basin, so their average does too, while independently
initialised networks are permuted relative to each other and their average is noise. :func:`check_soup` refuses
both violations. Then:

* :func:`uniform_soup` — the plain average of all ingredients;
* :func:`greedy_soup` — the paper's recipe: ingredients sorted by their own held-out score, each added only if the
  soup does not get worse on held-out data, so the result is never worse than the best ingredient *on that data*
  (the caller's ``evaluate`` uses a validation split, never the test split).

Unlike an ensemble, a soup costs one model at inference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

StateDict = dict[str, torch.Tensor]

_MISSING = object()


def _check_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]], what: str = "model") -> None:
    if not state_dicts:
        raise ValueError("cannot soup: no ingredients given")
    ref = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        for key in ref:
            if key not in sd:
                raise ValueError(f"cannot soup: different architectures: {what} {i} has no '{key}' (in {what} 0)")
        for key in sd:
            if key not in ref:
                raise ValueError(f"cannot soup: different architectures: {what} {i} has '{key}', {what} 0 does not")
        for key, t0 in ref.items():
            t = sd[key]
            if tuple(t.shape) != tuple(t0.shape):
                raise ValueError(f"cannot soup: different architectures: '{key}' has shape {tuple(t.shape)} in "
                                 f"{what} {i} but {tuple(t0.shape)} in {what} 0")
            if t.is_floating_point() != t0.is_floating_point():
                raise ValueError(f"cannot soup: '{key}' has dtype {t.dtype} in {what} {i} but {t0.dtype} in {what} 0")


def check_soup(models: Sequence[nn.Module], configs: Sequence[Mapping[str, Any]] | None = None,
               init_hashes: Sequence[str | None] | None = None) -> None:
    """Refuse, with the reason, models whose weights must not be averaged.

    Parameters
    ----------
    models :
        The fine-tuned models (ingredients).
    configs :
        Their architecture configs (e.g. :meth:`transferkit.backbones.base.Backbone.config`). When ``None`` and
        every model has a ``config()`` method, those are compared.
    init_hashes :
        Per model, a hash of the pretrained initialisation its fine-tune started from; ``None`` where unknown
        (not compared). When known hashes differ the soup is refused: models from different initialisations do
        not share a basin and their average is meaningless.

    Raises
    ------
    ValueError
        Naming the first differing state-dict key or shape, config key, or initialisation.
    """
    if not models:
        raise ValueError("cannot soup: no models given")
    _check_state_dicts([m.state_dict() for m in models])
    if configs is None and all(callable(getattr(m, "config", None)) for m in models):
        configs = [m.config() for m in models]  # type: ignore[operator]
    if configs is not None:
        if len(configs) != len(models):
            raise ValueError(f"check_soup: {len(models)} models but {len(configs)} configs")
        ref = configs[0]
        for i, cfg in enumerate(configs[1:], start=1):
            for key in [*ref, *(k for k in cfg if k not in ref)]:
                a, b = cfg.get(key, _MISSING), ref.get(key, _MISSING)
                if a != b:
                    show = ["<missing>" if v is _MISSING else repr(v) for v in (a, b)]
                    raise ValueError(f"cannot soup: different architectures: config '{key}' is {show[0]} in model "
                                     f"{i} but {show[1]} in model 0")
    if init_hashes is not None:
        if len(init_hashes) != len(models):
            raise ValueError(f"check_soup: {len(models)} models but {len(init_hashes)} init hashes")
        known = [(i, h) for i, h in enumerate(init_hashes) if h is not None]
        for i, h in known[1:]:
            if h != known[0][1]:
                raise ValueError(f"cannot soup: not fine-tuned from the same initialisation: model {i} started from "
                                 f"{h!r}, model {known[0][0]} from {known[0][1]!r}")


def uniform_soup(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> StateDict:
    """The average of the ingredients' state dicts (a new dict; the inputs are not modified).

    Floating-point tensors are averaged (in float64, cast back to their dtype); integer and boolean buffers (e.g.
    BatchNorm's ``num_batches_tracked``) have no meaningful mean and are copied from the first state dict.
    Architectures are checked first (same keys, same shapes).
    """
    _check_state_dicts(state_dicts, what="state dict")
    soup: StateDict = {}
    for key, t0 in state_dicts[0].items():
        if t0.is_floating_point() or t0.is_complex():
            wide = torch.complex128 if t0.is_complex() else torch.float64
            stacked = torch.stack([sd[key].detach().to(device=t0.device, dtype=wide) for sd in state_dicts])
            soup[key] = stacked.mean(0).to(t0.dtype)
        else:
            soup[key] = t0.detach().clone()
    return soup


def greedy_soup(state_dicts: Sequence[Mapping[str, torch.Tensor]], evaluate: Callable[[StateDict], float],
                ) -> tuple[StateDict, list[int], list[float]]:
    """Greedy soup (Wortsman et al., 2022, Recipe 1): sort the ingredients by their own score (best first), start
    from the best, and add each next one if the uniform soup of the kept ones plus it scores ``>=`` the current soup
    (ties keep it, as in the paper: more ingredients, same held-out score, usually generalise better).

    Parameters
    ----------
    state_dicts :
        The ingredients (same architecture, same initialisation: see :func:`check_soup`).
    evaluate :
        Held-out score of a state dict, **higher is better** (e.g. validation accuracy of a model that loads it).
        It must use validation data: the guarantee below holds only on the data it scores.

    Returns
    -------
    soup, kept, history
        The soup's state dict; the indices (into ``state_dicts``) of the kept ingredients, in the order they were
        added; the soup's score after each ingredient was considered (starting with the best ingredient's score, so
        it never decreases and its last entry is the soup's score, >= every ingredient's score).
    """
    _check_state_dicts(state_dicts, what="state dict")
    scores = [float(evaluate(dict(sd))) for sd in state_dicts]
    order = [int(i) for i in np.argsort(-np.asarray(scores), kind="stable")]
    kept = [order[0]]
    soup = uniform_soup([state_dicts[order[0]]])
    history = [scores[order[0]]]
    for i in order[1:]:
        candidate = uniform_soup([state_dicts[j] for j in [*kept, i]])
        score = float(evaluate(candidate))
        if score >= history[-1]:
            kept.append(i)
            soup = candidate
            history.append(score)
        else:
            history.append(history[-1])
    return soup, kept, history
