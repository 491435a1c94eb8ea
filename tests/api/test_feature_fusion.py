"""Feature fusion as a source: ``fuse:MODE:A+B`` trains with every strategy and gives an ordinary bundle."""

import json

import pytest

import transferkit as tk
from transferkit.backbones import FeatureFusionBackbone
from transferkit.source_loading import load_source, parse_fused_source


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("ff")
    tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=3, seed=0, out=root / "cnn", progress=False)
    tk.pretrain(data="digits", classes="0-4", backbone="lenet", epochs=3, seed=0, out=root / "lenet", progress=False)
    return root


@pytest.mark.parametrize("strategy,spec", [("linear_probe", "concat"), ("finetune", "sum@16"),
                                           ("scratch", "max@16")])
def test_fused_source_trains_with_each_strategy(sources, tmp_path, strategy, spec):
    src = f"fuse:{spec}:{sources / 'cnn'}+{sources / 'lenet'}"
    res = tk.transfer(src, "digits", classes="5-9", labels_per_class=10, strategy=strategy, epochs=4, seed=0,
                      out=tmp_path / "run", progress=False,
                      options={"lr_decay": 0.5} if strategy == "finetune" else None)
    assert res.metrics["accuracy"] > 0.3  # five classes: chance is 0.2
    model, meta = tk.load_bundle(tmp_path / "run")
    assert isinstance(model, FeatureFusionBackbone) and model.mode == spec.split("@")[0]
    assert meta["lineage"]["source_lineage"]["fusion"]["members"] == [str(sources / "cnn"), str(sources / "lenet")]
    ev = tk.evaluate(tmp_path / "run", "digits", classes="5-9")
    assert ev["accuracy"] == pytest.approx(res.metrics["accuracy"], abs=1e-6)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["strategy"] == strategy


def test_fused_linear_probe_keeps_the_members_and_finetune_changes_them(sources, tmp_path):
    src = f"fuse:concat:{sources / 'cnn'}+{sources / 'lenet'}"
    before, _ = load_source(src)
    kw = dict(data="digits", classes="5-9", labels_per_class=10, epochs=2, seed=0, progress=False)
    probe = tk.transfer(src, strategy="linear_probe", out=tmp_path / "p", **kw).model
    tuned = tk.transfer(src, strategy="finetune", out=tmp_path / "f", **kw).model
    ref = before.members[0].state_dict()
    k = next(iter(ref))
    assert (probe.members[0].state_dict()[k] == ref[k]).all()
    assert not (tuned.members[0].state_dict()[k] == ref[k]).all()


def test_parse_fused_source_and_bad_specs(sources):
    assert parse_fused_source("fuse:a+b") == ("concat", None, ["a", "b"])
    assert parse_fused_source("fuse:sum@64:a+timm:resnet18") == ("sum", 64, ["a", "timm:resnet18"])
    assert parse_fused_source("fuse:timm:resnet18+b") == ("concat", None, ["timm:resnet18", "b"])
    with pytest.raises(ValueError, match="unknown feature-fusion mode 'attn'; valid modes: concat, sum"):
        parse_fused_source("fuse:attn:a+b")
    with pytest.raises(ValueError, match="width 'wide' is not an integer"):
        parse_fused_source("fuse:sum@wide:a+b")
    with pytest.raises(ValueError, match="at least two members"):
        parse_fused_source("fuse:concat:a")
    with pytest.raises(ValueError, match="cannot itself be a fusion"):
        parse_fused_source("fuse:a+fuse:b")
    with pytest.raises(ValueError, match="needs a common projection width"):
        load_source(f"fuse:product:{sources / 'cnn'}+{sources / 'lenet'}")
    with pytest.raises(ValueError, match="weights: expected one pretrained backbone as the source, not a fusion"):
        load_source(f"fuse:{sources / 'cnn'}+{sources / 'lenet'}", weights="w.safetensors")
