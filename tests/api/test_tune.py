"""``transferkit.tune``: Optuna search over transfer's options on scikit-learn's digits (bundled), 2 epochs, 2–3
trials each."""

import csv
import importlib
import json
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

import transferkit as tk
from transferkit.cli.config import parse_generated
from transferkit.tuning import PruningCallback, default_space, parse_spec
from transferkit.tuning.study import TrialSeededTPE

runs_mod = importlib.import_module("transferkit.data.job_task")  # where load_task looks up get_dataset

SPACE = {"lr": "loguniform:1e-3:1e-1", "weight_decay": "loguniform:1e-6:1e-2", "option.bn": "choice:train,frozen"}
TASK = dict(data="digits", classes="5-9", labels_per_class=5, strategy="finetune", epochs=2, seed=0, progress=False)


class PruneFrom(optuna.pruners.BasePruner):
    """Prunes every trial numbered ``first`` or later, at its first report."""

    def __init__(self, first: int) -> None:
        self.first = first

    def prune(self, study, trial) -> bool:
        return trial.number >= self.first


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "src"
    tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)
    return str(out)


@pytest.fixture(scope="module")
def searched(source, tmp_path_factory):
    """Two trials, with a record of every dataset split the search asked for."""
    out = tmp_path_factory.mktemp("tune") / "search"
    splits = []
    real = runs_mod.get_dataset
    mp = pytest.MonkeyPatch()
    mp.setattr(runs_mod, "get_dataset", lambda name, split, **kw: (splits.append(split), real(name, split, **kw))[1])
    try:
        res = tk.tune(source, space=SPACE, n_trials=2, out=out, **TASK)
    finally:
        mp.undo()
    return out, res, splits


def _study(out):
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")


