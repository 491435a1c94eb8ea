"""The multitask job end to end on small real data: run directory, comparison, bundle with every head, predict."""

import csv
import json

import numpy as np
import pytest
import yaml

import transferkit as tk
from tests.conftest import topic_texts
from transferkit.bundle import read_meta
from transferkit.cli.main import main

COARSE = {"tops": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"], "bottoms": ["Trouser"],
          "footwear": ["Sandal", "Sneaker", "Ankle boot"], "bags": ["Bag"]}


@pytest.fixture(scope="module")
def source(tmp_path_factory, fashion_npz):
    out = tmp_path_factory.mktemp("mt") / "src"
    tk.pretrain(data=f"npz:{fashion_npz}", classes="0,1,5,8,9", epochs=1, out=out, progress=False)
    return out


def spec(npz, src, **extra):
    return {"data": f"npz:{npz}", "source": str(src), "epochs": 2, "tasks": [
        {"name": "fine", "labels_per_class": 5},
        {"name": "coarse", "class_map": COARSE, "labels_per_class": 20},
        {"name": "shoes", "classes": "5,7,9", "labels_per_class": 4, "holdout": True}], **extra}


def test_multitask_job_compares_and_bundles_every_head(fashion_npz, source, tmp_path, single_thread):
    res = tk.multitask(spec(fashion_npz, source, weighting="gradnorm", sampling="temperature"), out=tmp_path / "mt")
    m = res.metrics
    assert m["split"] == "test" and m["weighting"] == "gradnorm" and m["sampling"] == "temperature"
    fine, coarse = m["tasks"]["fine"], m["tasks"]["coarse"]
    assert (fine["train_labels"], fine["val_labels"], coarse["train_labels"]) == (50, 0, 80)  # K is the budget
    assert fine["labels"]["per_class"] == 5 and fine["labels"]["selection"].startswith("no selection")
    assert fine["multitask"]["n"] == 400 and len(coarse["multitask"]["per_class"]) == 4
    assert fine["delta"] == pytest.approx(fine["multitask"]["accuracy"] - fine["single_task"]["accuracy"])
    # same optimiser steps: the fine-only model gets more, shorter epochs than the multi-task run's 2
    assert fine["single_task_epochs"] > 2
    assert sum(m["final_weights"].values()) == pytest.approx(2.0, abs=1e-4)
    assert {"weight_fine", "train_loss_coarse"} <= set(m["history"][-1])
    probe = m["holdout"]["shoes"]
    assert probe["train_labels"] == 12 and probe["n"] == 120
    assert set(probe["accuracy"]) == {"source", "multi-task", "single-task fine", "single-task coarse"}
    assert all(0.33 < a <= 1 for a in probe["accuracy"].values())  # three shoe classes: better than chance
    report = (tmp_path / "mt" / "report.md").read_text()
    assert "| fine | 10 | 50 | 0 |" in report and "no validation rows: nothing was selected" in report
    assert "single-task acc" in report and "holdout task shoes" in report
    assert (tmp_path / "mt" / "tasks.png").is_file() and (tmp_path / "mt" / "learning_curves.png").is_file()

    meta = read_meta(tmp_path / "mt")
    assert [(t["name"], t["start"], t["stop"]) for t in meta["tasks"]] == [("fine", 0, 10), ("coarse", 10, 14)]
    assert meta["tasks"][1]["classes"] == ["tops", "bottoms", "footwear", "bags"]

    # predict: every task's prediction for each image
    from PIL import Image

    data = np.load(fashion_npz)
    paths = []
    for i in (0, 300):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(data["x_test"][i]).save(p)
        paths.append(p)
    rows = tk.predict(tmp_path / "mt", paths, top_k=2, progress=False)
    assert rows[0]["fine_class"] in meta["tasks"][0]["classes"]
    assert rows[0]["coarse_class"] in meta["tasks"][1]["classes"]
    assert 0 < rows[0]["coarse_probability"] <= 1 and rows[0]["coarse_top2_class"] != rows[0]["coarse_class"]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tk.predict(tmp_path / "mt", [*paths, tmp_path / "broken.png"], output=tmp_path / "pred.csv", progress=False)
    with open(tmp_path / "pred.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert out["predicted"] == 2 and out["errors"] == 1
    assert {"fine_class", "coarse_probability", "coarse_top1_index"} <= set(written[0])
    assert written[2]["error"] and written[2]["fine_class"] == ""  # a bad file: its reason, no prediction

    with pytest.raises(ValueError, match="multi-task model"):
        tk.evaluate(tmp_path / "mt", f"npz:{fashion_npz}")
    # export keeps every head: the logits side by side, the tasks in the metadata, checked per task
    info = tk.export(tmp_path / "mt")
    assert [t["name"] for t in info["tasks"]] == [t["name"] for t in read_meta(tmp_path / "mt")["tasks"]]
    assert info["verification"]["argmax_equal"]
    # the multi-task bundle is a source like any other
    again = tk.transfer(tmp_path / "mt", data=f"npz:{fashion_npz}", classes="5,7,9", labels_per_class=4, epochs=1,
                        out=tmp_path / "t", progress=False)
    assert again.metrics["n"] == 120


def test_cli_multitask_probe_and_bad_spec(fashion_npz, source, tmp_path, single_thread, capsys):
    cfg = tmp_path / "tasks.yaml"
    cfg.write_text(yaml.safe_dump(spec(fashion_npz, source, strategy="linear_probe", weighting="uncertainty",
                                       options={"solver": "sgd"})))  # a stepped probe: the weights learn
    assert main(["multitask", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-baselines",
                 "--epochs", "3"]) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["strategy"] == "linear_probe" and m["tasks"]["fine"]["single_task"] is None
    assert m["fit"]["epochs_run"] == 3
    assert m["final_weights"]["fine"] != 1.0  # learnt log-variances moved
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**spec(fashion_npz, source), "tasks": [{"name": "a"}, {"name": "a"}]}))
    assert main(["multitask", "--config", str(bad), "--out", str(tmp_path / "bad")]) != 0
    captured = capsys.readouterr()
    assert "task name 'a' is used twice" in " ".join((captured.out + captured.err).split())
    assert not (tmp_path / "bad").exists()


