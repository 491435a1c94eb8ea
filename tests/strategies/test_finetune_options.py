"""finetune's freezing by pattern, BatchNorm policy, discriminative learning rates and regularisers."""

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainConfig
from transferkit.engine import train as train_with
from transferkit.regularizers import DELTA, L2SP, BatchSpectralShrinkage
from transferkit.strategies import get_strategy, param_group_lrs

CFG = TrainConfig(epochs=1, batch_size=16, lr=1e-3, progress=False, checkpoints=False, patience=None)


def plan(source, data, **options):
    """The plan over seed_cnn's every stage (``layer="all"``: these tests are about groups, fc included)."""
    return get_strategy("finetune", **{"layer": "all", **options}).plan(source, 3, data, None, CFG)


def lrs(p):
    return [(g["name"], g["lr"]) for g in p.param_groups]


def test_default_recipe_backbone_at_a_tenth_of_the_head_rate_head_from_the_probe(source, data):
    # issue 26: the default is LP-FT with the backbone at backbone_lr x the head's rate (was: one group, random head)
    p = plan(source, data)
    assert p.options == {"layer": "all", "freeze": 0}
    assert p.param_groups[0].keys() == {"params", "lr", "name"} and lrs(p) == [("backbone", 1e-4), ("head", 1e-3)]
    assert sum(len(g["params"]) for g in p.param_groups) == len(list(p.model.parameters()))
    assert p.loss_terms == [] and p.finalize is None
    assert p.recipe["head_init"] == "probe" and p.recipe["backbone_lr"] == 0.1 and p.recipe["probe_C"] > 0
    assert plan(source, data, freeze=2, bn="train").options == {"layer": "all", "freeze": 2, "bn": "train"}
    assert lrs(plan(source, data, head="random", backbone_lr=1.0)) == [("backbone", 1e-3), ("head", 1e-3)]
    assert plan(source, data, head="random").recipe["head_init"] == "random"


def test_layerwise_decay_and_explicit_rates(source, data):
    assert lrs(plan(source, data, lr_decay=0.5)) == [("conv1", 1.25e-4), ("conv2", 2.5e-4), ("fc", 5e-4),
                                                     ("head", 1e-3)]
    p = plan(source, data, lr_decay=0.5, freeze=1, group_lrs={"fc": 0.1})
    assert lrs(p) == [("conv2", 2.5e-4), ("fc", 0.1), ("head", 1e-3)]  # frozen conv1 is in no group
    assert p.options == {"layer": "all", "freeze": 1, "lr_decay": 0.5, "group_lrs": {"fc": 0.1}}
    assert lrs(plan(source, data, group_lrs="conv1=1e-5, head=0.01")) == [
        ("conv1", 1e-5), ("conv2", 1e-3), ("fc", 1e-3), ("head", 0.01)]
    assert sum(len(g["params"]) for g in plan(source, data, lr_decay=0.9).param_groups) == 8


def test_group_rate_errors_name_the_option_and_the_valid_groups(source, data):
    with pytest.raises(ValueError, match=r"unknown group\(s\) \['conv9'\]; valid groups of seed_cnn: conv1, conv2, "
                                         r"fc, head"):
        plan(source, data, group_lrs={"conv9": 1e-4})
    with pytest.raises(ValueError, match="group 'conv1' is frozen"):
        plan(source, data, freeze=1, group_lrs={"conv1": 1e-4})
    for bad in (0, -0.5, "fast", True):
        with pytest.raises(ValueError, match="lr_decay must be a positive number"):
            get_strategy("finetune", lr_decay=bad)
    with pytest.raises(ValueError, match="must be positive"):
        get_strategy("finetune", group_lrs={"fc": 0})
    with pytest.raises(ValueError, match="expected 'group=rate'"):
        get_strategy("finetune", group_lrs="fc:0.1")
    with pytest.raises(ValueError, match="lr_decay must be a positive number"):
        param_group_lrs(source, 1e-3, decay=-1)


def test_freeze_pattern_by_group_module_and_parameter_name(source, data):
    p = plan(source, data, freeze_pattern="conv1")
    m = p.model
    assert not m.stages.conv1[0].weight.requires_grad and m.stages.conv2[0].weight.requires_grad
    assert m.stages.conv1 in p.eval_modules
    p = plan(source, data, freeze_pattern=["stages.conv2.*", "*.bias"])
    frozen = {n for n, q in p.model.named_parameters() if not q.requires_grad}
    assert frozen == {"stages.conv1.0.bias", "stages.conv2.0.weight", "stages.conv2.0.bias", "stages.fc.0.bias",
                      "head.bias"}
    assert p.trainable_params == sum(q.numel() for n, q in p.model.named_parameters() if n not in frozen)
    p = plan(source, data, freeze=1, freeze_pattern="fc")
    assert [g.name for g in p.model.param_groups() if g.params[0].requires_grad] == ["conv2", "head"]


