"""On-disk cache of extracted features: a second linear probe, or model selection, skips the backbone.

Frozen features depend only on (the backbone's weights, the data, the preprocessing, the layer), so that
tuple is the key: :func:`weights_hash` hashes every tensor of the model's state but the head's (names,
shapes, dtypes, bytes) together with its architecture config; the dataset is named by the caller
(``ImageSet.fingerprint()`` or any string); preprocessing is the model's input spec (with its evaluation
transform: ``resize``, ``crop_pct``, ``interpolation``) plus the prepared tensor's shape, served crop (``view``)
and normalisation.

Entries live in ``$TRANSFERKIT_CACHE`` (default ``~/.cache/transferkit/features``) as ``<key>.safetensors``
(never pickle). Writes go to a temporary file in the same folder and are renamed into place with
``os.replace``, so a reader never sees half a file. Each entry stores the SHA-256 of its feature bytes; an
entry that cannot be read or fails the check is logged, deleted and recomputed. Hits and misses are logged
on the ``transferkit.backbones.cache`` logger ("cache hit" / "cache miss").

The folder has a size cap (``$TRANSFERKIT_CACHE_MAX``, default 10G, :mod:`transferkit.cachedir`): a hit marks its
entry as used, and after each write the least recently used entries are removed until the folder fits.
``transferkit cache list|clear`` shows and empties it (:func:`cache_entries`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from transferkit import cachedir
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import extract_features
from transferkit.data.prepare import TensorBatches

log = logging.getLogger("transferkit.backbones.cache")

SUFFIX = ".safetensors"
CACHE_FORMAT = 2  # bump when the key or the file layout changes (2: the evaluation transform and view)


def cache_root() -> Path:
    """The feature cache folder: ``$TRANSFERKIT_CACHE`` or ``~/.cache/transferkit/features``."""
    return cachedir.feature_root()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    # logical (row-major) order, whatever the memory format (extract_features switches to channels-last)
    flat = t.detach().cpu().reshape(-1).contiguous()
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (hex, 32 characters) of what a backbone's features depend on: its architecture config and
    every parameter and buffer **except the head's** (a fresh classifier does not change the features, so
    two linear probes on the same backbone share cache entries)."""
    h = hashlib.sha256()
    if isinstance(model, Backbone):
        config = {k: v for k, v in model.config().items() if k != "num_classes"}
    else:
        config = {"class": type(model).__qualname__}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        if isinstance(model, Backbone) and name.startswith("head."):
            continue
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        h.update(_tensor_bytes(tensor))
    return h.hexdigest()[:32]


