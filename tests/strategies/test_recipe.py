"""Issue 26: budgets in optimiser steps, the recipes of finetune (LP-FT) and scratch, and what a run records."""

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.backbones.features import extract_features, predict_logits
from transferkit.config import TrainConfig, check_budget, resolve_budget
from transferkit.data import TensorBatches
from transferkit.engine import train as train_with
from transferkit.errors import ConfigError
from transferkit.strategies import get_strategy
from transferkit.strategies.probe_solver import solve_probe


def cfg(**kw):
    return TrainConfig(**{"progress": False, "checkpoints": False, **kw})


def test_epochs_are_derived_from_the_steps_and_the_batches_per_epoch():
    c = resolve_budget(cfg(batch_size=16), n_train=40, steps=10)  # 3 batches per epoch
    assert (c.steps, c.epochs) == (10, 4)
    big = resolve_budget(cfg(batch_size=16), n_train=1000, steps=10, min_epochs=1)  # the floor, or one epoch
    assert (big.steps, big.epochs) == (63, 1)
    given = resolve_budget(cfg(batch_size=16, steps=7), n_train=1000, steps=100)
    assert (given.steps, given.epochs) == (7, 1)
    epochs = resolve_budget(cfg(batch_size=16, epochs=2), n_train=40, steps=100)  # --epochs still means epochs
    assert (epochs.steps, epochs.epochs) == (None, 2)
    warm = resolve_budget(cfg(batch_size=16), n_train=40, steps=100, schedule="cosine", warmup=0.1)
    assert (warm.schedule, warm.warmup_steps) == ("cosine", 10)
    mine = resolve_budget(cfg(batch_size=16, schedule="constant"), n_train=40, steps=100, schedule="cosine",
                          warmup=0.1)
    assert (mine.schedule, mine.warmup_steps) == ("constant", None)  # a schedule given keeps its own warm-up


def test_budget_errors_name_the_options():
    with pytest.raises(ConfigError, match=r"^steps: expected no epochs budget beside it .*give one") as err:
        check_budget(3, 5)
    assert (err.value.field, err.value.got) == ("steps", 5)  # the library names the parameter, never a flag
    with pytest.raises(ValueError, match="^steps: expected at least 1 optimiser step, got 0$"):
        check_budget(None, 0)
    with pytest.raises(ConfigError, match="^steps: expected at least 1"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="^optimizer: expected one of adamw, adam, sgd, got 'lamb'$") as err:
        TrainConfig(optimizer="lamb")
    assert err.value.as_flag().startswith("--optimizer: expected one of adamw")


def test_transfer_refuses_steps_with_epochs_before_loading_anything(tmp_path):
    import transferkit as tk

    with pytest.raises(ConfigError, match="^steps: expected no epochs budget beside it"):
        tk.transfer("no-such-source", out=tmp_path / "r", steps=5, epochs=2)


def test_a_run_without_validation_trains_exactly_the_step_budget_and_records_its_recipe(source, data):
    out = train_with(get_strategy("finetune", head="random"), source, 3, data, None, cfg(steps=5, batch_size=16))
    assert out.fit.steps_run == 5 and not out.fit.stopped_early
    r = out.fit.recipe
    assert (r["budget"], r["steps"], r["epochs"], r["batches_per_epoch"]) == ("steps", 5, 3, 2)
    assert (r["schedule"], r["warmup_steps"], r["head_init"], r["early_stopping"]) == ("cosine", 0, "random", False)
    assert out.fit.to_dict()["recipe"] == r  # what metrics.json keeps


def test_default_finetune_budget_is_its_step_floor(source, data):
    out = train_with(get_strategy("finetune"), source, 3, data, None, cfg(lr=1e-3))
    floor = type(get_strategy("finetune")).default_steps
    assert out.fit.steps_run == floor and out.fit.recipe["steps"] == floor
    assert out.fit.recipe["head_init"] == "probe" and out.fit.recipe["probe_C"] > 0


def test_lpft_head_starts_equal_to_the_solved_probe(source, data):
    c = cfg(steps=1, batch_size=16)
    plan = get_strategy("finetune").plan(source, 3, data, None, c)  # seed_cnn: the head reads conv2, as the probe
    sol = solve_probe(extract_features(plan.model, data), data.y, 3, "auto", seed=c.seed)
    assert torch.allclose(plan.head.weight, sol.weight, atol=1e-6) and torch.allclose(plan.head.bias, sol.bias)
    assert plan.recipe["probe_C"] == sol.record["C"]
    feats = extract_features(plan.model, data)  # with BatchNorm frozen the planned model *is* the probe at step 0
    assert torch.allclose(predict_logits(plan.model, data), feats @ sol.weight.T + sol.bias, atol=1e-4)
    random = get_strategy("finetune", head="random").plan(source, 3, data, None, c)
    assert not torch.allclose(random.head.weight, sol.weight)


def test_finetune_head_option_errors_name_the_valid_values():
    with pytest.raises(ValueError, match="head='zero' is not a head initialisation; valid choices: probe, random"):
        get_strategy("finetune", head="zero")
    with pytest.raises(ValueError, match="backbone_lr .* must be > 0"):
        get_strategy("finetune", backbone_lr=0)
    with pytest.raises(ValueError, match="backbone_lr and lr_decay/group_lrs"):
        get_strategy("finetune", backbone_lr=0.5, lr_decay=0.5)