def test_freeze_pattern_errors(source, data):
    with pytest.raises(ValueError, match=r"pattern 'conv9\*' matches no parameter group.*groups: conv1, conv2, fc, "
                                         r"head; modules: stages.conv1.0, stages.conv2.0, stages.fc.0, head"):
        plan(source, data, freeze_pattern="conv9*")
    with pytest.raises(ValueError, match=r"\['head\*'\] freeze the whole head"):
        plan(source, data, freeze_pattern="head*")
    with pytest.raises(ValueError, match="freeze_pattern is empty"):
        get_strategy("finetune", freeze_pattern=" , ")
    with pytest.raises(ValueError, match=r"freeze=4: .* between 0 and 3"):
        plan(source, data, freeze=4, freeze_pattern="conv1")


def test_bn_frozen_keeps_statistics_and_affine_of_the_source(data):
    torch.manual_seed(0)
    source = create_backbone("resnet_small", num_classes=5)
    with pytest.raises(ValueError, match="bn='eval' is not a BatchNorm policy; valid choices: frozen, train"):
        get_strategy("finetune", bn="eval")
    out = train_with(get_strategy("finetune", bn="frozen"), source, 3, data, None, CFG)
    assert out.options == {"freeze": 0}  # frozen is the default (issue 26)
    bn, bn0 = out.model.stages.stem[1], source.stages.stem[1]
    assert torch.equal(bn.running_mean, bn0.running_mean) and torch.equal(bn.weight, bn0.weight)
    assert not torch.equal(out.model.stages.stem[0].weight, source.stages.stem[0].weight)  # convolutions train
    bns = sum(p.numel() for m in out.model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert out.trainable_params == out.model.num_parameters() - bns
    trained_bn = train_with(get_strategy("finetune", bn="train"), source, 3, data, None, CFG)
    assert not torch.equal(trained_bn.model.stages.stem[1].running_mean, bn0.running_mean)  # bn=train updates them
    assert plan(create_backbone("seed_cnn", num_classes=5), data, bn="frozen").eval_modules == []  # no BN: no-op


def test_regularizer_options_are_validated_before_training():
    with pytest.raises(ValueError, match="regularizer 'l2-sp' is unknown; valid choices: bss, delta, l2sp"):
        get_strategy("finetune", regularizer="l2-sp")
    with pytest.raises(ValueError, match=r"reg_alpha needs regularizer= \(valid choices: bss, delta, l2sp\)"):
        get_strategy("finetune", reg_alpha=0.1)
    with pytest.raises(ValueError, match="reg_beta does not apply to regularizer 'bss'; its options: reg_alpha, reg_k"):
        get_strategy("finetune", regularizer="bss", reg_beta=0.1)
    with pytest.raises(ValueError, match="reg_alpha: l2sp: alpha must be a number ≥ 0, got -1"):
        get_strategy("finetune", regularizer="l2sp", reg_alpha=-1)
    with pytest.raises(ValueError, match="bss: eta must be a number ≥ 0, got 'strong'"):
        get_strategy("finetune", regularizer="bss", reg_alpha="strong")
    with pytest.raises(ValueError, match="reg_attention: delta: attention must be true or false"):
        get_strategy("finetune", regularizer="delta", reg_attention="no")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        get_strategy("finetune", regularizer="bss", reg_k=0)


def test_regularizers_are_attached_as_loss_terms(source, data):
    p = plan(source, data, regularizer="l2sp", reg_alpha=0.1)
    (reg,) = p.loss_terms
    assert isinstance(reg, L2SP) and reg.alpha == 0.1 and reg.beta == 0.01
    assert all(g["weight_decay"] == 0.0 for g in p.param_groups)  # L2-SP replaces weight decay
    assert p.options == {"layer": "all", "freeze": 0, "regularizer": "l2sp", "reg_alpha": 0.1}
    x, y = data.x[:4], data.y[:4]
    assert reg(p.model, x, y, p.model(x)).item() == pytest.approx(0.005 * p.model.head.weight.pow(2).sum().item()
                                                                  + 0.005 * p.model.head.bias.pow(2).sum().item())
    p = plan(source, data, regularizer="bss", reg_k=2)
    assert isinstance(p.loss_terms[0], BatchSpectralShrinkage) and p.loss_terms[0].k == 2
    assert "weight_decay" not in p.param_groups[0]
    p = plan(source, data, regularizer="delta", reg_layers="conv2,fc")
    reg = p.loss_terms[0]
    assert isinstance(reg, DELTA) and set(reg.weights) == {"conv2", "fc"} and reg.weights["fc"].shape == (64,)
    assert p.finalize() is p.model and not any(s._forward_hooks for s in p.model.stages.values())


@pytest.mark.parametrize("options", [{"regularizer": "delta", "reg_attention": False},
                                     {"regularizer": "bss"}, {"regularizer": "l2sp", "lr_decay": 0.5}])
def test_training_with_a_regularizer_runs_and_leaves_source_untouched(source, data, options):
    before = {k: v.clone() for k, v in source.state_dict().items()}
    out = train_with(get_strategy("finetune", **options), source, 3, data, None, CFG)
    assert not torch.equal(out.model.stages.conv1[0].weight, before["stages.conv1.0.weight"])
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())
    assert not out.model.head._forward_pre_hooks and not any(s._forward_hooks for s in out.model.stages.values())
    assert out.model(data.x[:2]).shape == (2, 3)
    reg = [row["reg_loss"] for row in out.fit.history]  # the regulariser's share of the loss is logged
    assert reg and all(0 <= r < row["train_loss"] for r, row in zip(reg, out.fit.history, strict=True))