def _data_signature(data: TensorBatches) -> dict[str, object]:
    """What the prepared tensor looks like: shape, dtype, normalisation and a sample of its values.

    The sample (up to 65,536 evenly spaced values) guards against a reused ``dataset_key`` for other data
    at no real cost; the dataset fingerprint remains the primary identity.
    """
    x = data.x
    if hasattr(x, "content_key"):  # streamed images (prepared cache): the entry and rows name them exactly
        sample = x.content_key
    else:
        flat = x.reshape(-1)
        step = max(1, flat.numel() // 65536)
        sample = hashlib.sha256(_tensor_bytes(flat[::step])).hexdigest()[:16]
    scale, shift = getattr(data, "_scale", None), getattr(data, "_shift", None)
    norm = None if scale is None else [scale.flatten().tolist(), shift.flatten().tolist()]
    view = list(data.view) if getattr(data, "view", None) else None  # the served crop of bordered images
    return {"shape": list(x.shape), "dtype": str(x.dtype), "normalisation": norm, "sample": sample, "view": view}


def cache_key(model: Backbone, data: TensorBatches, dataset_key: str, layer: str | None,
              device: torch.device | str | None = None) -> str:
    """The entry name for these features (hex SHA-256 of the weights hash, data, preprocessing and layer, and the
    device type when it is not the CPU: a CPU entry's key is the same as before devices were named)."""
    where = torch.device(device).type if device is not None else next(model.parameters()).device.type
    parts = {
        "format": CACHE_FORMAT,
        "weights": weights_hash(model),
        "dataset": dataset_key,
        "preprocessing": {"input_spec": model.input_spec.to_dict(), **_data_signature(data)},
        "layer": layer,
        **({"device": where} if where != "cpu" else {}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def _read(path: Path, n: int) -> torch.Tensor | None:
    """The stored features, or ``None`` (logged; the file deleted) when the entry is corrupt."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            checksum = (fh.metadata() or {}).get("sha256")
            feats = fh.get_tensor("features")
        problem = None
        if checksum != hashlib.sha256(_tensor_bytes(feats)).hexdigest():
            problem = "checksum mismatch"
        elif feats.ndim != 2 or feats.shape[0] != n:
            problem = f"shape {tuple(feats.shape)} for {n} items"
    except Exception as err:  # a truncated or garbled file fails in many ways
        if not path.exists():  # evicted by another process meanwhile: a miss, not a corrupt entry
            return None
        problem, feats = f"unreadable ({type(err).__name__}: {str(err)[:120]})", None
    if problem is None:
        return feats
    log.warning("corrupt cache entry %s: %s; recomputing", path.name, problem)
    path.unlink(missing_ok=True)
    return None


def _write(path: Path, feats: torch.Tensor, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    feats = feats.contiguous()
    meta = {**meta, "sha256": hashlib.sha256(_tensor_bytes(feats)).hexdigest()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"features": feats}, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_features(
    model: Backbone,
    data: TensorBatches,
    dataset_key: str,
    layer: str | None = None,
    cache_dir: Path | str | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, bool]:
    """Features ``(N, D)`` of ``data`` after stage ``layer``, from the cache when present.

    Parameters
    ----------
    model:
        The (frozen) backbone; its weights are hashed, so any change to them is a different entry.
    data:
        Prepared images (:class:`~transferkit.data.prepare.TensorBatches`).
    dataset_key:
        What the data is: ``ImageSet.fingerprint()`` or any string that changes with the data.
    layer:
        Stage whose output to read (``None``: the last).
    cache_dir:
        Folder of the cache (default :func:`cache_root`).
    device:
        Where to extract (default: where the model is). A GPU's features are their own entries (its kernels round
        differently), so a CPU run never reads them.

    Returns
    -------
    (features, hit):
        float32 features on the CPU, and whether they came from the cache.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    key = cache_key(model, data, dataset_key, layer, device)
    path = root / f"{key}{SUFFIX}"
    if path.is_file():
        feats = _read(path, len(data))
        if feats is not None:
            cachedir.touch(path)
            log.info("cache hit: %s features %s of %s (layer %s) from %s", model.arch, tuple(feats.shape),
                     dataset_key, layer or "last", path)
            return feats, True
    log.info("cache miss: %s on %s (layer %s); extracting %d items", model.arch, dataset_key, layer or "last",
             len(data))
    feats = extract_features(model, data, layer=layer, batch_size=batch_size, device=device)
    try:
        _write(path, feats, {"arch": model.arch, "dataset": dataset_key, "layer": layer or ""})
    except OSError as err:  # a read-only or full disk must not fail the run
        log.warning("could not write feature cache entry %s: %s", path, err)
        return feats, False
    gone = cachedir.evict(root, SUFFIX, cachedir.max_bytes(), keep=path)
    if gone:
        log.info("feature cache over its cap (%s): removed %d least recently used entries (%s)",
                 os.environ.get(cachedir.ENV_MAX) or cachedir.DEFAULT_MAX, len(gone),
                 cachedir.format_size(sum(e.size for e in gone)))
    return feats, False


def cache_entries(root: Path | str | None = None) -> list[dict[str, object]]:
    """Every entry of the feature cache, least recently used first: ``path``, ``bytes``, ``last_used`` (seconds since
    the epoch) and what its header says (``arch``, ``dataset``, ``layer``, ``shape``; empty when unreadable)."""
    from safetensors import safe_open

    out: list[dict[str, object]] = []
    for e in cachedir.entries(Path(root) if root is not None else cache_root(), SUFFIX):
        info: dict[str, object] = {}
        try:
            with safe_open(str(e.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                info = {"arch": meta.get("arch", ""), "dataset": meta.get("dataset", ""),
                        "layer": meta.get("layer") or "last", "shape": list(fh.get_slice("features").get_shape())}
        except Exception:  # a truncated or garbled entry: listed, recomputed when next read
            info = {}
        out.append({"path": str(e.path), "bytes": e.size, "last_used": e.last_used, **info})
    return out
