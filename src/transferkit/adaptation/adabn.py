"""AdaBN — Li, Wang, Shi, Liu & Hou, 2016/2018, "Revisiting Batch Normalization For Practical Domain Adaptation".

The label information of a network lives in its weights, the domain information in the statistics of its
BatchNorm layers. AdaBN adapts a source model to a target domain without labels and without training: replace
every BatchNorm layer's running mean and variance with the statistics of the target data. No gradient, no
hyper-parameter; it is a baseline to beat and composes with other methods (adapt, then re-estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """All BatchNorm layers of ``model`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ...), in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


class _Moments:
    """Exact per-channel count, mean and sum of squared deviations over batches (Chan et al.'s pairwise update,
    in float64), so unequal batch sizes and between-batch spread are accounted for."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach()
        x = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)  # (C, N·spatial)
        n_b = x.shape[1]
        mean_b = x.mean(1)
        m2_b = (x - mean_b[:, None]).pow(2).sum(1)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta.pow(2) * (self.n * n_b / n)
        self.n = n


def adapt_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor | tuple | list],
                    forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """AdaBN: re-estimate every BatchNorm layer's running mean and variance on target data, in place.

    Each layer's statistics are reset and the batches are passed through the model under ``torch.no_grad()``
    with only the BatchNorm layers in training mode (each normalises with its batch's statistics, as in
    training; dropout and everything else stay in eval mode). A layer's new ``running_mean`` is then the exact
    mean of its inputs over all batches and ``running_var`` their unbiased variance (pooled over all samples
    and, for conv features, positions; the same estimator BatchNorm uses). The momenta and the train/eval mode
    of every module are restored afterwards; on an error the old statistics come back too.

    Layers built with ``track_running_stats=False`` have no running statistics and always normalise with the
    batch's: they are skipped (and if every BatchNorm layer is like that, this is an error).

    Parameters
    ----------
    model : nn.Module
        The network to adapt; its weights are not changed.
    batches : iterable of tensors, or of tuples/lists whose element 0 is the input (a DataLoader's ``(x, y)``)
        Unlabelled target inputs, moved to the device of the BatchNorm buffers. Batches of at least 2 samples.
    forward : callable, optional
        How to run an input through the model (e.g. ``model.forward_features`` or a wrapper); default
        ``model(x)``.

    Returns
    -------
    int
        The number of target samples seen.
    """
    all_bn = batchnorm_layers(model)
    layers = [m for m in all_bn if m.track_running_stats and m.running_mean is not None]
    if not layers:
        what = "none" if not all_bn else "none with running statistics (all have track_running_stats=False)"
        raise ValueError(f"AdaBN needs BatchNorm layers; {type(model).__name__} has {what}, so there are no "
                         f"statistics to re-estimate")
    if any(isinstance(m.running_mean, nn.parameter.UninitializedBuffer) for m in layers):
        raise ValueError("AdaBN: a lazy BatchNorm layer is not initialised yet; run one forward pass first")
    run = forward if forward is not None else model
    device = layers[0].running_mean.device
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    saved = {m: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers}
    moments = {m: _Moments() for m in layers}
    hooks = [m.register_forward_pre_hook(moments[m]) for m in layers]
    seen = 0
    ok = False
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average; overwritten with the exact pooled moments below
            m.train()
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                run(x.to(device))
                seen += len(x)
        if seen == 0:
            raise ValueError("AdaBN needs target data: no batches were given")
        for m in layers:
            mom = moments[m]
            if mom.mean is None:
                raise ValueError(f"AdaBN: BatchNorm layer {m} saw no input; does `forward` run through it?")
            m.running_mean.copy_(mom.mean.to(m.running_mean.dtype))
            m.running_var.copy_((mom.m2 / max(mom.n - 1, 1)).to(m.running_var.dtype))
        ok = True
    finally:
        for h in hooks:
            h.remove()
        for m in layers:
            m.momentum = momenta[m]
            if not ok:
                for buf, old in zip((m.running_mean, m.running_var, m.num_batches_tracked), saved[m], strict=True):
                    buf.copy_(old)
        for m, training in modes.items():
            m.training = training
    return seen