def test_multitask_text_columns(minilm, tmp_path, single_thread):
    rows = [(t, label, "long" if len(t) > 50 else "short") for t, label in topic_texts(8, 0)]
    rows = [(t, a, b if i % 5 else "") for i, (t, a, b) in enumerate(rows)]  # some rows without a length label
    path = tmp_path / "news.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "topic", "length"])
        w.writerows(rows)
    res = tk.multitask({"data": f"text:{path}", "strategy": "linear_probe", "epochs": 20, "val_fraction": 0.25,
                        "tasks": [{"name": "topic", "column": "topic"}, {"name": "length", "column": "length"}]},
                       source=minilm, out=tmp_path / "txt")
    m = res.metrics
    assert m["split"] == "validation"  # a single file has no test split
    assert m["tasks"]["length"]["missing_in_data"] == 7
    assert m["tasks"]["topic"]["multitask"]["accuracy"] > 0.5
    # the default probe is solved: each task's head on its own labelled rows, no epochs
    assert m["fit"]["epochs_run"] == 0 and set(m["fit"]["solver"]["tasks"]) == {"topic", "length"}
    assert m["fit"]["solver"]["tasks"]["length"]["n"] == m["tasks"]["length"]["train_labels"]
    assert "solved" in (tmp_path / "txt" / "report.md").read_text()
    preds = tk.predict(tmp_path / "txt", [path], text_column="text", progress=False)
    assert preds[0]["topic_class"] in ["business", "science", "sports", "weather"]
    assert preds[0]["length_class"] in ["long", "short"]


def test_multitask_takes_its_options_once_positional_by_keyword_or_as_a_configuration(fashion_npz, tmp_path):
    import inspect

    from transferkit.errors import ConfigError
    from transferkit.options import MultitaskConfig

    # the job's signature repeats none of MultitaskConfig's fields
    assert list(inspect.signature(tk.multitask).parameters) == ["args", "config", "console", "options"]
    twice = {**spec(fashion_npz, "src"), "tasks": [{"name": "a"}, {"name": "a"}]}
    for call in (lambda: tk.multitask(twice, out=tmp_path / "a"),
                 lambda: tk.multitask(spec=twice, out=tmp_path / "b"),
                 lambda: tk.multitask(config=MultitaskConfig(spec=twice, out=str(tmp_path / "c")))):
        with pytest.raises(ValueError, match="task name 'a' is used twice"):  # the spec was read, checked first
            call()
    with pytest.raises(TypeError, match="spec="):  # the task spec is not config= (that is the MultitaskConfig)
        tk.multitask(config=twice)
    with pytest.raises(ConfigError, match="spec"):
        tk.multitask(out=tmp_path / "d")
    with pytest.raises(ValueError, match="unknown option.*valid:.*weighting"):
        tk.multitask(twice, weightings="dwa")
    with pytest.raises(TypeError, match="not both"):
        tk.multitask(twice, config=MultitaskConfig(spec=twice))
    assert not any((tmp_path / n).exists() for n in "abcd")
    # the keyword arguments override the spec's values
    with pytest.raises(ValueError, match="weighting"):
        tk.multitask(spec(fashion_npz, "src"), weighting="sometimes", out=tmp_path / "e")


def test_cli_multitask_without_a_spec_names_its_flag(capsys, tmp_path):
    assert main(["multitask", "--out", str(tmp_path / "x")]) != 0
    text = " ".join(capsys.readouterr().out.split()) + " ".join(capsys.readouterr().err.split())
    assert "--config" in text and "spec" not in text.replace("spec,", "")
