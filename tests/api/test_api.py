"""The Python API does what the CLI does, on scikit-learn's digits (bundled, always available)."""

import json

import pytest

import transferkit as tk


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=4, seed=0, out=out, progress=False)


def test_pretrain_learns_the_source_task(source):
    assert source.metrics["accuracy"] > 0.8 and source.metrics["split"] == "test"
    assert (source.run_dir / "bundle" / "model.safetensors").is_file()


def test_transfer_is_deterministic_and_beats_chance(source, tmp_path):
    kw = dict(source=source.run_dir, data="digits", classes="5-9", labels_per_class=5, strategy="linear_probe",
              seed=1, epochs=20, progress=False)
    a = tk.transfer(out=tmp_path / "a", **kw)
    b = tk.transfer(out=tmp_path / "b", **kw)
    assert a.metrics["accuracy"] == b.metrics["accuracy"] and a.metrics["accuracy"] > 0.5
    model, meta = tk.load_bundle(tmp_path / "a")
    assert meta["classes"] == ["5", "6", "7", "8", "9"] and model.arch == "seed_cnn"


def test_a_silent_run_prints_nothing(source, tmp_path, capfd):
    kw = dict(source=source.run_dir, data="digits", classes="5-9", labels_per_class=5, strategy="finetune",
              epochs=1, progress=False)
    capfd.readouterr()
    quiet = tk.transfer(out=tmp_path / "quiet", console=tk.silent(), **kw)
    assert capfd.readouterr() == ("", "")
    loud = tk.transfer(out=tmp_path / "loud", **kw)  # the default console: the metrics table and the report's path
    assert "report:" in capfd.readouterr().out
    assert quiet.metrics["accuracy"] == loud.metrics["accuracy"] and (tmp_path / "quiet" / "report.md").is_file()


def test_channel_mismatch_is_an_error_naming_both(source, tmp_path):
    import numpy as np

    p = tmp_path / "rgb.npz"
    np.savez(p, x=np.zeros((20, 28, 28, 3), np.uint8), y=np.arange(20) % 2)
    with pytest.raises(ValueError, match="has 3 input channels but the model expects 1"):
        tk.transfer(source=source.run_dir, data=f"npz:{p}", strategy="finetune", out=tmp_path / "x", progress=False)


def test_compare_reports_mean_and_std_per_cell(source, tmp_path):
    res = tk.compare(source.run_dir, "digits", "5-9", labels_per_class=(3,), seeds=(0, 1), out=tmp_path / "cmp",
                     epochs=5)
    summary = res.metrics["summary"]
    assert {r["strategy"] for r in summary} == {"scratch", "linear_probe", "finetune"}
    assert all(r["seeds"] == 2 and r["accuracy_std"] >= 0 for r in summary)
    assert len(res.metrics["cells"]) == 6 and len(res.metrics["findings"]) == 2
    saved = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(summary))
    assert (tmp_path / "cmp" / "comparison.png").is_file() and "± " in (tmp_path / "cmp" / "report.md").read_text()


def test_second_linear_probe_hits_the_feature_cache(source, tmp_path):
    kw = dict(source=source.run_dir, data="digits", classes="5-9", labels_per_class=5, strategy="feature",
              seed=2, epochs=5, progress=False)
    first = tk.transfer(out=tmp_path / "p1", **kw)
    second = tk.transfer(out=tmp_path / "p2", **kw)
    assert first.metrics["feature_cache"] == "miss" and second.metrics["feature_cache"] == "hit"
    assert first.metrics["accuracy"] == second.metrics["accuracy"]


def test_imagenet_backbone_as_source_at_small_size(tmp_path):
    from transferkit.backbones import backbone_info

    if not backbone_info("mobilenet_v2").weights_available():
        pytest.skip("MobileNetV2 weights package not installed")
    res = tk.transfer(source="mobilenet_v2", image_size=32, data="digits", classes="0-4", labels_per_class=5,
                      strategy="linear_probe", epochs=5, out=tmp_path / "mb", progress=False)
    assert res.metrics["accuracy"] > 0.4  # 5 classes, chance 0.2
    model, meta = tk.load_bundle(tmp_path / "mb")
    assert meta["input_spec"]["size"] == [32, 32] and meta["input_spec"]["channels"] == 3
    assert meta["lineage"]["source"] == "mobilenet_v2"


def test_mini_demo_writes_a_readable_report(tmp_path):
    from ..conftest import FMNIST_DIR

    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed")
    res = tk.demo(out=tmp_path / "demo", seeds=2, labels_per_class=(5,), source_epochs=1, steps=10, imagenet=False)
    text = (tmp_path / "demo" / "report.md").read_text()
    assert "linear_probe" in text and "± " in text and "split_task/comparison.png" in text
    assert {r["strategy"] for r in res.metrics["split_task"]["summary"]} == {"scratch", "linear_probe", "finetune"}
    assert (tmp_path / "demo" / "source" / "bundle" / "model.safetensors").is_file()


def test_timm_source_with_a_local_weights_file(tmp_path):
    import safetensors.torch
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    safetensors.torch.save_file(net.state_dict(), str(tmp_path / "r18.safetensors"))
    res = tk.transfer(source="timm:resnet18", weights=tmp_path / "r18.safetensors", image_size=32, data="digits",
                      classes="0-2", labels_per_class=3, strategy="linear_probe", epochs=2, out=tmp_path / "t",
                      progress=False)
    assert res.metrics["n_train"] == 9 and res.model.feature_dim == 512
    model, meta = tk.load_bundle(tmp_path / "t")  # rebuilt without the weights file: the bundle has them
    assert model.arch == "timm:resnet18" and meta["classes"] == ["0", "1", "2"]


def test_weights_or_size_with_a_bundle_source_is_refused(source, tmp_path):
    with pytest.raises(ValueError, match="is a bundle: it has its own weights"):
        tk.transfer(source=source.run_dir, weights="x.safetensors", data="digits", out=tmp_path / "x")
