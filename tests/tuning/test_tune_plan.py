"""tune's plan alone (:mod:`transferkit.tuning.tune_plan`): a trial's arguments, the pruner, the settings a study
records, the best trial — no training."""

from pathlib import Path

import optuna
import pytest

from transferkit.errors import ConfigError
from transferkit.options import StudyOptions
from transferkit.tuning.space import parse_space
from transferkit.tuning.tune_plan import best_trial, make_pruner, study_settings, trial_arguments, trial_counts


def test_searched_values_override_the_base_and_options_go_to_the_strategy():
    kwargs, opts = trial_arguments({"lr": 0.1, "epochs": 2}, {"bn": "frozen"}, {"lr": 0.01, "option.bn": "train"})
    assert kwargs == {"lr": 0.01, "epochs": 2} and opts == {"bn": "train"}


def test_pruner_from_the_study_options():
    assert isinstance(make_pruner(StudyOptions()), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(StudyOptions(pruning=False)), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(StudyOptions(pruner="none")), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match="^trials: expected a whole number ≥ 1") as exc:
        make_pruner(StudyOptions(trials=0))
    assert exc.value.as_flag().startswith("--trials: expected")


def test_study_settings_record_the_space_and_the_fixed_settings(tmp_path):
    params = parse_space({"lr": "loguniform:1e-4:1e-2"}, "finetune", ["bn"])
    base = {"source": str(tmp_path), "weights": None, "class_map": None, "data": "digits", "out_dir": Path("x"),
            "accelerator": "cuda"}
    settings = study_settings("val_acc", params, base, {"bn": "frozen"})
    assert settings["space"] == {"lr": "loguniform:0.0001:0.01"} and settings["metric"] == "val_acc"
    fixed = settings["fixed"]
    assert "accelerator" not in fixed and fixed["out_dir"] == "x" and fixed["options"] == {"bn": "frozen"}
    assert fixed["source"] == str(tmp_path.resolve())


def test_best_trial_and_none_finished():
    records = [{"number": 0, "state": "COMPLETE", "value": 0.5, "error": None},
               {"number": 1, "state": "FAIL", "value": None, "error": "ValueError: no"},
               {"number": 2, "state": "COMPLETE", "value": 0.5, "error": None},
               {"number": 3, "state": "COMPLETE", "value": 0.2, "error": None}]
    assert best_trial(records, "maximize", "s", Path("o"))["number"] == 0  # ties: the earlier trial
    assert best_trial(records, "minimize", "s", Path("o"))["number"] == 3
    assert trial_counts(records) == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 1, "RUNNING": 0}
    with pytest.raises(ValueError, match=r"no trial of study 's' has finished \(1 failed.*first failure: ValueError"):
        best_trial(records[1:2], "maximize", "s", Path("o"))
