"""Issue-4 additions through the API and CLI: head init from the source head, class maps, lr-find, training
options recorded in the run."""

import json

import pytest
import yaml

import transferkit as tk
from transferkit.cli.main import main


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("toolbox") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=2, seed=0, out=out, progress=False)


def test_shared_classes_start_from_the_source_head_and_the_report_says_so(source, tmp_path):
    kw = dict(source=source.run_dir, data="digits", classes="3,4,5,6", labels_per_class=5, epochs=1,
              progress=False)
    # the whole network (layer=all): the new head reads fc, the features the source head was trained on
    run = tk.transfer(out=tmp_path / "a", strategy="finetune", options={"head": "random", "layer": "all"}, **kw)
    assert run.metrics["head_init"]["applied"] and run.metrics["head_init"]["matched"] == {"3": "3", "4": "4"}
    assert "head rows from the source head | 2 of 4 classes (3 ← 3, 4 ← 4)" in (run.run_dir / "report.md").read_text()
    lpft = tk.transfer(out=tmp_path / "l", strategy="finetune", **kw)  # default LP-FT: the solved probe is kept
    assert not lpft.metrics["head_init"]["applied"] and "LP-FT" in lpft.metrics["head_init"]["reason"]
    assert "not applied: the head starts from the linear probe" in (lpft.run_dir / "report.md").read_text()
    probe = tk.transfer(out=tmp_path / "p", strategy="linear_probe", **kw)  # probes conv2: other features
    assert not probe.metrics["head_init"]["applied"] and "different features" in probe.metrics["head_init"]["reason"]
    on_conv2 = tk.transfer(out=tmp_path / "r", strategy="finetune", options={"head": "random"}, **kw)  # layer=probe
    assert not on_conv2.metrics["head_init"]["applied"]
    assert "different features" in on_conv2.metrics["head_init"]["reason"]
    off = tk.transfer(out=tmp_path / "b", strategy="finetune", head_init=False, **kw)
    assert off.metrics["head_init"] is None
    scratch = tk.transfer(out=tmp_path / "c", strategy="scratch", **kw)
    assert scratch.metrics["head_init"] is None  # a scratch model has no source head to start from


def test_class_map_renames_and_merges_target_classes(source, tmp_path):
    cmap = tmp_path / "map.yaml"
    cmap.write_text("'7': '0'\n'8': odd\n'9': odd\n")
    run = tk.transfer(source=source.run_dir, data="digits", classes="7,8,9", labels_per_class=5, epochs=1,
                      strategy="linear_probe", class_map=cmap, out=tmp_path / "m", progress=False)
    _, meta = tk.load_bundle(run.run_dir)
    assert meta["classes"] == ["0", "odd"] and meta["lineage"]["class_map"] == {"7": "0", "8": "odd", "9": "odd"}
    assert run.metrics["head_init"]["matched"] == {"0": "0"} and not run.metrics["head_init"]["applied"]
    again = tk.evaluate(run.run_dir, data="digits", classes="7,8,9", split="test")  # the same map is applied
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"]) and again["n"] == run.metrics["n"]
    with pytest.raises(ValueError, match="'5' is not a class"):
        tk.transfer(source=source.run_dir, data="digits", classes="7,8", class_map={"5": "x"}, out=tmp_path / "n",
                    progress=False)
    assert not (tmp_path / "n").exists()


def test_training_options_are_recorded_in_run_and_bundle(source, tmp_path):
    run = tk.transfer(source=source.run_dir, data="digits", classes="5-9", labels_per_class=5, epochs=2,
                      augment="light", mixup=0.2, schedule="cosine", class_weight="balanced", out=tmp_path / "r",
                      progress=False)
    cfg = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert (cfg["augment"], cfg["mixup"], cfg["schedule"], cfg["class_weight"]) == ("light", 0.2, "cosine", "balanced")
    assert json.loads((run.run_dir / "bundle" / "transferkit.json").read_text())["config"]["augment"] == "light"


def test_augment_with_a_linear_probe_fails_before_feature_extraction(source, tmp_path):
    with pytest.raises(ValueError, match="augment=light: augmentation needs image batches"):
        tk.transfer(source=source.run_dir, data="digits", classes="5-9", strategy="linear_probe", augment="light",
                    out=tmp_path / "x", progress=False)


def test_lr_find_from_the_cli_writes_plot_and_suggestion(source, tmp_path):
    out = tmp_path / "lr"
    assert main(["lr-find", "--source", str(source.run_dir), "--data", "digits", "--classes", "5-9", "--steps", "20",
                 "--option", "lr_decay=0.5", "--batch-size", "16", "--out", str(out)]) == 0
    res = json.loads((out / "lr_find.json").read_text())
    assert len(res["lrs"]) == len(res["losses"]) > 5 and res["lrs"] == sorted(res["lrs"])
    assert res["suggestion"] is None or res["lrs"][0] <= res["suggestion"] <= res["lrs"][-1]
    assert (out / "lr_find.png").stat().st_size > 1000
    assert main(["lr-find", "--source", str(source.run_dir), "--data", "digits", "--min-lr", "1", "--max-lr", "0.1",
                 "--out", str(tmp_path / "bad")]) == 2


def test_cli_transfer_with_lora_then_merge(source, tmp_path, capsys):
    run = tmp_path / "lora"
    assert main(["transfer", "--source", str(source.run_dir), "--data", "digits", "--classes", "5-9",
                 "--labels-per-class", "5", "--strategy", "lora", "--option", "r=2", "--epochs", "1",
                 "--no-progress", "--out", str(run)]) == 0
    assert main(["merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    assert tk.load_bundle(tmp_path / "merged")[1]["lineage"]["merged_from"]
    assert main(["transfer", "--source", str(source.run_dir), "--data", "digits", "--strategy", "lora",
                 "--option", "target=nothing*", "--epochs", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "target pattern 'nothing*' matches no module" in capsys.readouterr().out
