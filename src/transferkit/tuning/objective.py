"""The objective a ``transferkit tune`` study optimises: one trial = draw the searched values, train once, return
the validation metric (Optuna's define-by-run objective, Akiba et al., 2019).

The training itself is passed in (``train``: the API's :func:`~transferkit.api.train.transfer` with the trial's
arguments, evaluated on the validation split only), so this module knows only the trial's bookkeeping: the values
drawn (by the study's TPE sampler, in the search space's order), the trial's run directory, the pruning callback
(:class:`~transferkit.tuning.pruning.PruningCallback`), one line per trial, and what happens when a trial is
pruned, fails or is interrupted — its unfinished run directory is discarded (a trial is never resumed), a failure
is recorded with its reason, and the same failure twice with nothing finished stops the search (a setting is
wrong, not a trial). :func:`run_trials` runs the study with it, under a progress bar.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from transferkit import terminal
from transferkit.backbones.cache import log as cache_log
from transferkit.logs import quiet_logger
from transferkit.rundir import partial_dir
from transferkit.terminal import Console
from transferkit.tuning.pruning import PruningCallback
from transferkit.tuning.space import SearchParam, fmt_value
from transferkit.tuning.tune_plan import METRICS, trial_arguments

TRIALS_DIR = "trials"
# (transfer keyword arguments, strategy options, run directory, pruning callback) → the run's metrics
TrainTrial = Callable[[dict[str, Any], dict[str, Any], Path, PruningCallback], Mapping[str, Any]]


class TrialObjective:
    """``study.optimize``'s objective for a tune search: trains trial ``n`` in ``out/trials/trial-NNNN`` through
    ``train`` and returns its ``metric`` on the validation split. ``ran`` lists the numbers of the trials it ran."""

    def __init__(self, study: optuna.Study, params: list[SearchParam], base: Mapping[str, Any],
                 options: Mapping[str, Any], metric: str, out: Path, train: TrainTrial, console: Console) -> None:
        self.study, self.params, self.base, self.options = study, params, base, options
        self.metric, self.key = metric, METRICS[metric][0]
        self.out, self.train, self.console = out, train, console
        self.ran: list[int] = []
        self.failures: list[str] = []

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one trial; a pruned, failed or interrupted one raises (Optuna records it), its run discarded."""
        console = self.console
        self.ran.append(trial.number)
        values = {p.name: p.suggest(trial) for p in self.params}
        kwargs, opts = trial_arguments(self.base, self.options, values)
        run_dir = self.out / TRIALS_DIR / f"trial-{trial.number:04d}"
        pruning = PruningCallback(trial, self.metric)
        shown = ", ".join(f"{k}={fmt_value(v)}" for k, v in values.items())
        t0 = time.perf_counter()
        try:
            metrics = self.train(kwargs, opts, run_dir, pruning)
            value = float(metrics["validation"][self.key])
            if not math.isfinite(value):
                raise ValueError(f"{self.metric} is {value}: training diverged")
        except optuna.TrialPruned:
            discard_unfinished(run_dir)
            console.print(f"trial {trial.number}: [yellow]pruned[/] at epoch {(pruning.pruned_at or 0) + 1}  ({shown})")
            raise
        except (ValueError, RuntimeError) as exc:
            discard_unfinished(run_dir)
            self._failed(trial, exc, shown)
            raise
        except BaseException:  # Ctrl-C: optuna records the trial as failed
            discard_unfinished(run_dir)
            raise
        trial.set_user_attr("run_dir", str(run_dir))
        console.print(f"trial {trial.number}: {self.metric} {value:.4f}  ({shown})  {time.perf_counter() - t0:.1f} s")
        return value

    def _failed(self, trial: optuna.Trial, exc: Exception, shown: str) -> None:
        """Record why ``trial`` failed; stop the study at the same failure twice with no finished trial yet."""
        error = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("error", error)
        self.console.print(f"trial {trial.number}: [red]failed[/]: {exc}  ({shown})", highlight=False)
        if error in self.failures and not self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            # the same failure twice and nothing has ever finished: a setting is wrong, not a trial
            self.console.print("stopping: the same failure twice and no finished trial yet")
            self.study.stop()
        self.failures.append(error)


def discard_unfinished(run_dir: Path) -> None:
    """A trial is never resumed (its number is not reused), so what an unfinished run keeps for resuming it
    (``trials/.trial-NNNN.partial/`` with its checkpoints) is only debris."""
    shutil.rmtree(partial_dir(run_dir), ignore_errors=True)


def run_trials(study: optuna.Study, objective: TrialObjective, n_trials: int, timeout: float | None, progress: bool,
               console: Console) -> list[int]:
    """Run up to ``n_trials`` trials of ``study`` (or until ``timeout`` seconds; the running trial finishes first),
    a failed trial recorded and the search going on; return the numbers of the trials this call ran. Ctrl-C keeps
    the finished trials in the study (the running one is recorded as failed) and raises a plain KeyboardInterrupt."""
    try:
        # one feature-cache line per trial would drown the progress bar
        with quiet_logger(cache_log.name), terminal.progress_bar(console, progress) as bar:
            task = bar.add_task(f"tune {study.study_name}", total=n_trials)
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError, RuntimeError),
                           callbacks=[lambda _study, _trial: bar.advance(task)])
    except KeyboardInterrupt:
        ran = objective.ran
        console.print(f"[yellow]interrupted[/]: finished trials are kept in the study; rerun the same command to "
                      f"resume (the running trial {ran[-1] if ran else '-'} is recorded as failed)")
        # a plain KeyboardInterrupt: the trial's resume checkpoint is gone, there is no run to `transferkit resume`
        raise KeyboardInterrupt from None
    return objective.ran
