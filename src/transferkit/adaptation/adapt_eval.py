"""What the ``adapt`` job (:mod:`transferkit.api.adapt_job`) measures of the adapted network: the target-test accuracy
of every criterion's checkpoint and of the last epoch (AdaBN applied to each when the method asks for it), accuracy
on prepared batches, the bottleneck embeddings, the domain similarity of source and target features, and the t-SNE
inputs of the report."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from transferkit.adaptation.adabn import adapt_batchnorm
from transferkit.adaptation.methods import AdaptMethod
from transferkit.adaptation.net import AdaptNet
from transferkit.backbones.features import batched_outputs
from transferkit.data.adapt_splits import sample_batches
from transferkit.data.prepare import TensorBatches
from transferkit.engine.adapt import AdaptFitResult
from transferkit.transferability.similarity import similarities


def accuracy(net: AdaptNet, data: TensorBatches, batch_size: int = 256) -> tuple[float, np.ndarray]:
    """The network's accuracy on ``data`` (``nan`` when empty) and its predictions."""
    chunks = batched_outputs(net, data, net, batch_size)
    p = torch.cat(chunks).argmax(1).numpy() if chunks else np.zeros(0, dtype=np.int64)
    return float((p == data.y.numpy()).mean()) if len(p) else float("nan"), p


def embed(net: AdaptNet, data: TensorBatches, batch_size: int = 256) -> np.ndarray:
    """The bottleneck embeddings of ``data``."""
    return torch.cat(batched_outputs(net, data, net.embed, batch_size)).numpy()


def domain_diagnostics(net: AdaptNet, source: TensorBatches, target: TensorBatches, seed: int) -> dict[str, float]:
    """The domain similarity of source and target features (≤ 1,000 of each) — the same measures ``select``
    reports (:func:`~transferkit.transferability.similarity.similarities`)."""
    s, t = embed(net, sample_batches(source, 1000, seed)), embed(net, sample_batches(target, 1000, seed + 1))
    return similarities(s.astype(np.float64), t.astype(np.float64), seed=seed)


def tsne_inputs(net: AdaptNet, pics: tuple[TensorBatches, TensorBatches],
                before: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any] | None:
    """The t-SNE subsets' embeddings before training and now (the selected checkpoint), with their labels."""
    if before is None:
        return None
    return {"labels": (pics[0].y.numpy(), pics[1].y.numpy()), "before": before,
            "after": (embed(net, pics[0]), embed(net, pics[1]))}


def input_batches(net_in: AdaptNet, data: TensorBatches, batch_size: int) -> Iterator[Any]:
    """``data``'s inputs in order, ``batch_size`` at a time (labels dropped): what AdaBN re-estimates its
    statistics on."""
    for i in range(0, len(data), batch_size):
        batch = data.__getitems__(list(range(i, min(i + batch_size, len(data)))))
        yield batch[0] if isinstance(batch, tuple) else batch


def evaluate_checkpoints(net: AdaptNet, method: AdaptMethod, fit: AdaptFitResult, feat: dict[str, TensorBatches],
                         select_on: str, batch_size: int) -> dict[str, Any]:
    """Target-test accuracy of every criterion's checkpoint and of the last epoch (AdaBN applied to each)."""
    adabn = method.post_hoc == "adabn"

    def prepared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net.load_state_dict(state)
        if adabn:
            adapt_batchnorm(net, input_batches(net, feat["t_train"], batch_size))
        return copy.deepcopy(net.state_dict())

    by: dict[str, Any] = {}
    states: dict[str, dict[str, torch.Tensor]] = {}
    preds: dict[str, Any] = {}  # target-test predictions per checkpoint: the selected one's feed the report
    for name, state in fit.states.items():
        states[name] = prepared(state)
        acc, preds[name] = accuracy(net, feat["t_test"])
        by[name] = {"epoch": fit.best_epochs[name], "score": fit.best_scores[name], "target_accuracy": acc,
                    "uses_target_labels": name == "oracle"}
    last = prepared(fit.last_state) if fit.last_state is not None else None
    last_acc, last_pred = accuracy(net, feat["t_test"]) if last is not None else (float("nan"), None)
    if select_on not in states:  # e.g. DEV undefined in every epoch: fall back to the last epoch, and say so
        by[select_on] = {"epoch": fit.last_epoch, "score": float("nan"), "target_accuracy": last_acc,
                         "note": "criterion undefined in every epoch; the last epoch was kept"}
        chosen, chosen_pred = last, last_pred
    else:
        chosen, chosen_pred = states[select_on], preds[select_on]
    return {"selected_state": chosen, "selected_accuracy": by[select_on]["target_accuracy"],
            "selected_predictions": chosen_pred, "last_accuracy": last_acc, "by_criterion": by,
            "adabn": {"applied": adabn, "target_images": len(feat["t_train"])} if adabn else None}
