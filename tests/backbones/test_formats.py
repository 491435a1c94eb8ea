"""Bundle formats: a kind of model registers its own save/check/load/merge; bundle.py knows none of them."""

import ast
import inspect
import json

import pytest
import torch

import transferkit.bundle
from transferkit.backbones import create_backbone
from transferkit.backbones.formats import BundleFormat, bundle_format, known_formats, register_bundle_format
from transferkit.backbones.registry import build_from_config
from transferkit.bundle import BundleError, load_bundle, read_meta, save_bundle


def test_bundle_module_imports_no_strategy_and_no_fusion_internals():
    tree = ast.parse(inspect.getsource(transferkit.bundle))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m and m.startswith(("transferkit.strategies", "transferkit.fusion"))]
    assert {"lora", "fused"} <= set(known_formats())  # transferkit's own two, found as entry points
    assert bundle_format("mobilenet_v2") is None


def _head(model):
    return {k: v for k, v in model.state_dict().items() if k.startswith("head.")}


def _head_only_state(model):
    return _head(model), {"adapter": dict(model.adapter)}


def _head_only_validate(meta):
    if not isinstance(meta["adapter"].get("init_seed"), int):
        raise ValueError("adapter.init_seed must be a whole number")


def _head_only_load(meta, ctx):
    torch.manual_seed(meta["adapter"]["init_seed"])
    model = build_from_config(meta["architecture"])
    ctx.check_weights(_head(model), "head weights")
    model.load_state_dict(ctx.read_weights(), strict=False)
    model.adapter = dict(meta["adapter"])
    return model


HEAD_ONLY = BundleFormat("head_only_test", "a model fully given by a seed and its head (test only)",
                         validate=_head_only_validate, state=_head_only_state, load=_head_only_load)


def test_a_registered_format_saves_checks_and_loads_its_own_kind(tmp_path):
    register_bundle_format(HEAD_ONLY)
    torch.manual_seed(7)
    model = create_backbone("seed_cnn", num_classes=3).eval()
    with torch.no_grad():
        model.head.weight.mul_(3.0)  # the head differs from a fresh build; the rest is the seed's
    model.adapter = {"type": "head_only_test", "init_seed": 7}
    path = save_bundle(model, {"classes": ["a", "b", "c"]}, tmp_path / "b")
    header = json.loads((path / "model.safetensors").read_bytes()[8:8 + int.from_bytes(
        (path / "model.safetensors").read_bytes()[:8], "little")])
    assert {k for k in header if k != "__metadata__"} == {"head.weight", "head.bias"}  # the format's state()
    loaded, meta = load_bundle(path)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(model(x), loaded.eval()(x)) and meta["adapter"]["init_seed"] == 7

    bad = json.loads((path / "transferkit.json").read_text())
    bad["adapter"]["init_seed"] = "seven"
    (path / "transferkit.json").write_text(json.dumps(bad))
    with pytest.raises(BundleError, match="adapter.init_seed must be a whole number"):  # the format's validate()
        read_meta(path)


def test_an_adapter_of_no_installed_format_is_refused_by_name(tmp_path):
    model = create_backbone("seed_cnn", num_classes=2)
    path = save_bundle(model, {"classes": ["x", "y"]}, tmp_path / "b")
    meta = json.loads((path / "transferkit.json").read_text())
    meta["adapter"] = {"type": "prefix_tuning"}
    (path / "transferkit.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"adapter.type must be an installed adapter format \(.*lora.*\), got "
                                          r"'prefix_tuning'"):
        load_bundle(path)
    model.adapter = {"type": "prefix_tuning"}
    with pytest.raises(BundleError, match="no bundle format of that name is installed"):
        save_bundle(model, {"classes": ["x", "y"]}, tmp_path / "c")
