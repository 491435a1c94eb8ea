"""Token ids kept ragged (issue 29's text path): the same batches as the padded tensor, a quarter of the memory."""

from __future__ import annotations

import numpy as np
import torch

from transferkit.data.prepare import TensorBatches, take_rows
from transferkit.data.tokens import TokenRows, encode_rows, encode_texts


def test_ragged_ids_serve_every_batch_as_the_padded_tensor_trimmed_to_its_longest_text(minilm):
    texts = ["a short one", "a somewhat longer sentence about the market and the league", "x",
             "the striker scored twice as the team won the cup final " * 3] * 5
    spec = minilm.input_spec
    padded, lengths, _ = encode_texts(texts, spec)
    rows = encode_rows(texts, spec, chunk=3)  # several chunks
    assert isinstance(rows, TokenRows) and rows.flat.dtype == np.int32 and torch.equal(rows.lengths, lengths)
    assert rows.shape == padded.shape and len(rows) == len(texts)
    for idx in ([0, 1, 2], [2], [3, 0, 3], list(range(20))):
        width = int(lengths[idx].max())
        assert torch.equal(rows[torch.tensor(idx)], padded[idx][:, :width])
    assert torch.equal(rows[1], padded[1][: int(lengths[1])]) and torch.equal(rows[5:7], padded[5:7][:, :int(
        lengths[5:7].max())])
    sub = take_rows(rows, torch.tensor([3, 1]))
    assert isinstance(sub, TokenRows) and torch.equal(sub[:], padded[[3, 1]][:, :int(lengths[3])])
    assert rows.content_key != sub.content_key
    was_training = minilm.training  # a session fixture: other tests may leave it training (dropout on)
    minilm.eval()
    try:
        with torch.no_grad():
            feats_ragged = minilm.forward_features(TensorBatches(rows, lengths=rows.lengths).__getitems__([0, 1, 2, 3]))
            feats_padded = minilm.forward_features(padded[:4])
    finally:
        minilm.train(was_training)
    assert torch.allclose(feats_ragged, feats_padded, atol=1e-5)
