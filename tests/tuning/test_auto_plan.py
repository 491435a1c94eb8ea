"""auto's plan alone (:mod:`transferkit.tuning.auto_plan`): finalists, the refit's epochs and cost, the reserve at
the end of stage 3, and the refusals naming the parameter — no training."""

import numpy as np
import pytest

from transferkit.errors import ConfigError
from transferkit.tuning.auto_plan import (
    DEFAULT_SPACE,
    check_search,
    final_reserve,
    finalists,
    refit_cost,
    refit_epochs,
    safe_name,
    stage3_configs,
    validation_per_class,
)


def test_finalists_are_the_best_probed_and_stage3_crosses_them_with_the_space():
    probes = [{"candidate": "a", "val_accuracy": 0.5, "n_train": 40},
              {"candidate": "b", "stopped": "stage 2's share of the budget was spent"},
              {"candidate": "c", "val_accuracy": 0.7, "n_train": 40}]
    assert finalists(probes, 1) == (["c"], 40) and finalists(probes, 5) == (["c", "a"], 40)
    assert finalists([], 2) == ([], 0)
    configs = stage3_configs(["c", "a"])
    assert [c.source for c in configs] == ["c"] * len(DEFAULT_SPACE) + ["a"] * len(DEFAULT_SPACE)
    assert configs[1].name == "c · finetune lr_decay=0.5" and configs[1].options == {"lr_decay": 0.5}


def test_refit_trains_the_kept_epoch_and_its_cost_scales_with_the_images():
    run = {"fit": {"epochs_run": 10, "best_epoch": 3}, "train_time_s": 20.0, "total_time_s": 25.0}
    assert refit_epochs(run) == 4
    assert refit_epochs({"fit": {"solver": "lbfgs", "epochs_run": 0}}) is None  # a solved probe: no epochs
    split = (np.arange(40), np.arange(40, 50))
    # 2 s per epoch x 4 epochs, x 50/40 images, plus the 5 s outside training
    assert refit_cost({"best_run": run}, split) == pytest.approx(2.0 * 4 * 50 / 40 + 5.0)
    assert refit_cost({}, split) == 0.0


def test_final_reserve_covers_the_test_evaluation_and_the_refit():
    state = {"best": {"source": "fast"}}
    speeds = {"fast": (1.0, 0.01), "slow": (2.0, 0.1)}
    assert final_reserve(state, speeds, 100, 1000.0, None) == 40.0  # the floor: 4 % of the budget
    assert state["test_predicted_s"] == pytest.approx(3.0 + 1.5 * (1.0 + 100 * 0.01))
    state["best"] = None  # nothing chosen yet: the slowest candidate's speed
    assert final_reserve(state, speeds, 1000, 100.0, None) == pytest.approx(3.0 + 1.5 * (2.0 + 1000 * 0.1))
    state["best_run"] = {"fit": {"solver": "lbfgs"}, "train_time_s": 1.0, "total_time_s": 2.0}
    split = (np.arange(40), np.arange(40, 50))
    assert final_reserve(state, {}, 0, 100.0, split) == pytest.approx(4.0 + 1.0 * 50 / 40 + 1.0)


def test_refusals_name_the_python_parameter():
    with pytest.raises(ConfigError, match="^eta: expected a whole number ≥ 2, got 1"):
        check_search(2, 1, None, 10, 1)
    check_search(2, 1, None, 10, 3)
    with pytest.raises(ConfigError, match="^val_per_class: expected ≥ 1, got 0") as exc:
        validation_per_class(5, 0)
    assert exc.value.as_flag().startswith("--val-per-class: expected ≥ 1, got 0")
    assert (validation_per_class(5, None), validation_per_class(5, 3), validation_per_class(None, 2)) == (5, 3, 2)


def test_safe_name_keeps_the_distinctive_end():
    assert safe_name("/tmp/runs/src model") == "tmp_runs_src_model"
    assert safe_name("x" * 70 + "end") == ("x" * 70 + "end")[-60:] and safe_name("///") == "candidate"