def test_trials_run_in_the_sqlite_study_on_validation_only(searched):
    out, res, splits = searched
    assert "train" in splits and "test" not in splits  # the spy saw the data loading, and never the test split
    trials = _study(out).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert set(trials[0].params) == set(SPACE) and trials[0].params != trials[1].params
    for t in trials:  # each trial is a transfer run scored on the validation split
        m = json.loads((out / "trials" / f"trial-{t.number:04d}" / "metrics.json").read_text())
        assert m["split"] == "validation" and m["n_test"] == 0 and m["validation"]["accuracy"] == t.value
        assert m["options"].get("bn", "frozen") == t.params["option.bn"]  # only options off their default
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert res.metrics["best_trial"] == best.number and res.metrics["best_value"] == best.value
    assert res.metrics["n_complete"] == 2 and res.metrics["n_pruned"] == res.metrics["n_failed"] == 0
    assert res.metrics["direction"] == "maximize" and res.metrics["search_space"]["option.bn"] == "choice:train,frozen"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert float(rows[best.number]["params_lr"]) == best.params["lr"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best_params"] == best.params and saved["storage"].endswith("study.db")
    assert (out / "history.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "history.png" in report and "test split was never loaded" in report


def test_best_config_is_a_transfer_config_with_the_best_values(searched, source):
    out, res, _ = searched
    args = SimpleNamespace(**parse_generated("transfer", ["--config", str(out / "best_config.yaml")]).flat())
    best = res.metrics["best_params"]
    assert args.source == source and args.strategy == "finetune"
    assert args.lr == best["lr"] and args.weight_decay == best["weight_decay"]
    assert args.options == {"bn": best["option.bn"]}
    assert (args.labels_per_class, args.classes, args.epochs, args.seed) == (5, "5-9", 2, 0)
    assert args.out == str(out / "best")


def test_every_key_best_config_can_write_is_a_transfer_option(tmp_path):
    from transferkit.api.tune_job import best_config
    from transferkit.options import TransferConfig
    from transferkit.tuning.space import TRAIN_PARAMS

    base = dict(source="s", data="d", classes="0-4", strategy="finetune", labels_per_class=5, val_per_class=5,
                val_fraction=0.1, image_size=32, weights="w.safetensors", class_map="m.yaml", strict=True,
                convert_channels=True, epochs=2, seed=0, accelerator="cpu")
    config = best_config(base, {"bn": "frozen"}, {**dict.fromkeys(TRAIN_PARAMS, 1), "option.lr_decay": 0.5}, "o")
    path = tmp_path / "every.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = {k.replace("-", "_"): v for k, v in yaml.safe_load(path.read_text()).items()}  # keyed like the flags
    assert loaded.pop("command") == "transfer"
    assert set(loaded) == set(base) | set(TRAIN_PARAMS) | {"options", "out"}
    built = TransferConfig.from_mapping(loaded)  # an unknown key would raise
    assert built.strategy.options == {"bn": "frozen", "lr_decay": 0.5}


def test_rerunning_resumes_the_study_with_new_trials(searched, source):
    out, _, _ = searched
    before = [(t.number, t.params, t.value) for t in _study(out).trials]
    res = tk.tune(source, space=SPACE, n_trials=2, out=out, **TASK)
    trials = _study(out).trials
    assert len(trials) == 4 and [(t.number, t.params, t.value) for t in trials[:2]] == before
    # trials are seeded by number: the resumed search does not repeat the first run's random values
    assert {t.params["lr"] for t in trials[2:]}.isdisjoint({t.params["lr"] for t in trials[:2]})
    assert res.metrics["n_trials"] == 4 and res.metrics["trials_this_run"] == 2
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 4


@pytest.mark.parametrize(("change", "message"), [
    ({"space": {**SPACE, "lr": "loguniform:1e-4:1e-1"}}, "search space lr: 'loguniform:0.001:0.1' then"),
    ({"metric": "val_loss"}, "was created to maximize its objective, but this search would minimize"),
    ({"labels_per_class": 3}, "fixed setting labels_per_class: 5 then, 3 now"),
])
def test_resuming_under_other_settings_is_refused(searched, source, change, message):
    out, _, _ = searched
    n = len(_study(out).trials)
    with pytest.raises(ValueError, match=message):
        tk.tune(source, out=out, n_trials=1, **{**TASK, "space": SPACE, **change})
    assert len(_study(out).trials) == n


def test_pruning_callback_reports_and_prunes():
    study = optuna.create_study(direction="maximize", pruner=PruneFrom(0))
    trial = study.ask()
    cb = PruningCallback(trial, "val_acc")
    cb.on_validation_end(SimpleNamespace(sanity_checking=True, callback_metrics={"val_acc": torch.tensor(0.1)},
                                         current_epoch=0), None)  # sanity check: not reported
    with pytest.raises(optuna.TrialPruned):
        cb.on_validation_end(SimpleNamespace(sanity_checking=False, callback_metrics={"val_acc": torch.tensor(0.25)},
                                             current_epoch=3), None)
    assert cb.pruned_at == 3
    assert study.trials[0].intermediate_values == {3: 0.25}
    keep = optuna.create_study(pruner=optuna.pruners.NopPruner()).ask()
    PruningCallback(keep, "val_loss").on_validation_end(SimpleNamespace(
        sanity_checking=False, callback_metrics={"val_loss": torch.tensor(0.5)}, current_epoch=0), None)
    with pytest.raises(ValueError, match="unknown monitor 'acc'"):
        PruningCallback(keep, "acc")


def test_trial_pruned_leaves_transfer_unchanged(source, tmp_path):
    trial = optuna.create_study(direction="maximize", pruner=PruneFrom(0)).ask()
    with pytest.raises(optuna.TrialPruned):  # not wrapped by Lightning or the run directory handling
        tk.transfer(source=source, out=tmp_path / "t", callbacks=[PruningCallback(trial)], evaluate_test=False,
                    val_per_class=5, **TASK)  # a trial's split: tune keeps a validation set (V = K by default)
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob(".t.partial*"))


def test_a_pruned_trial_is_recorded_as_pruned(source, tmp_path):
    out = tmp_path / "pruned"
    res = tk.tune(source, space={"lr": "loguniform:1e-3:1e-1"}, n_trials=2, out=out, pruner=PruneFrom(1), **TASK)
    states = [t.state.name for t in _study(out).trials]
    assert states == ["COMPLETE", "PRUNED"]
    assert res.metrics["n_pruned"] == 1 and res.metrics["n_failed"] == 0 and res.metrics["best_trial"] == 0
    assert (out / "trials" / "trial-0000").is_dir() and not (out / "trials" / "trial-0001").exists()
    assert not list((out / "trials").glob("*.partial*"))
    assert [r["state"] for r in csv.DictReader((out / "trials.csv").open())] == ["COMPLETE", "PRUNED"]


def test_a_failing_trial_is_recorded_and_the_search_goes_on(source, tmp_path):
    # freeze=9 passes the strategy's own checks; only the model (4 parameter groups) refuses it, at plan time
    out = tmp_path / "failing"
    res = tk.tune(source, space={"freeze": "choice:9,0"}, n_trials=3, out=out, **TASK)
    trials = _study(out).trials
    assert [(t.params["freeze"], t.state.name) for t in trials] == [(0, "COMPLETE"), (9, "FAIL"), (9, "FAIL")]
    assert res.metrics["n_failed"] == 2 and res.metrics["best_params"] == {"freeze": 0}
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows[0]["error"] == "" and "freeze=9: seed_cnn has 3 parameter groups" in rows[1]["error"]
    assert "2 trials failed" in (out / "report.md").read_text()


def test_the_same_failure_twice_with_nothing_finished_stops_the_search(source, tmp_path):
    out = tmp_path / "hopeless"
    with pytest.raises(ValueError, match="no trial of study 'hopeless' has finished .*freeze=9: seed_cnn has 3"):
        tk.tune(source, space={"freeze": "choice:9"}, n_trials=10, out=out, **TASK)
    assert [t.state.name for t in _study(out).trials] == ["FAIL", "FAIL"]  # stopped, not 10 failures
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": {"lrr": "loguniform:1e-4:1e-2"}}, "unknown search parameter 'lrr'; valid: lr, weight_decay"),
    ({"space": {"lr": "loguniform:1e-4"}}, r"'lr' \(loguniform:1e-4\): expected loguniform:LOW:HIGH"),
    ({"space": {"lr": "gauss:0:1"}}, "'lr': 'gauss:0:1' is not a spec; valid forms: loguniform:LOW:HIGH"),
    ({"space": {"weight_decay": "uniform:0.1:0.01"}}, r"'weight_decay' .*LOW \(0.1\) must be below HIGH \(0.01\)"),
    ({"space": {"freeze": "int:2:2"}}, r"'freeze' .*LOW \(2\) must be below HIGH"),
    ({"space": {"lr": "loguniform:0:0.1"}}, "'lr' .*loguniform needs LOW > 0"),
    ({"space": {"freeze": "int:0:a"}}, "'freeze' .*LOW and HIGH must be whole numbers"),
    ({"space": {"optimizer": "uniform:0:1"}}, "'optimizer' .*takes a category: use choice:A,B,C"),
    ({"space": {"optimizer": "choice:adamw,adamx"}}, "'optimizer' .*value 'adamx' is refused: .*adamw, adam, sgd"),
    ({"space": {"augment": "choice:none,none"}}, "'augment' .*choice none is given twice"),
    ({"space": {"option.bogus": "choice:1,2"}}, "'finetune' has no option 'bogus'; its options: option.freeze"),
    ({"space": {"option.bn": "choice:train"}, "options": {"bn": "frozen"}}, "'option.bn' is searched but also fixed"),
    ({"space": {}}, "the search space is empty"),
    ({"metric": "val_f1"}, "metric: expected val_acc .*val_loss .*got 'val_f1'"),
    ({"n_trials": 0}, "^trials: expected a whole number ≥ 1 .*got 0"),
    ({"timeout": -5}, "timeout: expected a positive number"),
    ({"fixed": {"lr_schedule": "cosine"}}, r"unknown fixed training argument\(s\) \['lr_schedule'\]"),
    ({"strategy": "linear_probe", "space": {"freeze": "int:0:2"}}, "freeze: expected the finetune strategy"),
])
def test_bad_input_is_refused_before_training(source, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tk.tune(source, out=tmp_path / "bad", **{**TASK, **kwargs})
    assert not (tmp_path / "bad").exists()  # nothing written, nothing trained


def test_a_storage_that_cannot_be_opened_is_refused_naming_the_parameter(source, tmp_path):
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^storage: expected an Optuna storage URL .*got 'bogus://x'; ") as exc:
        tk.tune(source, space=SPACE, storage="bogus://x", out=tmp_path / "s", **TASK)
    assert exc.value.as_flag().startswith("--storage: expected an Optuna storage URL")


def test_specs_and_default_spaces():
    assert parse_spec("augment", "choice:none, light").choices == ("none", "light")
    assert parse_spec("x", "choice:1e-3,0.5,2,true,null,'2'").choices == (0.001, 0.5, 2, True, None, "2")
    for spec in ("loguniform:1e-05:0.1", "int:0:3", "uniform:-1.0:1.0", "choice:none,true,'2',null"):
        p = parse_spec("x", spec)
        assert parse_spec("x", p.spec) == p
    assert parse_spec("augment", ["none", "light"]).kind == "choice"
    assert default_space("finetune", 1e-3) == {"lr": "loguniform:0.0001:0.01", "weight_decay": "loguniform:1e-06:0.01",
                                               "freeze": "int:0:2"}
    assert default_space("linear_probe", 1e-2) == {"lr": "loguniform:0.001:0.1",
                                                   "weight_decay": "loguniform:1e-06:0.01"}


def test_trial_seeded_sampler_is_reproducible_and_differs_per_trial():
    def first_values(n):
        study = optuna.create_study(sampler=TrialSeededTPE(seed=7))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
        return [t.params["x"] for t in study.trials]

    a, b = first_values(3), first_values(3)
    assert a == b and len(set(a)) == 3


def test_history_plot_marks_every_state(tmp_path):
    from transferkit.report.plots import plot_optimisation_history

    trials = [{"number": 0, "state": "COMPLETE", "value": 0.5}, {"number": 1, "state": "PRUNED", "value": 0.2},
              {"number": 2, "state": "FAIL", "value": None}, {"number": 3, "state": "COMPLETE", "value": 0.7}]
    path = plot_optimisation_history(trials, tmp_path / "h.png", maximise=True)
    assert path.stat().st_size > 1000 and plot_optimisation_history([], tmp_path / "e.png").is_file()


def test_param_adds_to_the_space_file_and_wins_and_fixed_values_are_typed(tmp_path):
    from transferkit.api.tune_job import _fixed_arguments, _space, name_values
    from transferkit.errors import ConfigError
    from transferkit.options import SearchSpaceOptions

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": "loguniform:1e-4:1e-2", "augment": ["none", "light"]}))
    merged = _space(SearchSpaceOptions(param=("lr=loguniform:1e-3:1e-1", "option.bn=choice:train,frozen"),
                                       space=str(space)))
    assert merged == {"lr": "loguniform:1e-3:1e-1", "augment": ["none", "light"], "option.bn": "choice:train,frozen"}
    assert _space(SearchSpaceOptions(space=str(space))) == str(space)  # no param: the file, read by the job
    assert _space(SearchSpaceOptions(param={"lr": "uniform:0.1:0.2"})) == {"lr": "uniform:0.1:0.2"}
    assert _fixed_arguments(("batch_size=16", "schedule=cosine")) == {"batch_size": 16, "schedule": "cosine"}
    with pytest.raises(ConfigError, match="param: expected NAME=VALUE"):
        name_values(("lr",), "param", "lr=loguniform:1e-4:1e-1", typed=False)
    with pytest.raises(ConfigError, match="fixed: expected each name once, got 'lr'"):
        name_values(("lr=1", "lr=2"), "fixed", "schedule=cosine", typed=True)
    with pytest.raises(ValueError, match=r"unknown fixed training argument\(s\) \['epochs'\]"):
        _fixed_arguments({"epochs": 3})
