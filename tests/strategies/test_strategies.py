import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainConfig
from transferkit.data import get_dataset, labelled_budget_split, select_classes, to_batches
from transferkit.engine import train as train_with
from transferkit.strategies import get_strategy, list_strategies, resolve_strategy_name


@pytest.fixture(scope="module")
def task():
    source = create_backbone("seed_cnn", num_classes=5)
    ds = select_classes(get_dataset("digits", "train"), [5, 6, 7, 8, 9])
    train, val = labelled_budget_split(ds, 10, None, 0.1, seed=0)
    return source, to_batches(train, source.input_spec), to_batches(val, source.input_spec)


CFG = TrainConfig(epochs=4, batch_size=16, progress=False, checkpoints=False, patience=None)


def snapshot(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_aliases_resolve_and_unknown_lists_valid():
    assert resolve_strategy_name("parameter") == "finetune"
    assert resolve_strategy_name("feature") == "linear_probe"
    assert resolve_strategy_name("structure") == "scratch"
    with pytest.raises(ValueError, match=r"unknown strategy 'magic'; valid strategies: finetune \(alias parameter\)"):
        get_strategy("magic")
    with pytest.raises(ValueError, match="has no option"):
        get_strategy("scratch", freeze=1)
    assert [c.name for c in list_strategies()] == ["finetune", "linear_probe", "lora", "scratch"]
    assert resolve_strategy_name("adapters") == "lora"


def test_finetune_freeze_keeps_first_groups_and_leaves_source_untouched(task):
    source, train, val = task
    before = snapshot(source)
    out = train_with(get_strategy("finetune", layer="all", freeze=2), source, 5, train, val, CFG)
    after = out.model.state_dict()
    for k in ("stages.conv1.0.weight", "stages.conv2.0.weight"):
        assert torch.equal(after[k], before[k])
    assert not torch.equal(after["stages.fc.0.weight"], before["stages.fc.0.weight"])
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())  # source unchanged
    assert out.trainable_params == out.model.num_parameters() - sum(
        p.numel() for n, p in out.model.named_parameters() if n.startswith(("stages.conv1", "stages.conv2")))


def test_finetune_rejects_freezing_the_head(task):
    source, train, val = task
    with pytest.raises(ValueError, match=r"freeze=4: seed_cnn has 4 parameter groups .* between 0 and 3"):
        train_with(get_strategy("finetune", layer="all", freeze=4), source, 5, train, val, CFG)


def test_linear_probe_trains_only_a_linear_head_on_flatten_features(task):
    source, train, val = task
    out = train_with(get_strategy("linear_probe"), source, 5, train, val, CFG)
    m = out.model
    assert list(m.stages) == ["conv1", "conv2"] and m.head.in_features == 1600
    assert torch.equal(m.stages.conv2[0].weight, source.stages.conv2[0].weight)
    assert out.trainable_params == 1600 * 5 + 5
    assert out.options["layer"] == "conv2"
    assert m(train.__getitems__([0, 1])[0]).shape == (2, 5)


def test_scratch_reinitialises_with_the_seed(task):
    source, train, val = task
    a = train_with(get_strategy("scratch"), source, 5, train, val, CFG)
    b = train_with(get_strategy("scratch"), source, 5, train, val, CFG)
    assert not torch.equal(a.model.stages.conv1[0].weight, source.stages.conv1[0].weight)
    assert torch.equal(a.model.stages.conv1[0].weight, b.model.stages.conv1[0].weight)  # same seed, same run
