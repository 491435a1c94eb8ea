"""LoRA through peft: what trains, bad targets, the adapter-only bundle, reload on the source, merge."""

import pytest
import torch

import transferkit as tk
from transferkit.backbones import create_backbone
from transferkit.bundle import BundleError, load_bundle, save_bundle
from transferkit.config import TrainConfig
from transferkit.engine import train as train_with
from transferkit.strategies import get_strategy
from transferkit.strategies.lora import lora_targets

CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, progress=False, checkpoints=False, patience=None)


def test_only_adapters_and_head_train_and_the_base_stays(source, data):
    t = train_with(get_strategy("lora", r=4), source, 3, data, None, CFG)
    names = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    base = {k.replace(".base_layer", ""): v for k, v in t.model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(base[k], v) for k, v in source.state_dict().items() if not k.startswith("head."))
    lora_b = [p for n, p in t.model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero; training moved it
    assert t.trainable_params < 0.2 * source.num_parameters()
    assert t.options["targets"] == 3 and t.options["r"] == 4 and t.options["alpha"] == 4


def test_auto_targets_skip_depthwise_convolutions_and_the_head():
    m = create_backbone("mobilenet_v2", num_classes=10, img_size=64)
    names = lora_targets(m)
    mods = dict(m.named_modules())
    assert names and all(mods[n].groups == 1 for n in names if isinstance(mods[n], torch.nn.Conv2d))
    assert not any(n.startswith("head") for n in names)
    assert lora_targets(m, "stages.conv_head.*") == ["stages.conv_head.0"]


@pytest.mark.parametrize("options, message", [
    ({"target": "stages.nothing*"}, "matches no module.*adaptable modules"),
    ({"target": "head"}, "matches only modules LoRA cannot adapt"),
    ({"r": 0}, "r \\(the adapter rank\\)"),
    ({"bn": "sometimes"}, "valid choices: frozen"),
    ({"dropout": 1.5}, "dropout"),
    ({"rank": 4}, "valid options: r, alpha"),
])
def test_bad_lora_options_fail_before_training(source, data, options, message):
    with pytest.raises(ValueError, match=message):
        get_strategy("lora", **options).plan(source, 3, data, None, CFG)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    src = create_backbone("seed_cnn", num_classes=5)
    save_bundle(src, {"classes": list("abcde"), "lineage": {}}, root / "source")
    run = tk.transfer(source=root / "source", data="digits", classes="5-9", labels_per_class=10, strategy="lora",
                      epochs=3, lr=1e-2, out=root / "run", progress=False)
    return root, run


def test_bundle_holds_only_adapters_and_head_and_reloads_on_its_source(lora_run):
    root, run = lora_run
    import safetensors.torch

    keys = safetensors.torch.load_file(str(run.run_dir / "bundle" / "model.safetensors")).keys()
    assert keys and all("lora_" in k or k.startswith("head.") for k in keys)
    model, meta = load_bundle(run.run_dir)
    assert meta["adapter"]["r"] == 8 and meta["adapter"]["base"]["weights_hash"]
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), run.model.eval()(x), atol=1e-6)
    assert tk.evaluate(run.run_dir, data="digits", classes="5-9", split="test", console=None)["accuracy"] \
        == pytest.approx(run.metrics["accuracy"])


def test_merge_gives_a_plain_bundle_with_the_same_predictions(lora_run, tmp_path):
    root, run = lora_run
    merged = tk.merge(run.run_dir, tmp_path / "merged")
    plain, meta = load_bundle(merged.run_dir)
    assert "adapter" not in meta and meta["lineage"]["merged_from"]
    assert not any("lora_" in k for k in plain.state_dict())
    adapter_model, _ = load_bundle(run.run_dir)
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        a, b = adapter_model(x), plain(x)
    assert torch.allclose(a, b, atol=1e-5) and torch.equal(a.argmax(1), b.argmax(1))
    with pytest.raises(BundleError, match="not a LoRA bundle"):
        tk.merge(merged.run_dir, tmp_path / "again")


def test_adapters_refuse_a_source_with_other_weights(lora_run, tmp_path):
    root, run = lora_run
    import shutil

    shutil.copytree(root / "source", tmp_path / "source")
    shutil.copytree(run.run_dir, tmp_path / "run")
    torch.manual_seed(1)
    save_bundle(create_backbone("seed_cnn", num_classes=5), {"classes": list("abcde")}, root / "source")
    try:
        with pytest.raises(BundleError, match="other weights"):
            load_bundle(run.run_dir)
    finally:
        shutil.rmtree(root / "source")
        shutil.copytree(tmp_path / "source", root / "source")
    shutil.rmtree(root / "source")
    try:
        with pytest.raises(BundleError, match="adapters only"):
            load_bundle(run.run_dir)
    finally:
        shutil.copytree(tmp_path / "source", root / "source")
