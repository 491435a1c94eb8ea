"""The order in which training and evaluation batches are drawn: stateless, resumable and shardable.

:class:`EpochBatchSampler` derives each epoch's order from ``(seed, epoch)`` alone instead of advancing a
generator, so that

* **exact resume** needs only the epoch and the number of batches already trained: a run killed in the
  middle of an epoch and restarted from a checkpoint sees the same remaining batches in the same order
  (:meth:`EpochBatchSampler.resume`);
* **data-parallel training** (DDP) shards *every global batch*: with ``W`` processes, process ``r`` takes the
  ``r``-th of ``W`` contiguous parts of the batch the single-process run would have drawn. The global batch —
  and, with gradients averaged over processes and BatchNorm synchronised, the update — is the same whatever
  the number of processes. Nothing is padded or repeated (``DistributedSampler`` pads the last batch by
  repeating examples, which would count them twice in the validation metrics).
* augmentation draws from a seed attached to each batch (:class:`SeededBatch`), not from the global
  generator, so prefetching a batch early or late (a resumed run prefetches at a different moment) cannot
  change what the model sees.

The process rank and count are read when iterating (``torch.distributed``), so one sampler object serves a
single process and every DDP process alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

ORDERS = ("sequential", "shuffle", "weighted")


class SeededBatch(list):
    """The indices of one batch, plus the seed from which its augmentation draws (``TensorBatches`` uses it)."""

    seed: int = 0


def world() -> tuple[int, int]:
    """``(rank, number of processes)`` of the running data-parallel group, ``(0, 1)`` outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _mix(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (NumPy's ``SeedSequence``)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class EpochBatchSampler:
    """Batches of indices into ``range(n)``: the whole of each epoch, sharded over DDP processes.

    ``order``: ``sequential`` (evaluation), ``shuffle`` (a seeded permutation per epoch) or ``weighted``
    (``n`` draws with replacement, probability ∝ ``weights``: class-balanced sampling). ``batch_size`` is the
    **global** batch; under DDP each process takes its contiguous share of it (sizes differ by at most one).
    A final global batch smaller than the number of processes is dropped when ``train`` (every process must
    take a step), kept otherwise.

    Lightning calls :meth:`set_epoch` at each epoch start. When a loader is iterated again within one epoch
    (the shorter loader of a cycled pair), the next *cycle* gets its own order.
    """

    def __init__(self, n: int, batch_size: int, order: str = "shuffle", seed: int = 0,
                 weights: torch.Tensor | None = None, train: bool = True) -> None:
        if order not in ORDERS:
            raise ValueError(f"unknown batch order '{order}'; valid choices: {', '.join(ORDERS)}")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if order == "weighted" and (weights is None or len(weights) != n):
            raise ValueError("order='weighted' needs one weight per example")
        self.n, self.batch_size, self.order, self.seed, self.train = int(n), int(batch_size), order, int(seed), train
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0
        self._cycle = 0
        self._skip = 0

    # -- position ----------------------------------------------------------------------------------
    @property
    def sampler(self) -> EpochBatchSampler:
        """Lightning calls ``loader.batch_sampler.sampler.set_epoch(epoch)`` at each epoch start: that is us."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch, self._cycle, self._skip = int(epoch), 0, 0

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue epoch ``epoch`` after its first ``batches_done`` batches (over however many cycles)."""
        per_cycle = max(len(self), 1)
        self.epoch = int(epoch)
        self._cycle, self._skip = divmod(int(batches_done), per_cycle)

    # -- batches ------------------------------------------------------------------------------------
    def _global_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def _indices(self, epoch: int, cycle: int) -> torch.Tensor:
        if self.order == "sequential":
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(_mix(self.seed, epoch, cycle))
        if self.order == "shuffle":
            return torch.randperm(self.n, generator=g)
        return torch.multinomial(self.weights, self.n, replacement=True, generator=g)

    def _shares(self, rank: int, size: int) -> list[tuple[int, int]]:
        """(start, stop) of this process's share of every global batch, empty shares left out."""
        out = []
        for b in range(self._global_batches()):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n)
            m = hi - lo
            if self.train and size > 1 and m < size:
                continue  # a share would be empty: no process steps on this batch
            a = lo + (m * rank) // size
            z = lo + (m * (rank + 1)) // size
            if z > a:
                out.append((a, z))
        return out

    def __len__(self) -> int:
        return len(self._shares(*world()))

    def __iter__(self) -> Iterator[SeededBatch]:
        epoch, cycle, skip = self.epoch, self._cycle, self._skip
        self._cycle, self._skip = cycle + 1, 0
        rank, size = world()
        idx = self._indices(epoch, cycle).tolist()
        for b, (a, z) in enumerate(self._shares(rank, size)):
            if b < skip:
                continue
            batch = SeededBatch(idx[a:z])
            batch.seed = _mix(self.seed, epoch, cycle, b, rank, 1)
            yield batch
