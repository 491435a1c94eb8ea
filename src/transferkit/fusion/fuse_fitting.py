"""The members and methods of ``transferkit fuse`` (:func:`transferkit.api.fuse_job.fuse`): the members loaded with
their heads aligned by class name, their outputs from one pass each, and every fusion method fitted on those outputs
(weights, stacker, gate) or on their weights (uniform and greedy soups).

No data is chosen and nothing is written here: the job hands in the fit set's batches and labels, and scores and
saves what comes back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.features import batched_outputs, predict_logits
from transferkit.data.prepare import TensorBatches
from transferkit.fusion import Stacker, check_members, check_soup, fit_gating, fit_weights, greedy_soup, uniform_soup
from transferkit.fusion.model import FusedModel
from transferkit.source_loading import load_source


def _permute_head(model: Backbone, perm: np.ndarray) -> None:
    """Reorder the output rows of ``model``'s last linear layer so its classes follow ``perm``."""
    last = model.head[-1] if isinstance(model.head, nn.Sequential) else model.head
    if not isinstance(last, nn.Linear):
        raise ValueError(f"cannot align the classes of {model.arch}: its head does not end in a linear layer")
    idx = torch.as_tensor(perm, dtype=torch.long)
    with torch.no_grad():
        last.weight.copy_(last.weight[idx].clone())
        if last.bias is not None:
            last.bias.copy_(last.bias[idx].clone())


def load_members(members: Sequence[str | Path]) -> tuple[list[Backbone], list[dict[str, Any]], list[str]]:
    """The members in evaluation mode, their bundle metadata and the class names, heads aligned to the first
    member's class order (by name)."""
    loaded = [load_source(m) for m in members]
    models = [copy.deepcopy(m).eval() for m, _ in loaded]
    metas = [meta for _, meta in loaded]
    perms = check_members([list(meta.get("classes") or []) for meta in metas])  # raises naming both lists
    for model, perm in zip(models, perms, strict=True):
        if not np.array_equal(perm, np.arange(len(perm))):
            _permute_head(model, perm)
    return models, metas, list(metas[0]["classes"])


def probs(model: Backbone, data: TensorBatches) -> torch.Tensor:
    """``model``'s class probabilities on ``data``."""
    return torch.softmax(predict_logits(model, data), 1)


def member_outputs(models: Sequence[Backbone], data: Sequence[TensorBatches],
                   batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Members' logits ``(M, N, C)`` and concatenated features ``(N, Σ D)`` from one pass each."""
    logits, feats = [], []
    for model, batches in zip(models, data, strict=True):
        def both(x: torch.Tensor, m: Backbone = model) -> torch.Tensor:
            f = m.forward_features(x)
            return torch.cat([f, m.forward_head(f)], 1)

        out = torch.cat(batched_outputs(model, batches, both, batch_size))
        feats.append(out[:, : model.feature_dim])
        logits.append(out[:, model.feature_dim:])
    return torch.stack(logits), torch.cat(feats, 1)


def combined_probs(model: FusedModel, member_logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """A fused model's probabilities from its members' precomputed logits ``(M, N, C)`` and features."""
    with torch.inference_mode():
        return model.eval().combine(member_logits.transpose(0, 1), feats).exp()


def _state_accuracy(model: Backbone, state: dict[str, torch.Tensor], data: TensorBatches) -> float:
    """The accuracy on ``data`` of ``model`` with the weights ``state`` (a candidate of the greedy soup)."""
    model.load_state_dict(state)
    return accuracy(probs(model, data), data.y.numpy())


def accuracy(probs: torch.Tensor | np.ndarray, labels: np.ndarray) -> float:
    """The share of ``labels`` that ``probs`` (one row per example) rank first."""
    return float((np.asarray(probs).argmax(1) == labels).mean())


def fit_methods(methods: Sequence[str], models: list[Backbone], metas: list[dict[str, Any]],
                members: Sequence[str | Path], fit_b: list[Any], member_fit: torch.Tensor, fit_logits: torch.Tensor,
                fit_feats: torch.Tensor, y_fit: np.ndarray, seed: int,
                gate_epochs: int) -> tuple[dict[str, Backbone], dict[str, str], list[str] | None]:
    """Every fusion method fitted on the fit set's member outputs: ``(fused models, skipped with reasons, the greedy
    soup's ingredients)``; a soup of members that cannot be souped is skipped, with the reason."""
    fused: dict[str, Backbone] = {}
    skipped: dict[str, str] = {}
    soup_kept: list[str] | None = None
    for method in methods:
        if method.startswith("soup"):
            try:
                check_soup(models, init_hashes=[str((m.get("lineage") or {}).get("source")) for m in metas])
            except ValueError as exc:
                skipped[method] = str(exc)
                continue
            states = [m.state_dict() for m in models]
            soup = copy.deepcopy(models[0])
            if method == "soup_uniform":
                soup.load_state_dict(uniform_soup(states))
            else:
                state, kept, _ = greedy_soup(states, lambda st, s=soup: _state_accuracy(s, st, fit_b[0]))
                soup.load_state_dict(state)
                soup_kept = [str(members[i]) for i in kept]
            fused[method] = soup.eval()
            continue
        model = FusedModel([copy.deepcopy(m) for m in models], "gating" if method == "gating" else method)
        if method == "weighted":
            model.weights.copy_(torch.as_tensor(fit_weights(member_fit.numpy(), y_fit), dtype=torch.float32))
        elif method == "stacking":
            st = Stacker(seed=seed).fit(member_fit.numpy(), y_fit)
            coef, intercept = torch.as_tensor(st.coef_), torch.as_tensor(st.intercept_)
            if coef.shape[0] == 1:  # binary: scikit-learn keeps one logit (class 1); make it two rows
                coef, intercept = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros(1), intercept])
            model.stack_coef.copy_(coef.float())
            model.stack_intercept.copy_(intercept.float())
            model.stack_eps.fill_(st.eps)
        elif method == "gating":
            gate = fit_gating(fit_logits.transpose(0, 1), fit_feats, torch.as_tensor(y_fit), epochs=gate_epochs,
                              seed=seed)
            model.gating.load_state_dict(gate.state_dict())
        fused[method] = model.eval()
    if not fused:
        raise ValueError("no fusion method could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return fused, skipped, soup_kept
