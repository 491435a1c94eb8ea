"""``tune``: hyper-parameter search for one transfer strategy, selecting on the validation split only.

Each trial is one :func:`transferkit.api.train.transfer` run with values drawn from the search space
(:mod:`transferkit.tuning.space`) by TPE (Bergstra et al., 2011) through Optuna (Akiba et al., 2019). A trial
trains on the labelled training images and is judged on its validation images — the same split for every trial
(it depends on ``seed`` and the budget, not on the searched values) — and never loads the test split
(``evaluate_test=False``): choosing hyper-parameters on test images would make the final test score optimistic.
After every epoch the validation metric goes to the pruner (median rule), which stops hopeless trials early.

The study lives in a storage (``sqlite:///<out>/study.db`` by default): rerunning the same command resumes it
with ``trials`` more trials, and several processes running the same command at once are workers of one search.

Writes ``out/``: ``trials/trial-NNNN/`` (each finished trial's run directory), ``best_config.yaml`` (the fixed
settings plus the best trial's values, a valid ``transferkit transfer --config`` file), ``trials.csv``,
``metrics.json``, ``history.png`` and ``report.md``. Run the best configuration once with
``transferkit transfer --config out/best_config.yaml`` for its test score.

The options (the flat names of :class:`~transferkit.options.TuneConfig`):

source, data, classes, labels_per_class, strategy, epochs, seed, val_per_class, val_fraction, image_size,
weights, strict, convert_channels, class_map, accelerator:
    As for :func:`transferkit.transfer`; the same for every trial (so every trial sees the same labelled
    training and validation images). Each trial trains in this process on one device; for several devices,
    start one worker per device (``CUDA_VISIBLE_DEVICES=1 transferkit tune …``, same command).
space, param:
    ``{name: spec}`` (see :mod:`transferkit.tuning.space`: ``"loguniform:1e-4:1e-1"``, ``"int:0:2"``,
    ``"choice:none,light"`` or a list), or the path of a YAML file holding that mapping. Names are
    ``transfer``'s training arguments (``lr``, ``weight_decay``, ``freeze``, ``augment``, …) or strategy options
    as ``option.KEY``. ``None``: the strategy's default space (learning rate around its default, weight decay,
    and ``freeze`` for finetune). ``param`` (a mapping, or ``NAME=SPEC`` texts) adds to the space and wins.
metric:
    ``"val_acc"`` (maximised) or ``"val_loss"`` (minimised), on the validation split.
trials (``n_trials`` in Python too), timeout:
    Trials this call adds to the study, and a limit in seconds (the running trial finishes first).
storage, study_name:
    An Optuna storage URL (default ``sqlite:///<out>/study.db``) and the study's name (default: the name of
    ``out``). An existing study is resumed; one created with another metric, search space or fixed settings is
    an error naming the differences.
options, fixed:
    Strategy options and further ``transfer`` training arguments (``batch_size``, ``patience``, ``schedule``,
    …) that every trial uses unchanged; a name may not be both fixed and searched.
pruning, pruner_startup_trials, pruner_warmup_epochs, pruner:
    ``pruning=False`` turns pruning off; else the median pruner prunes nothing until ``pruner_startup_trials``
    trials have finished, and judges a trial only after ``pruner_warmup_epochs`` epochs; ``pruner`` replaces it
    (``"none"`` or ``optuna.pruners.NopPruner()`` turns pruning off).
progress, console:
    A progress bar over the trials; where to print (trials themselves print nothing).

``tune`` returns a ``RunResult``: ``run_dir=out``; ``metrics`` as in ``out/metrics.json`` (``best_value``,
``best_params``, ``best_trial``, counts of complete / pruned / failed trials, ``trials``).
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import Progress

from transferkit import atomic
from transferkit.api.grid import quiet_cache_log
from transferkit.api.runs import RunResult, make_strategy, write_json
from transferkit.api.train import transfer
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.options import SearchSpaceOptions, StudyOptions, TuneConfig
from transferkit.report.tables import comparison_table
from transferkit.report.tune import fmt_value, trials_table, write_tune_report
from transferkit.rundir import check_output_dir, open_output_dir, partial_dir
from transferkit.tuning.pruning import PruningCallback
from transferkit.tuning.space import (
    OPTION_PREFIX,
    TRAIN_PARAMS,
    SearchParam,
    default_space,
    load_space_file,
    parse_space,
)
from transferkit.tuning.study import default_storage, open_study, shown_storage, trial_records

# metric → (key in RunResult.metrics["validation"], study direction, words for reports)
METRICS = {"val_acc": ("accuracy", "maximize", "validation accuracy"),
           "val_loss": ("loss", "minimize", "validation loss")}
TRIALS_DIR = "trials"
FORMAT = 1
_CONFIG_FIELDS = set(TrainConfig.__dataclass_fields__)
# a setting that says where trials run, not what they compute: workers may differ in it
_UNCHECKED = ("accelerator",)


def _plain_value(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _same_place(value: str | Path | None) -> str | None:
    """A path as an absolute string when it exists (so workers started in other directories agree)."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else str(value)


