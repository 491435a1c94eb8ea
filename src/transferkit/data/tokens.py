"""Texts → padded token-id tensors for a text backbone (the text counterpart of ``prepare_images``).

A text batch is one ``int64`` tensor ``(B, L)`` of token ids padded with the tokenizer's pad id, so text flows
through the same :class:`~transferkit.data.prepare.TensorBatches`, loaders, feature cache and engine as images;
the backbone derives the attention mask from the pad id and trims each batch to its longest text (dynamic
padding). Inference sorts texts by length first (:func:`length_order`) so that each batch holds texts of
similar length — on a CPU the padding a batch carries is time wasted.

Tokenisation uses the fast (Rust) ``tokenizers`` library; texts longer than ``extra["max_length"]`` tokens
are truncated (the model cannot read more), counted and reported once per dataset as a warning.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from transferkit.data.indexing import positions

log = logging.getLogger("transferkit.data.tokens")


def text_settings(spec: Any) -> tuple[Any, int, int]:
    """``(tokenizer, max_length, pad_id)`` of a text input spec, or a clear error when it has no tokenizer."""
    tokenizer = getattr(spec, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("this text model carries no tokenizer (a bundle without tokenizer.json, or an hf: model "
                         "built from a config only); rebuild it from its pretrained source")
    extra = getattr(spec, "extra", {}) or {}
    return tokenizer, int(extra.get("max_length", 256)), int(extra.get("pad_id", 0))


def encode_texts(texts: Sequence[str], spec: Any, what: str = "texts") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token ids ``(N, L)`` (``L`` = longest encoded text, at most ``max_length``), their lengths ``(N,)`` and the
    number of texts that were truncated; a warning names that number when it is not zero."""
    tokenizer, max_length, pad_id = text_settings(spec)
    # set on every call (cheap; no copy of the vocabulary): one tokenizer may serve models with different limits
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    ids, lengths, flags = padded_ids(tokenizer, texts, pad_id)
    truncated = sum(flags)
    if truncated:
        log.warning("%s: %d of %d texts were longer than %d tokens and were truncated (raise max_length, up to the "
                    "model's limit, to keep more)", what, truncated, len(flags), max_length)
    return ids, lengths, truncated


class TokenRows:
    """The token ids of ``N`` texts kept ragged — one flat ``int32`` array and the offsets of each text — instead of
    an ``(N, L)`` ``int64`` tensor padded to the longest text: 4 bytes per token instead of 8 × ``L`` per text, so a
    table of millions of rows fits. It stands in for that tensor in
    :class:`~transferkit.data.prepare.TensorBatches`: ``x[idx]`` (a slice or index array) is the batch's ids padded
    with ``pad_id`` to *its* longest text (what the model trims every batch to anyway); ``shape`` is ``(N, L)``."""

    ndim = 2
    dtype = torch.int64

    def __init__(self, flat: np.ndarray, offsets: np.ndarray, pad_id: int, rows: np.ndarray | None = None) -> None:
        self.flat, self.offsets, self.pad_id = flat, offsets, int(pad_id)
        self.rows = np.arange(len(offsets) - 1) if rows is None else np.asarray(rows, dtype=np.int64)
        self.lengths = torch.from_numpy((offsets[self.rows + 1] - offsets[self.rows]).astype(np.int64))

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), int(self.lengths.max()) if len(self.rows) else 1))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def content_key(self) -> str:
        """What these ids are (for the feature cache's data signature), hashed without padding them."""
        import hashlib

        h = hashlib.sha256(self.rows.tobytes())
        h.update(self.offsets.tobytes())
        h.update(self.flat.tobytes())
        return h.hexdigest()[:16]

    def take(self, idx: Any) -> TokenRows:
        """The texts at ``idx`` (nothing copied but the row numbers)."""
        return TokenRows(self.flat, self.offsets, self.pad_id, self.rows[positions(idx, len(self.rows), "texts")])

    def __getitem__(self, idx: Any) -> torch.Tensor:
        single = isinstance(idx, (int, np.integer))
        rows = self.rows[positions([int(idx)] if single else idx, len(self.rows), "texts")]
        starts, stops = self.offsets[rows], self.offsets[rows + 1]
        width = max(1, int((stops - starts).max())) if len(rows) else 1
        out = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, (a, z) in enumerate(zip(starts, stops, strict=True)):
            out[i, : z - a] = self.flat[a:z]
        x = torch.from_numpy(out)
        return x[0] if single else x


def encode_rows(texts: Sequence[str], spec: Any, what: str = "texts", chunk: int = 8192) -> TokenRows:
    """``texts`` tokenised for a text input spec into :class:`TokenRows`, ``chunk`` texts at a time (the tokenizer's
    per-text objects of only one chunk are alive at once; ``tokenizers`` encodes each chunk on all cores), with the
    truncation warning of :func:`encode_texts`."""
    tokenizer, max_length, pad_id = text_settings(spec)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    parts, lengths, truncated = [], [], 0
    for start in range(0, len(texts), chunk):
        encodings = tokenizer.encode_batch(list(texts[start:start + chunk]))
        ids = [e.ids for e in encodings]
        lengths.extend(len(i) for i in ids)
        parts.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=sum(map(len, ids))))
        truncated += sum(bool(e.overflowing) for e in encodings)
        del encodings, ids
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    if truncated:
        log.warning("%s: %d of %d texts were longer than %d tokens and were truncated (raise max_length, up to the "
                    "model's limit, to keep more)", what, truncated, len(lengths), max_length)
    return TokenRows(flat, offsets, pad_id)


def truncating_tokenizer(spec: Any) -> tuple[Any, int]:
    """A private copy of a text spec's tokenizer, set once to truncate at ``max_length`` without padding, and the
    pad id: what a long-lived server encodes with. :func:`encode_texts` re-sets the shared tokenizer on each call,
    which a second thread encoding at the same moment would see (the ``tokenizers`` library refuses to change a
    tokenizer that is being used); a copy that is never changed again can be used by several threads at once."""
    from tokenizers import Tokenizer

    tokenizer, max_length, pad_id = text_settings(spec)
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.enable_truncation(max_length)
    return copy, pad_id


def padded_ids(tokenizer: Any, texts: Sequence[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """``texts`` encoded by ``tokenizer`` (as it is set: truncation included) → token ids ``(N, L)`` padded with
    ``pad_id`` (``L`` = the longest), their lengths ``(N,)`` and, per text, whether it was truncated."""
    encodings = tokenizer.encode_batch(list(texts)) if len(texts) else []
    lengths = torch.tensor([len(e.ids) for e in encodings], dtype=torch.int64)
    width = int(lengths.max()) if len(encodings) else 1
    ids = torch.full((len(encodings), width), pad_id, dtype=torch.int64)
    for i, e in enumerate(encodings):
        ids[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.int64)
    return ids, lengths, [bool(e.overflowing) for e in encodings]


def length_order(lengths: torch.Tensor) -> torch.Tensor:
    """Indices that sort items by length (stable), for batching texts of similar length together."""
    return torch.sort(lengths, stable=True).indices


def length_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches of ``batch_size`` items of similar length (in :func:`length_order`): each pads only to its
    own longest text. Together they cover every item once."""
    return list(length_order(lengths).split(batch_size))
