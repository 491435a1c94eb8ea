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

import logging
from collections.abc import Sequence
from typing import Any

import torch

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
