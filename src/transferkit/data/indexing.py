"""Index arguments of the array stand-ins (streamed images, ragged token ids) as positions."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def positions(idx: Any, n: int, what: str = "items") -> np.ndarray:
    """``idx`` (a slice, an index tensor, array or list; negative counts from the end) as ``int64`` positions into
    ``range(n)``; an index out of range is an ``IndexError`` naming ``what``."""
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    if isinstance(idx, torch.Tensor):
        idx = idx.cpu().numpy()
    pos = np.asarray(idx, dtype=np.int64).reshape(-1)
    if len(pos) and (pos.min() < -n or pos.max() >= n):
        raise IndexError(f"index out of range for {n} {what}")
    return pos % n if len(pos) else pos
