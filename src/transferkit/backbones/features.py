"""Fast batched inference: frozen-feature extraction (feature transfer, model selection) and logits.

Runs in ``torch.inference_mode`` (no autograd bookkeeping), in eval mode (BatchNorm uses running
statistics, dropout off), with channels-last memory for 4-D inputs (faster convolutions on CPU), in
batches taken straight from in-memory tensors (texts sorted by length, so a batch pads to similar lengths), or read
by DataLoader worker processes when the images are streamed from the prepared cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from transferkit.backbones.base import Backbone
from transferkit.data.prepare import TensorBatches, keep_batch, loader_workers
from transferkit.data.tokens import length_batches


def batched_outputs(model: torch.nn.Module, data: TensorBatches, fn: Callable[[torch.Tensor], torch.Tensor],
                    batch_size: int, device: torch.device | str | None = None) -> list[torch.Tensor]:
    """``fn(x)`` over ``data``'s inputs in batches (eval + inference mode, channels-last for images), as CPU
    float chunks; ``model`` is the module ``fn`` runs (its mode and memory format are restored afterwards).
    ``device`` (e.g. ``cuda``): run there — the model is moved for the call and back after, batches are copied
    from pinned memory without blocking; default: where the model is."""
    was_training = model.training
    model.eval()
    home = next(model.parameters()).device
    device = torch.device(device) if device is not None else home
    moved = device != home
    if moved:
        model.to(device)
    cuda = device.type == "cuda"
    channels_last = data.x.ndim == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    chunks = []
    # texts go in length order (each batch pads to its longest text only), outputs come back in data order
    lengths = getattr(data, "lengths", None)
    batches = [] if not len(data) else length_batches(lengths, batch_size) if lengths is not None else \
        list(torch.arange(len(data)).split(batch_size))
    workers = loader_workers(data)
    fetched = (data.__getitems__(idx.tolist()) for idx in batches) if not workers else iter(DataLoader(
        data, batch_sampler=[idx.tolist() for idx in batches], collate_fn=keep_batch, num_workers=workers,
        prefetch_factor=4, pin_memory=cuda))  # streamed images: read and resized in worker processes
    try:
        with torch.inference_mode():
            for batch in fetched:
                x = batch[0] if isinstance(batch, tuple) else batch
                x = x.pin_memory().to(device, non_blocking=True) if cuda else x.to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                chunks.append(fn(x).float().cpu())
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        if moved:
            model.to(home)
        model.train(was_training)
    if lengths is not None and chunks:
        out = torch.cat(chunks)
        restored = torch.empty_like(out)
        restored[torch.cat(batches)] = out
        return [restored]
    return chunks


def extract_features(
    model: Backbone, data: TensorBatches, layer: str | None = None, batch_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Features ``(N, D)`` of every item of ``data`` after stage ``layer`` (float32, on the CPU), computed on
    ``device`` (default: where the model is)."""
    chunks = batched_outputs(model, data, lambda x: model.forward_features(x, layer), batch_size, device)
    return torch.cat(chunks) if chunks else torch.empty(0, model.feature_dim)


def predict_logits(model: Backbone, data: TensorBatches, batch_size: int = 64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits ``(N, num_classes)`` of the whole model over ``data`` (eval mode, inference mode), computed on
    ``device`` (default: where the model is)."""
    chunks = batched_outputs(model, data, model, batch_size, device)
    return torch.cat(chunks) if chunks else torch.empty(0, model.num_classes)


def measure_latency(model: torch.nn.Module, input_shape: tuple[int, ...], batch_size: int, repeats: int = 20,
                    warmup: int = 3) -> dict[str, float]:
    """CPU inference latency of ``model`` on random inputs ``(batch_size, *input_shape)``: median and 90th
    percentile milliseconds per batch over ``repeats`` timed calls (after ``warmup``), eval + inference mode,
    the threads torch is set to use. A relative figure: compare models measured the same way on one machine."""
    import time

    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_shape)
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
    finally:
        model.train(was_training)
    t = torch.tensor(times)
    return {"batch_size": batch_size, "median_ms": float(t.median()), "p90_ms": float(t.quantile(0.9)),
            "per_image_ms": float(t.median()) / batch_size, "threads": torch.get_num_threads()}
