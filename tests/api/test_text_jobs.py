"""Text through the whole product: few-shot, zero-shot, transfer strategies, curves and predict, on small text
made here (tests/conftest.py) and the real MiniLM encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit as tk
from tests.conftest import topic_texts, write_topic_csv
from transferkit.backbones import create_backbone


@pytest.fixture
def data(topics_dir):
    return f"text:{topics_dir}"


def test_setfit_fewshot_run_directory_and_bundle(minilm, data, tmp_path, single_thread):
    res = tk.fewshot(minilm, data, method="setfit", labels_per_class=4, iterations=2, seed=0, out=tmp_path / "sf",
                     progress=False)
    files = {p.name for p in (tmp_path / "sf").iterdir()}
    assert {"config.yaml", "metrics.json", "report.md", "bundle", "confusion_matrix.png", "pair_loss.png"} <= files
    m = json.loads((tmp_path / "sf" / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 24 and m["n_train"] == 16
    d = m["details"]
    assert d["pairs"] == 2 * 2 * 16 and d["positive_pairs"] == 32 and d["steps"] == 4
    assert m["accuracy"] >= 0.75  # 4 clearly separated topics; chance is 0.25
    assert "contrastive fine-tuning" in (tmp_path / "sf" / "report.md").read_text() or "pairs" in (
        tmp_path / "sf" / "report.md").read_text()
    # the encoder moved, the source object did not
    a = dict(res.model.named_parameters())["stages.layer0.attention.self.query.weight"]
    b = dict(minilm.named_parameters())["stages.layer0.attention.self.query.weight"]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())


def test_prototypes_and_predict_on_text_files(minilm, data, topics_dir, tmp_path, single_thread):
    res = tk.fewshot(minilm, data, method="prototypes", labels_per_class=3, out=tmp_path / "p", progress=False)
    assert res.metrics["accuracy"] >= 0.8 and res.model.head_kind == "cosine"
    txt = tmp_path / "in.txt"
    txt.write_text("The goalkeeper saved a penalty in the final.\n\nShares fell after the profit warning.\n",
                   encoding="utf-8")
    rows = tk.predict(tmp_path / "p", [txt], progress=False)
    assert [r["path"] for r in rows] == [f"{txt}:1", f"{txt}:2", f"{txt}:3"]
    assert rows[0]["predicted_class"] == "sports" and rows[2]["predicted_class"] == "business"
    assert "error" in rows[1] and "empty" in rows[1]["error"]
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("headline,body\nStorm,Heavy snow and wind tonight\n", encoding="utf-8")
    rows = tk.predict(tmp_path / "p", [csv_in], text_column="headline+body", progress=False)
    assert rows[0]["predicted_class"] == "weather"
    with pytest.raises(ValueError, match="text"):
        tk.predict(tmp_path / "p", [csv_in], text_column="missing", progress=False)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Caf\xe9 prices rose\n".encode("latin-1"))
    out = tk.predict(tmp_path / "p", [bad, txt], progress=False)  # the bad file is an error row, the next one runs
    assert "not UTF-8" in out[0]["error"] and out[1]["predicted_class"] == "sports"


def test_episodes_report_mean_and_interval(minilm, data, tmp_path, single_thread):
    res = tk.fewshot(minilm, data, method="episodes", labels_per_class=2, n_way=3, n_query=4, episodes=100,
                     out=tmp_path / "e", progress=False)
    m = res.metrics
    assert m["episodes"] == 100 and m["n_way"] == 3 and m["k_shot"] == 2
    assert m["accuracy"] > 0.7 and 0 < m["ci95"] < 0.1
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert len(saved["episode_accuracies"]) == 100


def test_fewshot_bad_input(minilm, data, tmp_path):
    with pytest.raises(ValueError, match="unknown few-shot method .maml.; valid few-shot methods: prototypes, setfit"):
        tk.fewshot(minilm, data, method="maml", out=tmp_path / "x")
    with pytest.raises(ValueError, match="^labels_per_class: expected ≥ 1, got 0"):
        tk.fewshot(minilm, data, labels_per_class=0, out=tmp_path / "x")
    with pytest.raises(ValueError, match="^evaluate_on: expected one of auto, test, rest, got .val."):
        tk.fewshot(minilm, data, method="prototypes", evaluate_on="val", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_zeroshot_with_templates_descriptions_and_label_checks(minilm, data, tmp_path, single_thread):
    res = tk.zeroshot(minilm, data, templates=["This news article is about {label}."],
                      descriptions={"science": "science and technology"}, out=tmp_path / "z")
    m = res.metrics
    assert m["split"] == "test" and m["n"] == 24 and m["accuracy"] >= 0.7
    assert m["prompts"][1] == ["science and technology"]
    assert (tmp_path / "z" / "bundle").is_dir() and (tmp_path / "z" / "confusion_matrix.png").is_file()
    # a label without examples: a note, not a failure
    res = tk.zeroshot(minilm, data, labels="sports,business,science,weather,cooking", out=tmp_path / "z2")
    assert res.metrics["labels"][-1] == "cooking"
    assert "cooking" in (tmp_path / "z2" / "report.md").read_text()
    # a data class missing from the labels: an error before anything is written
    with pytest.raises(ValueError, match=r"classes \['weather'\] are not among the zero-shot labels"):
        tk.zeroshot(minilm, data, labels="sports,business,science", out=tmp_path / "z3")
    assert not (tmp_path / "z3").exists()
    with pytest.raises(ValueError, match=r"^labels: expected at least 2 labels .*got \['only'\]"):
        tk.zeroshot(minilm, labels="only", out=tmp_path / "z4")
    with pytest.raises(ValueError, match="^descriptions: expected a YAML/JSON file .*; no such file"):
        tk.zeroshot(minilm, labels="a,b", descriptions=tmp_path / "none.yaml", out=tmp_path / "z4")
    # without data: a model from label names alone
    res = tk.zeroshot(minilm, labels=["cats", "finance"], out=tmp_path / "z5")
    assert "accuracy" not in res.metrics and res.meta["classes"] == ["cats", "finance"]
    # a zero-shot text model (cosine head on label embeddings) exports and serves like any text model
    info = tk.export(tmp_path / "z5", out=tmp_path / "z5.onnx")
    assert info["verification"]["argmax_equal"] and (tmp_path / "z5.tokenizer.json").is_file()
    from transferkit.api.serve_job import load_service_predictor

    assert load_service_predictor(tmp_path / "z5.onnx", backend="onnx").classes == ["cats", "finance"]


def test_zeroshot_refuses_image_backbones(tmp_path):
    with pytest.raises(ValueError, match="needs a text encoder.*CLIP-like"):
        tk.zeroshot(create_backbone("seed_cnn"), labels="a,b", out=tmp_path / "z")


@pytest.mark.parametrize("strategy", ["linear_probe", "finetune", "lora"])
def test_transfer_strategies_on_text(minilm, data, strategy, tmp_path, single_thread):
    res = tk.transfer(minilm, data, strategy=strategy, labels_per_class=6, epochs=3, batch_size=8,
                      lr=1e-3 if strategy != "finetune" else 5e-5, patience=None, out=tmp_path / strategy,
                      progress=False, max_length=64, checkpoint_every=None)
    m = res.metrics
    assert m["split"] == "test" and m["n"] == 24
    assert m["accuracy"] > 0.25  # above chance after 3 epochs on 24 examples
    if strategy == "lora":
        assert m["trainable_params"] < 0.02 * m["total_params"]
    loaded, meta = tk.load_bundle(tmp_path / strategy / "bundle")
    assert loaded.input_spec.extra["max_length"] == 64 and meta["classes"] == ["business", "science", "sports",
                                                                               "weather"]


def test_text_refuses_image_only_options_and_mismatched_modality(minilm, data, tmp_path, fashion_npz):
    with pytest.raises(ValueError, match="augment"):
        tk.transfer(minilm, data, strategy="finetune", epochs=1, augment="light", out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="text"):
        tk.transfer(minilm, f"npz:{fashion_npz}", strategy="linear_probe", epochs=1, out=tmp_path / "b",
                    progress=False)
    with pytest.raises(ValueError, match="text"):
        tk.transfer(create_backbone("seed_cnn"), data, strategy="scratch", epochs=1, out=tmp_path / "c", progress=False)
    for source in ("seed_cnn", create_backbone("seed_cnn")):  # a name (checked before building it) or a model
        with pytest.raises(ValueError, match="max_length: expected a text backbone source"):
            tk.transfer(source, f"npz:{fashion_npz}", strategy="finetune", epochs=1, max_length=32,
                        out=tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_unseen_label_in_a_later_split_is_an_error(minilm, tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    write_topic_csv(root / "train.csv", topic_texts(4, 0))
    write_topic_csv(root / "test.csv", topic_texts(2, 1) + [("Bake the bread for an hour.", "cooking")])
    with pytest.raises(ValueError, match="cooking"):
        tk.fewshot(minilm, f"text:{root}", method="prototypes", labels_per_class=2, out=tmp_path / "r",
                   progress=False)


def test_label_efficiency_curve_on_text(minilm, data, tmp_path, single_thread):
    res = tk.curve(minilm, data, strategies=["linear_probe"], labels_per_class=[2, 6], seeds=[0, 1], epochs=3,
                   patience=None, out=tmp_path / "c")
    summary = json.loads((tmp_path / "c" / "summary.json").read_text()) if (tmp_path / "c" / "summary.json").is_file() \
        else res.metrics
    assert (tmp_path / "c" / "report.md").is_file()
    assert "linear_probe" in json.dumps(summary)


def test_image_only_jobs_refuse_text_clearly(minilm, data, tmp_path):
    with pytest.raises(ValueError, match="domain adaptation supports image data only so far"):
        tk.adapt(source=data, target=data, method="dann", out=tmp_path / "a")
    with pytest.raises(ValueError, match="distillation supports image data only so far"):
        tk.distill(minilm, data=data, out=tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_select_cli_passes_max_length_to_text_candidates(data, tmp_path, single_thread):
    from transferkit.bundle import load_bundle
    from transferkit.cli.main import main

    out = tmp_path / "sel"
    assert main(["select", "minilm", "--data", data, "--labels-per-class", "3", "--max-length", "12", "--verify", "1",
                 "--epochs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selected"] == "minilm" and "max_length: 12" in (out / "config.yaml").read_text()
    bundle = next((out / "verify").glob("*/bundle"))
    assert load_bundle(bundle)[0].input_spec.extra["max_length"] == 12  # the verification run used it too
