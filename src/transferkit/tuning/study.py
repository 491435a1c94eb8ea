"""The study: every trial of one search, kept in a storage (a SQLite file by default) that makes a search
resumable and lets several worker processes run it at once.

Optuna (Akiba et al., 2019) numbers trials in the storage, so workers never collide. The sampler is TPE —
the Tree-structured Parzen Estimator (Bergstra et al., 2011, "Algorithms for Hyper-Parameter Optimization"):
after a few random trials it models the good and the bad parameter values as two densities and proposes
values where their ratio favours the good ones. :class:`TrialSeededTPE` derives its random state from the
trial number, so a resumed search or a second worker does not repeat the first trials' random values.

:func:`open_study` also records what a study searches (metric, direction, search space, fixed settings) in the
study itself, and refuses to add trials computed under other settings, which would not be comparable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from transferkit.errors import ConfigError

SETTINGS_ATTR = "transferkit"  # the study's user attribute holding what it searches
SQLITE_LOCK_TIMEOUT_S = 60  # workers share one SQLite file: wait this long for its lock instead of failing


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial ``number`` of a search seeded ``seed`` (independent streams per trial)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededTPE(BaseSampler):
    """``optuna.samplers.TPESampler`` with a random state per trial: ``TPESampler(seed=trial_seed(seed, n))``
    samples trial ``n``.

    A plain ``TPESampler(seed=seed)`` starts the same random stream in every process, so a resumed search (or a
    second worker) would propose the first run's random start-up values again. TPE keeps no other state — it
    reads the finished trials from the storage — so seeding it per trial changes nothing else: one worker's
    search stays reproducible, and every trial gets fresh values.
    """

    def __init__(self, seed: int = 0, **tpe_options: Any) -> None:
        self.seed = seed
        self._options = tpe_options
        self._tpe = TPESampler(seed=trial_seed(seed, 0), **tpe_options)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._tpe = TPESampler(seed=trial_seed(self.seed, trial.number), **self._options)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


def default_storage(out: str | Path) -> str:
    """``sqlite:///<out>/study.db`` (absolute, so that workers started elsewhere find the same file)."""
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def shown_storage(url: str) -> str:
    """``url`` without a password, for messages and reports."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _storage(url: str) -> str | optuna.storages.BaseStorage:
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}})
    return url


def _settings_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    out = []
    for group, label in (("space", "search space"), ("fixed", "fixed setting")):
        before, after = saved.get(group) or {}, now.get(group) or {}
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                then = repr(before[key]) if key in before else "absent"
                now_ = repr(after[key]) if key in after else "absent"
                out.append(f"{label} {key}: {then} then, {now_} now")
    for key in sorted((set(saved) | set(now)) - {"space", "fixed"}):
        if saved.get(key) != now.get(key):
            out.append(f"{key}: {saved.get(key)!r} then, {now.get(key)!r} now")
    return out


def open_study(storage: str, study_name: str, direction: str, settings: Mapping[str, Any], seed: int = 0,
               pruner: optuna.pruners.BasePruner | None = None) -> Study:
    """Create the study ``study_name`` in ``storage``, or load it when it exists (to resume, or to join as a
    further worker).

    ``settings`` (JSON-able: ``metric``, ``space``, ``fixed``, …) are stored in a new study; an existing study
    must have the same ``direction`` and ``settings``, else a ``ValueError`` names every difference — trials
    run under other settings are not comparable.
    """
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"study direction must be 'maximize' or 'minimize', got '{direction}'")
    try:
        study = optuna.create_study(storage=_storage(storage), study_name=study_name, direction=direction,
                                    sampler=TrialSeededTPE(seed), pruner=pruner, load_if_exists=True)
    except Exception as exc:  # a bad URL, a missing database driver, an unreachable server
        raise ConfigError("storage", "an Optuna storage URL where the study can be opened", shown_storage(storage),
                          f"{type(exc).__name__}: {exc}") from exc
    where = f"study '{study_name}' in {shown_storage(storage)}"
    had = study.direction.name.lower()
    if had != direction:
        raise ValueError(f"{where} was created to {had} its objective, but this search would {direction} it "
                         f"(metric {settings.get('metric')}); use another out=… or study_name=…")
    now = json.loads(json.dumps(dict(settings), default=str))
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:  # a new study (or one from elsewhere): record what it searches
        study.set_user_attr(SETTINGS_ATTR, now)
    else:
        diff = _settings_diff(saved, now)
        if diff:
            n = len(study.get_trials(deepcopy=False))
            raise ValueError(f"{where} holds {n} trials of another search, not comparable with this one: "
                             + "; ".join(diff) + ". Use another out=… or study_name=…, or the same settings "
                             "to resume it")
    return study


def trial_records(study: Study) -> list[dict[str, Any]]:
    """Every trial of ``study`` as a plain dict: ``number``, ``state`` (COMPLETE, PRUNED, FAIL, RUNNING, WAITING),
    ``value`` (a pruned trial's is its last reported value), ``params``, ``duration_s``, ``epochs_reported``,
    ``error`` (why a trial failed) and ``run_dir`` (a finished trial's run directory)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete is not None and t.datetime_start is not None else None
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                     "duration_s": duration, "epochs_reported": len(t.intermediate_values),
                     "error": t.user_attrs.get("error"), "run_dir": t.user_attrs.get("run_dir")})
    return rows
