"""A loop for siamese training on pairs of items: the encoder of SetFit-style contrastive fine-tuning.

Items come from one :class:`~transferkit.data.prepare.TensorBatches` (images or token ids); a pair ``(i, j, t)``
asks a pair loss (e.g. :class:`transferkit.few_shot.setfit.CosinePairLoss`) to pull or push the features of
items ``i`` and ``j``. The loop is deliberately small and plain PyTorch rather than Lightning: it runs one short
pass over a few thousand pairs (minutes on a CPU), keeps no checkpoints and needs no validation loop. It is
seeded (pair order, dropout) so a seed reproduces its result, uses AdamW with a linear warm-up and decay
(the schedule sentence-transformers trains SetFit bodies with) and stops with a clear error on a non-finite
loss instead of training on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from transferkit.data.prepare import TensorBatches


@dataclass
class PairFitResult:
    """What :func:`fit_pairs` did: steps, per-step losses (for a learning curve) and seconds."""

    steps: int
    losses: list[float]
    seconds: float


def fit_pairs(
    encoder: Callable[[torch.Tensor], torch.Tensor], params: list[nn.Parameter], module: nn.Module,
    data: TensorBatches, pairs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, *, epochs: int = 1,
    batch_size: int = 16, lr: float = 2e-5, weight_decay: float = 0.01, warmup: float = 0.1, seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> PairFitResult:
    """Train ``params`` so that ``loss_fn(encoder(x_i), encoder(x_j), targets)`` falls, over ``pairs`` ``(P, 2)``.

    ``module`` is put in training mode (dropout on) for the loop and back in eval mode after. Each step encodes
    the distinct items of a batch of pairs once. ``progress(step, total, loss)`` is called after each step.
    """
    if len(pairs) == 0:
        raise ValueError("contrastive fine-tuning: no pairs to train on (every class needs ≥ 2 examples, and ≥ 2 "
                         "classes are needed)")
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    total = steps_per_epoch * epochs
    warm = max(1, int(total * warmup))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    losses: list[float] = []
    start = time.perf_counter()
    module.train()
    step = 0
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout draws
            for _ in range(epochs):
                order = torch.randperm(len(pairs), generator=gen)
                for b in range(steps_per_epoch):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    pair, target = pairs[idx], targets[idx]
                    items, inverse = torch.unique(pair.reshape(-1), return_inverse=True)
                    x = data.__getitems__(items.tolist())
                    x = x[0] if isinstance(x, tuple) else x
                    feats = encoder(x)[inverse.reshape(-1, 2)]
                    loss = loss_fn(feats[:, 0], feats[:, 1], target)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"contrastive fine-tuning diverged at step {step + 1} of {total} "
                                                 f"(loss {float(loss)}); lower the learning rate (now {lr:g})")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    losses.append(float(loss.detach()))
                    if progress is not None:
                        progress(step, total, losses[-1])
    finally:
        module.eval()
    return PairFitResult(step, losses, time.perf_counter() - start)