def _check_arguments(strategy: str, kwargs: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Raise what ``transfer`` would raise for these arguments before training (bad choice, bad combination)."""
    TrainConfig(**{k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS})
    if "head_init" in kwargs and not isinstance(kwargs["head_init"], bool):
        raise ValueError(f"head_init must be true or false, got {kwargs['head_init']!r}")
    make_strategy(strategy, kwargs.get("freeze"), kwargs.get("probe_layer"), dict(options))


def _trial_arguments(base: Mapping[str, Any], options: Mapping[str, Any],
                     values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``transfer`` keyword arguments and strategy options for a trial with the searched ``values``."""
    kwargs, opts = dict(base), dict(options)
    for name, value in values.items():
        if name.startswith(OPTION_PREFIX):
            opts[name[len(OPTION_PREFIX):]] = value
        else:
            kwargs[name] = value
    return kwargs, opts


def _validate(strategy: str, base: dict[str, Any], options: dict[str, Any], space: Any,
              fixed: Mapping[str, Any]) -> list[SearchParam]:
    try:
        _check_arguments(strategy, base, options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tune: {exc}") from None
    strat = make_strategy(strategy, base.get("freeze"), base.get("probe_layer"), options)
    names = list(type(strat).option_defaults)
    if space is None:
        space = default_space(strat.name, type(strat).default_lr)
    elif isinstance(space, str | Path):
        space = load_space_file(space)
    params = parse_space(space, strat.name, names)
    for p in params:
        if p.option is not None and p.option in options:
            raise ValueError(f"search parameter '{p.name}' is searched but also fixed (option {p.option}="
                             f"{options[p.option]!r}); give it one way")
        if p.name in fixed:
            raise ValueError(f"search parameter '{p.name}' is searched but also fixed ({p.name}={fixed[p.name]!r}); "
                             "give it one way")
        for value in p.extremes():
            kwargs, opts = _trial_arguments(base, options, {p.name: value})
            try:
                _check_arguments(strategy, kwargs, opts)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"search parameter '{p.name}' ({p.spec}): value {value!r} is refused: {exc}") from None
    return params


def tune(*args: Any, config: TuneConfig | None = None, console: Console | None = None, **kwargs: Any) -> RunResult:
    """Search ``strategy``'s hyper-parameters for transferring ``source`` to ``data``/``classes``; resumable.

    ``tune(source, data, classes, **options)`` or ``tune(config=TuneConfig(...))``: the options are the flat names
    of :class:`~transferkit.options.TuneConfig`, described in the module docstring (``n_trials`` is read as
    ``trials``).

    Every argument is checked before the first trial trains: unknown names, malformed specs, bounds and choices
    that ``transfer`` would refuse. A trial that fails anyway (an option that only the model can refuse, a
    combination of searched values that contradicts itself) is recorded as FAILED with its reason, and the search
    goes on; if no trial of the study has finished, ``tune`` raises with the first reason.
    """
    c = TuneConfig.given(config, args, kwargs)
    console = console or Console()
    start = time.perf_counter()
    st, task, metric = c.study, c.task, c.study.metric
    pruner = _pruner(st)
    if isinstance(c.source, Backbone) or not c.source or not str(c.source):
        raise ValueError("tune: source must be a run directory, bundle directory or backbone name (it is written "
                         "into best_config.yaml)")
    source, weights, class_map = c.source, c.weights, task.class_map
    fixed = _fixed_arguments(c.search.fixed)
    options = dict(c.options or {})
    val_per_class = task.val_per_class
    if task.labels_per_class is not None and val_per_class is None:
        val_per_class = task.labels_per_class  # tune judges trials on a separate validation set: K + V (issue 26)
    base: dict[str, Any] = {
        "source": source, "data": task.data, "classes": task.classes, "strategy": c.strategy,
        "labels_per_class": task.labels_per_class, "val_per_class": val_per_class, "val_fraction": task.val_fraction,
        "image_size": c.image_size, "weights": weights, "class_map": class_map, "strict": task.strict,
        "convert_channels": task.convert_channels, "epochs": c.epochs, "seed": c.seed, **fixed,
        "accelerator": c.accelerator,
    }
    params = _validate(c.strategy, base, options, _space(c.search), fixed)
    key, direction, _ = METRICS[metric]

    check_output_dir(c.out, [source, task.data, weights, class_map, c.search.space],
                     kind="tune")  # it writes into out (resumable)
    out = open_output_dir(c.out, "tune")
    storage = st.storage or default_storage(out)
    study_name = st.study_name or out.resolve().name or "tune"
    settings = {
        "format": FORMAT, "metric": metric, "space": {p.name: p.spec for p in params},
        "fixed": {**{k: _plain_value(v) for k, v in base.items() if k not in _UNCHECKED},
                  "source": _same_place(source), "weights": _same_place(weights),
                  "class_map": _same_place(class_map) if isinstance(class_map, str | Path) else class_map,
                  "options": options},
    }
    optuna_log = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one line per trial says what Optuna would, briefly
    try:
        study = open_study(storage, study_name, direction, settings, c.seed, pruner)
        before = len(study.get_trials(deepcopy=False))
        if before:
            console.print(f"resuming study '{study_name}' ({shown_storage(storage)}): {before} earlier trials")
        ran = _optimize(study, params, base, options, metric, key, st.trials, st.timeout, out, c.progress, console)
    finally:
        optuna.logging.set_verbosity(optuna_log)
    return _write_outputs(study, params, base, options, metric, storage, study_name, out, ran,
                          time.perf_counter() - start, (st.pruner_startup_trials, st.pruner_warmup_epochs), console)


def _pruner(st: StudyOptions) -> optuna.pruners.BasePruner:
    """The study's pruner (checked first, with the other study options): the given one, none, or the median pruner."""
    if st.metric not in METRICS:
        raise ConfigError("metric", "val_acc (maximised) or val_loss (minimised)", st.metric)
    if isinstance(st.trials, bool) or not isinstance(st.trials, int) or st.trials < 1:
        raise ConfigError("trials", "a whole number ≥ 1 (the trials this call adds)", st.trials)
    if st.timeout is not None and not (isinstance(st.timeout, int | float) and st.timeout > 0):
        raise ConfigError("timeout", "a positive number of seconds", st.timeout)
    for name in ("pruner_startup_trials", "pruner_warmup_epochs"):
        value = getattr(st, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(name, "a whole number ≥ 0", value)
    pruner = st.pruner if st.pruner is not None else None if st.pruning else "none"
    if pruner == "none":
        return optuna.pruners.NopPruner()
    if isinstance(pruner, str):
        raise ConfigError("pruner", "'none' or an optuna pruner", pruner)
    return pruner if pruner is not None else optuna.pruners.MedianPruner(
        n_startup_trials=st.pruner_startup_trials, n_warmup_steps=st.pruner_warmup_epochs)


def name_values(values: Sequence[str] | str | Mapping[str, Any] | None, field: str, example: str,
                typed: bool) -> dict[str, Any]:
    """``["NAME=VALUE", …]`` (flags) or a mapping (Python, YAML) → ``{name: value}``; ``typed`` reads values as
    YAML scalars (``16`` → 16), else keeps them as text (search specs)."""
    if values is None or isinstance(values, Mapping):
        return dict(values or {})
    out: dict[str, Any] = {}
    for item in [values] if isinstance(values, str) else values:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(field, f"NAME=VALUE, e.g. {example}", str(item))
        if name.strip() in out:
            raise ConfigError(field, "each name once", name.strip(), "given twice")
        out[name.strip()] = yaml.safe_load(value) if typed else value.strip()
    return out


def _fixed_arguments(values: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """The training arguments every trial keeps (``batch_size``, ``schedule``, …), checked by name."""
    fixed = {str(k).replace("-", "_"): v for k, v in name_values(values, "fixed", "schedule=cosine",
                                                                 typed=True).items()}
    unknown = sorted((set(fixed) - set(TRAIN_PARAMS)) | (set(fixed) & {"epochs"}))
    if unknown:
        raise ValueError(f"tune: unknown fixed training argument(s) {unknown}; valid: "
                         f"{', '.join(k for k in TRAIN_PARAMS if k != 'epochs')} (epochs is an argument of its own)")
    return fixed


def _space(s: SearchSpaceOptions) -> Mapping[str, Any] | str | Path | None:
    """The search space: the ``space`` file or mapping, with ``param`` added (and winning); ``None``: the
    strategy's default space."""
    param = name_values(s.param, "param", "lr=loguniform:1e-4:1e-1", typed=False)
    if not param:
        return s.space
    return {**(load_space_file(s.space) if isinstance(s.space, str | Path) else dict(s.space or {})), **param}


def _optimize(study: optuna.Study, params: list[SearchParam], base: dict[str, Any], options: dict[str, Any],
              metric: str, key: str, n_trials: int, timeout: float | None, out: Path, progress: bool,
              console: Console) -> list[int]:
    """Run up to ``n_trials`` trials (or until ``timeout``); return the numbers of the trials this call ran."""
    ran: list[int] = []
    failures: list[str] = []
    quiet = Console(quiet=True)  # a trial's own per-class table would drown the search's one line per trial

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        values = {p.name: p.suggest(trial) for p in params}
        kwargs, opts = _trial_arguments(base, options, values)
        run_dir = out / TRIALS_DIR / f"trial-{trial.number:04d}"
        pruning = PruningCallback(trial, metric)
        shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in values.items())
        t0 = time.perf_counter()
        try:
            result = transfer(**kwargs, options=opts or None, out=run_dir, progress=False, callbacks=[pruning],
                              evaluate_test=False, console=quiet)
            value = float(result.metrics["validation"][key])
            if not math.isfinite(value):
                raise ValueError(f"{metric} is {value}: training diverged")
        except optuna.TrialPruned:
            _discard_unfinished(run_dir)
            console.print(f"trial {trial.number}: [yellow]pruned[/] at epoch {(pruning.pruned_at or 0) + 1}  ({shown})")
            raise
        except (ValueError, RuntimeError) as exc:
            _discard_unfinished(run_dir)
            error = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", error)
            console.print(f"trial {trial.number}: [red]failed[/]: {exc}  ({shown})", highlight=False)
            if error in failures and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                # the same failure twice and nothing has ever finished: a setting is wrong, not a trial
                console.print("stopping: the same failure twice and no finished trial yet")
                study.stop()
            failures.append(error)
            raise
        except BaseException:  # Ctrl-C: optuna records the trial as failed
            _discard_unfinished(run_dir)
            raise
        trial.set_user_attr("run_dir", str(run_dir))
        console.print(f"trial {trial.number}: {metric} {value:.4f}  ({shown})  {time.perf_counter() - t0:.1f} s")
        return value

    try:
        with quiet_cache_log(), Progress(console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task(f"tune {study.study_name}", total=n_trials)
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError, RuntimeError),
                           callbacks=[lambda _study, _trial: bar.advance(task)])
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: finished trials are kept in the study; rerun the same command to "
                      f"resume (the running trial {ran[-1] if ran else '-'} is recorded as failed)")
        # a plain KeyboardInterrupt: the trial's resume checkpoint is gone, there is no run to `transferkit resume`
        raise KeyboardInterrupt from None
    return ran


