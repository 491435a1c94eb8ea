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

The options (the flat names of :class:`~transferkit.options.TuneConfig`) are described one by one in
:mod:`transferkit.tuning.tune_plan`, which reads them; a trial is :mod:`transferkit.tuning.objective`, the
outputs are written by :mod:`transferkit.report.tune`.

``tune`` returns a ``RunResult``: ``run_dir=out``; ``metrics`` as in ``out/metrics.json`` (``best_value``,
``best_params``, ``best_trial``, counts of complete / pruned / failed trials, ``trials``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

from transferkit import terminal
from transferkit.api.runs import RunResult, make_strategy, write_json
from transferkit.api.train import transfer
from transferkit.backbones.base import Backbone
from transferkit.options import TuneConfig
from transferkit.report.tune import (
    print_tune_summary,
    tune_metrics,
    write_best_config,
    write_trials_csv,
    write_tune_report,
)
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.terminal import Console
from transferkit.tuning.objective import TrialObjective, run_trials
from transferkit.tuning.pruning import PruningCallback
from transferkit.tuning.space import SearchParam
from transferkit.tuning.study import default_storage, open_study, shown_storage, trial_records
from transferkit.tuning.tune_plan import (
    METRICS,
    best_config,
    best_trial,
    fixed_arguments,
    make_pruner,
    name_values,
    search_space,
    searched_names,
    study_settings,
    trial_base,
    trial_counts,
    validate_space,
)

__all__ = ["best_config", "name_values", "tune"]
_fixed_arguments, _space = fixed_arguments, search_space  # their names here before tuning/tune_plan (tests import them)


def tune(*args: Any, config: TuneConfig | None = None, console: Console | None = None, **kwargs: Any) -> RunResult:
    """Search ``strategy``'s hyper-parameters for transferring ``source`` to ``data``/``classes``; resumable.

    ``tune(source, data, classes, **options)`` or ``tune(config=TuneConfig(...))``: the options are the flat names
    of :class:`~transferkit.options.TuneConfig`, described in :mod:`transferkit.tuning.tune_plan` (``n_trials``
    is read as ``trials``).

    Every argument is checked before the first trial trains: unknown names, malformed specs, bounds and choices
    that ``transfer`` would refuse. A trial that fails anyway (an option that only the model can refuse, a
    combination of searched values that contradicts itself) is recorded as FAILED with its reason, and the search
    goes on; if no trial of the study has finished, ``tune`` raises with the first reason.
    """
    c = TuneConfig.given(config, args, kwargs)
    console = terminal.resolve(console)
    start = time.perf_counter()
    st, task, metric = c.study, c.task, c.study.metric
    pruner = make_pruner(st)
    if isinstance(c.source, Backbone) or not c.source or not str(c.source):
        raise ValueError("tune: source must be a run directory, bundle directory or backbone name (it is written "
                         "into best_config.yaml)")
    fixed = fixed_arguments(c.search.fixed)
    options = dict(c.options or {})
    base = trial_base(c, fixed)
    params = validate_space(c.strategy, base, options, search_space(c.search), fixed, make_strategy)
    direction = METRICS[metric][1]
    check_output_dir(c.out, [c.source, task.data, c.weights, task.class_map, c.search.space],
                     kind="tune")  # it writes into out (resumable)
    out = open_output_dir(c.out, "tune")
    storage = st.storage or default_storage(out)
    study_name = st.study_name or out.resolve().name or "tune"
    optuna_log = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one line per trial says what Optuna would, briefly
    try:
        study = open_study(storage, study_name, direction, study_settings(metric, params, base, options), c.seed,
                           pruner)
        before = len(study.get_trials(deepcopy=False))
        if before:
            console.print(f"resuming study '{study_name}' ({shown_storage(storage)}): {before} earlier trials")
        ran = _optimize(study, params, base, options, metric, st.trials, st.timeout, out, c.progress, console)
    finally:
        optuna.logging.set_verbosity(optuna_log)
    return _write_outputs(study, params, base, options, metric, storage, study_name, out, ran,
                          time.perf_counter() - start, (st.pruner_startup_trials, st.pruner_warmup_epochs), console)


def _optimize(study: optuna.Study, params: list[SearchParam], base: dict[str, Any], options: dict[str, Any],
              metric: str, n_trials: int, timeout: float | None, out: Path, progress: bool,
              console: Console) -> list[int]:
    """Run up to ``n_trials`` trials (or until ``timeout``), each a quiet :func:`transfer` run that never loads the
    test split; return the numbers of the trials this call ran."""
    quiet = terminal.silent()  # a trial's own per-class table would drown the search's one line per trial

    def train(kwargs: dict[str, Any], opts: dict[str, Any], run_dir: Path, pruning: PruningCallback) -> Any:
        return transfer(**kwargs, options=opts or None, out=run_dir, progress=False, callbacks=[pruning],
                        evaluate_test=False, console=quiet).metrics

    objective = TrialObjective(study, params, base, options, metric, out, train, console)
    return run_trials(study, objective, n_trials, timeout, progress, console)


def _write_outputs(study: optuna.Study, params: list[SearchParam], base: dict[str, Any], options: dict[str, Any],
                   metric: str, storage: str, study_name: str, out: Path, ran: list[int], wall_s: float,
                   pruner_settings: tuple[int, int], console: Console) -> RunResult:
    """trials.csv, best_config.yaml, metrics.json, report.md and history.png of the whole study; the summary."""
    _, direction, words = METRICS[metric]
    records = trial_records(study)
    names = searched_names(params, records)
    write_trials_csv(out / "trials.csv", records, names)
    best = best_trial(records, direction, study_name, out)  # raises when no trial has finished
    counts = trial_counts(records)
    write_best_config(out, best_config(base, options, best["params"], out / "best"), best, counts["COMPLETE"],
                      study_name, metric)
    metrics = tune_metrics(records, best, counts, metric=metric, direction=direction, out=out, ran=len(ran),
                           storage=shown_storage(storage), study_name=study_name,
                           space={p.name: p.spec for p in params}, base=base,
                           pruner=(type(study.pruner).__name__, *pruner_settings), wall_s=wall_s)
    write_json(out / "metrics.json", metrics)
    write_tune_report(out, metrics, base, names, words, len(ran))
    print_tune_summary(console, metrics, names, words, out)
    return RunResult(out, metrics)
