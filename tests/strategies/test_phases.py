"""Gradual unfreezing, the two-phase preset and learning-rate schedules: what trains when, at which rate."""

import math

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.config import TrainConfig
from transferkit.engine import train as train_with
from transferkit.engine.module import lr_multiplier
from transferkit.strategies import get_strategy


def cfg(epochs, **kw):
    return TrainConfig(epochs=epochs, batch_size=16, lr=1e-3, progress=False, checkpoints=False, patience=None, **kw)


def changed(source, model):
    """Names of the source's parameter groups whose weights changed in the trained model."""
    old = source.state_dict()
    return {k.split(".")[1] for k, v in model.state_dict().items()
            if k.startswith("stages.") and not torch.equal(v, old[k])}


def test_two_phase_trains_only_the_head_first(source, data):
    s = get_strategy("finetune", layer="all", preset="two_phase", head_epochs=2)
    seen = []  # conv1's weight sum at every training step (2 steps per epoch)

    class Record:
        def __call__(self, model, x, y, logits):
            seen.append(float(model.stages.conv1[0].weight.detach().sum()))
            return logits.sum() * 0

    plan = s.plan(source, 3, data, None, cfg(3, schedule="constant"))  # the phase factor alone, no cosine
    plan.loss_terms = [Record()]
    from transferkit.engine.trainer import fit

    result = fit(plan.model, plan.param_groups, plan.train, None, plan.cfg, None, plan.eval_modules,
                 plan.loss_terms, plan.phases)
    assert len(set(seen[:5])) == 1 and len(set(seen[4:])) > 1  # unchanged through epoch 1, moving in epoch 2
    assert changed(source, plan.model) == {"conv1", "conv2", "fc"}
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] == pytest.approx(1e-3) and lrs[2] == pytest.approx(1e-4)  # phase 2 at phase2_lr = 0.1×
    assert s.options["preset"] == "two_phase" and s.recorded_options()["head_epochs"] == 2


def test_gradual_unfreezing_releases_one_group_per_step_from_the_top(source, data):
    s = get_strategy("finetune", layer="all", unfreeze_every=1)
    assert changed(source, train_with(s, source, 3, data, None, cfg(2)).model) == {"fc"}
    assert changed(source, train_with(s, source, 3, data, None, cfg(3)).model) == {"fc", "conv2"}
    # a group frozen by freeze= never unfreezes
    s = get_strategy("finetune", layer="all", unfreeze_every=1, freeze=1)
    assert changed(source, train_with(s, source, 3, data, None, cfg(4)).model) == {"fc", "conv2"}


def test_held_groups_run_in_eval_mode_until_released(data):
    torch.manual_seed(0)
    src = create_backbone("resnet_small", num_classes=4)
    p = get_strategy("finetune", preset="two_phase", head_epochs=1).plan(src, 3, data, None, cfg(3))
    held = {id(m) for m in p.eval_modules}
    assert all(id(m) in held for m in p.model.stages.values())
    released = {id(m) for m in p.phases[0].train_modules}
    assert all(id(m) in released for m in p.model.stages.values())
    # bn=frozen: BatchNorm stays in eval mode after the release
    p = get_strategy("finetune", preset="two_phase", head_epochs=1, bn="frozen").plan(src, 3, data, None, cfg(3))
    bns = [m for m in p.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(id(m) in {id(x) for x in p.phases[0].train_modules} for m in bns)


@pytest.mark.parametrize("options, epochs, message", [
    ({"preset": "two_phase", "unfreeze_every": 1}, 5, "choose one"),
    ({"head_epochs": 2}, 5, "preset=two_phase only"),
    ({"preset": "two_phase", "head_epochs": 5}, 5, "no epoch for the second phase"),
    ({"preset": "two_phase", "freeze": 3}, 5, "nothing to unfreeze"),
    ({"unfreeze_every": 5}, 5, "unfreezes nothing"),
    ({"preset": "slow"}, 5, "valid choices: none, two_phase"),
    ({"unfreeze_every": 0}, 5, "unfreeze_every must be"),
    ({"preset": "two_phase", "phase2_lr": -1}, 5, "phase2_lr"),
])
def test_contradictory_schedules_fail_before_training(source, data, options, epochs, message):
    with pytest.raises(ValueError, match=message):
        get_strategy("finetune", layer="all", **options).plan(source, 3, data, None, cfg(epochs))


def test_schedule_shapes():
    cos = lr_multiplier("cosine", 100, warmup_steps=10)
    assert cos(0) < cos(5) < cos(9) <= 1 and cos(10) == pytest.approx(1.0) and cos(99) < 0.01
    assert all(cos(i) >= cos(i + 1) for i in range(10, 99))
    one = lr_multiplier("onecycle", 100)
    assert one(0) == pytest.approx(1 / 25) and one(30) == pytest.approx(1.0) and one(99) < 1e-3
    assert lr_multiplier("constant", 100)(50) == 1.0
    with pytest.raises(ValueError, match="valid choices"):
        lr_multiplier("step", 10)
    assert math.isclose(lr_multiplier("constant", 100, 4)(0), 0.2)


def test_cosine_schedule_reaches_the_optimizer(source, data):
    t = train_with(get_strategy("finetune"), source, 3, data, None, cfg(4, schedule="cosine"))
    lrs = [row["lr"] for row in t.fit.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2e-3


@pytest.mark.parametrize("kw, message", [
    ({"schedule": "step"}, "^schedule: expected one of"), ({"warmup_epochs": 5}, "^warmup_epochs: expected between 0"),
    ({"schedule": "onecycle", "warmup_epochs": 1}, "own warm-up"),
])
def test_schedule_options_are_validated(kw, message):
    with pytest.raises(ValueError, match=message):
        cfg(5, **kw)