def _discard_unfinished(run_dir: Path) -> None:
    """A trial is never resumed (its number is not reused), so what an unfinished run keeps for resuming it
    (``trials/.trial-NNNN.partial/`` with its checkpoints) is only debris."""
    shutil.rmtree(partial_dir(run_dir), ignore_errors=True)


def best_config(base: Mapping[str, Any], options: Mapping[str, Any], values: Mapping[str, Any],
                out: str | Path) -> dict[str, Any]:
    """The ``transfer`` configuration of a trial with ``values``, keyed as ``transferkit transfer --config``
    reads it (flag names: ``labels-per-class``; strategy options as an ``options:`` mapping); unset (``None``)
    arguments are left out, ``out`` names the run directory it will write."""
    kwargs, opts = _trial_arguments(base, options, values)
    config: dict[str, Any] = {"command": "transfer"}
    for name, value in kwargs.items():
        if value is not None:
            config[name.replace("_", "-")] = _plain_value(value)
    if opts:
        config["options"] = opts
    config["out"] = str(out)
    return config


def _write_trials_csv(path: Path, records: list[dict[str, Any]], names: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["number", "state", "value", "duration_s", "epochs_reported",
                     *(f"params_{n}" for n in names), "error", "run_dir"])
    for r in records:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         "" if r["duration_s"] is None else f"{r['duration_s']:.2f}", r["epochs_reported"],
                         *(r["params"].get(n, "") for n in names), r["error"] or "", r["run_dir"] or ""])
    atomic.write_text(path, buf.getvalue())