def separable(n_per_class, seed):
    """Three classes of 28 px images: a bright square in a different corner per class, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = 0.3 * torch.randn(len(y), 1, 28, 28, generator=g)
    for i, c in enumerate(y.tolist()):
        r, q = [(2, 2), (2, 16), (16, 9)][c]
        x[i, 0, r:r + 10, q:q + 10] += 2.0
    return TensorBatches(x, y)


def test_scratch_recipe_learns_a_tiny_separable_task():
    torch.manual_seed(0)
    source = create_backbone("seed_cnn", num_classes=3)
    out = train_with(get_strategy("scratch"), source, 3, separable(8, 0), None, cfg(steps=40))
    r = out.fit.recipe
    assert (r["augment"], r["schedule"], r["lr"], out.fit.steps_run) == ("light", "cosine", 3e-3, 40)
    test = separable(20, 1)
    acc = float((predict_logits(out.model, test).argmax(1) == test.y).float().mean())
    assert acc > 0.6  # chance is 1/3


@pytest.mark.parametrize("command", ["transfer", "compare", "curve"])
def test_cli_steps_flag_and_its_errors(command, tmp_path, capsys):
    from types import SimpleNamespace

    from transferkit.cli.config import parse_generated
    from transferkit.cli.main import main

    # their flags are generated from their configurations (TransferConfig, CompareConfig, CurveConfig)
    args = SimpleNamespace(**parse_generated(command, ["--source", "x", "--steps", "50"]).flat())
    assert args.steps == 50 and args.epochs is None and args.patience is None
    out = str(tmp_path / "o")
    assert main([command, "--source", "no-such-source", "--steps", "5", "--epochs", "2", "--out", out]) == 2
    assert "--steps: expected no epochs budget beside it (epochs=2: two budgets" in capsys.readouterr().out
    assert main([command, "--source", "no-such-source", "--steps", "0", "--out", out]) == 2
    assert "--steps: expected at least 1 optimiser step, got 0" in capsys.readouterr().out


def test_precise_bn_recomputes_the_statistics_over_the_training_data_and_restores_modes():
    from torch import nn

    from transferkit.strategies.scratch import recompute_bn_stats

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5))
    model.eval()
    model[1].momentum = 0.3
    x = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)
    data = TensorBatches(x, torch.zeros(40, dtype=torch.long), mean=[0.5], std=[0.25])
    assert recompute_bn_stats(model, data, batch_size=8) == 40
    with torch.no_grad():
        feats = model[0]((x.float() / 255 - 0.5) / 0.25)
    want = feats.mean((0, 2, 3))
    assert torch.allclose(model[1].running_mean, want, atol=1e-5)  # equal batches: the mean of means is the mean
    assert model[1].momentum == 0.3 and not model.training and not model[2].training


def test_scratch_recomputes_batchnorm_statistics_unless_asked_not_to(data):
    torch.manual_seed(0)
    source = create_backbone("resnet_small", num_classes=0)  # seed_cnn has no BatchNorm
    precise = train_with(get_strategy("scratch"), source, 3, data, None, cfg(steps=3, seed=0))
    running = train_with(get_strategy("scratch", bn_stats="running"), source, 3, data, None, cfg(steps=3, seed=0))
    assert precise.fit.recipe["bn_stats"].startswith("precise") and running.fit.recipe["bn_stats"] == "running averages"
    bn = lambda m: next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))  # noqa: E731
    assert not torch.allclose(bn(precise.model).running_var, bn(running.model).running_var)
    with pytest.raises(ValueError, match="bn_stats: unknown 'exact'; valid: precise, running"):
        train_with(get_strategy("scratch", bn_stats="exact"), source, 3, data, None, cfg(steps=1))


def test_finetune_reads_the_probes_layer_by_default(source, data):
    """LP-FT fine-tunes the model its probe solved: on seed_cnn the head reads conv2 (fc is dropped), as
    linear_probe does; layer="all" keeps every stage; a backbone without a probe layer is left whole."""
    c = cfg(steps=2, batch_size=16)
    plan = get_strategy("finetune").plan(source, 3, data, None, c)
    assert list(plan.model.stages) == ["conv1", "conv2"] and plan.model.cut_at == "conv2"
    assert plan.model.head.in_features == source.stage_dims["conv2"] and plan.recipe["layer"] == "conv2"
    assert "fc" in source.stages  # the source is never modified
    whole = get_strategy("finetune", layer="all").plan(source, 3, data, None, c)
    assert list(whole.model.stages) == ["conv1", "conv2", "fc"] and "layer" not in whole.recipe
    lenet = create_backbone("lenet", num_classes=5)  # no default_probe_layer: its last stage
    assert list(get_strategy("finetune").plan(lenet, 3, data, None, c).model.stages) == list(lenet.stages)
    with pytest.raises(ValueError, match="layer='conv9' is not a stage of seed_cnn; valid: probe, all, conv1, conv2"):
        get_strategy("finetune", layer="conv9").plan(source, 3, data, None, c)
