"""BatchNorm statistics over the whole global batch under DDP, on CPU (gloo) as on GPUs.

``torch.nn.SyncBatchNorm`` refuses CPU tensors, yet DDP on CPU is this toolkit's normal multi-process case.
:class:`GlobalBatchNorm` is a Lightning ``LayerSync`` plugin that makes every BatchNorm layer in training
mode normalise with the mean and variance of the **global** batch: each process sums its share's values and
squares per channel, one differentiable all-reduce (``torch.distributed.nn.functional.all_reduce``) adds them
up, and the running statistics are updated from the global figures exactly as ``F.batch_norm`` would for the
whole batch (unbiased variance, momentum or cumulative average). With gradients averaged by DDP and each
share's loss weighted by its size, a step with 2 processes is then the step 1 process takes on the global batch
(Ioffe & Szegedy, 2015; the cross-device form of Peng et al., 2018, "MegDet").

The layers keep their identity and class: the plugin swaps in a subclass that adds the synchronisation and
restores the original class afterwards, so references to the layers (the frozen-BatchNorm list of a strategy)
stay valid and the trained model is the same type as before. Layers in eval mode (frozen statistics) and runs in
a single process use the ordinary BatchNorm path.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn
from torch.distributed.nn.functional import all_reduce  # differentiable (the functional-collectives one is not)

warnings.filterwarnings("ignore", ".*torch.distributed.nn.functional.all_reduce is deprecated.*")
_SYNCED: dict[type, type] = {}


class _GlobalStatistics:
    """Mixed into a BatchNorm class: training-mode statistics over every process's share of the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._tk_original_class  # type: ignore[attr-defined]
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return base.forward(self, x)
        base._check_input_dim(self, x)  # type: ignore[attr-defined]
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / c)])
        total = all_reduce(local)  # sums over processes; gradients flow back to every share
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:  # type: ignore[attr-defined]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)  # type: ignore[attr-defined]
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)  # type: ignore[attr-defined]
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)  # type: ignore[attr-defined]
        if self.affine:  # type: ignore[attr-defined]
            y = y * self.weight.view(shape) + self.bias.view(shape)  # type: ignore[attr-defined]
        return y


def _synced_class(cls: type) -> type:
    if cls not in _SYNCED:
        _SYNCED[cls] = type(f"Global{cls.__name__}", (_GlobalStatistics, cls), {"_tk_original_class": cls})
    return _SYNCED[cls]


class GlobalBatchNorm(LayerSync):
    """Lightning ``LayerSync`` plugin: global-batch BatchNorm statistics for every ``_BatchNorm`` layer."""

    def apply(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _GlobalStatistics) \
                    and not isinstance(m, nn.SyncBatchNorm):
                m.__class__ = _synced_class(type(m))
        return model

    def revert(self, model: nn.Module) -> nn.Module:
        for m in model.modules():
            if isinstance(m, _GlobalStatistics):
                m.__class__ = type(m)._tk_original_class  # type: ignore[attr-defined]
        return model