def _write_outputs(study: optuna.Study, params: list[SearchParam], base: dict[str, Any], options: dict[str, Any],
                   metric: str, storage: str, study_name: str, out: Path, ran: list[int], wall_s: float,
                   pruner_settings: tuple[int, int], console: Console) -> RunResult:
    key, direction, words = METRICS[metric]
    records = trial_records(study)
    names = [p.name for p in params]
    names += sorted({n for r in records for n in r["params"]} - set(names))
    _write_trials_csv(out / "trials.csv", records, names)
    counts = {state: sum(r["state"] == state for r in records) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    complete = [r for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    if not complete:
        errors = [r["error"] for r in records if r["error"]]
        raise ValueError(f"tune: no trial of study '{study_name}' has finished ({counts['FAIL']} failed, "
                         f"{counts['PRUNED']} pruned, {counts['RUNNING']} running); "
                         + (f"first failure: {errors[0]}" if errors else f"see {out / 'trials.csv'}"))
    best = sorted(complete, key=lambda r: (-r["value"] if direction == "maximize" else r["value"], r["number"]))[0]
    config = best_config(base, options, best["params"], out / "best")
    header = (f"# transferkit tune: the best of {counts['COMPLETE']} finished trials of study '{study_name}' — trial "
              f"{best['number']}, {metric} {best['value']:.4f} on the validation split.\n"
              f"# Train it and score it once on the test split: transferkit transfer --config "
              f"{out / 'best_config.yaml'}\n")
    atomic.write_text(out / "best_config.yaml", header + yaml.safe_dump(config, sort_keys=False))
    metrics = {
        "metric": metric, "direction": direction, "split": "validation",
        "best_value": best["value"], "best_trial": best["number"], "best_params": best["params"],
        "best_run_dir": best["run_dir"], "best_config": str(out / "best_config.yaml"),
        "n_trials": len(records), "n_complete": counts["COMPLETE"], "n_pruned": counts["PRUNED"],
        "n_failed": counts["FAIL"], "n_running": counts["RUNNING"], "trials_this_run": len(ran),
        "storage": shown_storage(storage), "study_name": study_name,
        "search_space": {p.name: p.spec for p in params},
        "labels": {"per_class": base.get("labels_per_class"), "validation_per_class": base.get("val_per_class"),
                   "selection": "every trial trains on the labelled training images and is judged on the separate "
                                "validation images (a budget of K + V per class); best_config.yaml repeats that split",
                   "train_final_model": None},
        "sampler": f"TPE, seeded per trial from seed {base['seed']}",
        "pruner": {"name": type(study.pruner).__name__, "startup_trials": pruner_settings[0],
                   "warmup_epochs": pruner_settings[1]},
        "wall_time_s": wall_s, "trials": records,
    }
    write_json(out / "metrics.json", metrics)
    write_tune_report(out, metrics, base, names, words, len(ran))
    columns, rows = trials_table(metrics, names)
    console.print(comparison_table(columns, rows, title=f"{study_name}: best trials by {words} "
                                                        f"({counts['COMPLETE']} finished, {counts['PRUNED']} pruned, "
                                                        f"{counts['FAIL']} failed)"))
    console.print(f"best config: {out / 'best_config.yaml'}   report: {out / 'report.md'}   plot: "
                  f"{out / 'history.png'}")
    return RunResult(out, metrics)
