"""Hyper-parameter search for ``transferkit tune`` (:func:`transferkit.api.tune`), built on Optuna (Akiba et al.,
2019, "Optuna: A Next-generation Hyperparameter Optimization Framework").

* :mod:`~transferkit.tuning.space` — the search space: which ``transfer`` arguments and strategy options may be
  searched, the spec forms (``loguniform:LOW:HIGH``, ``uniform:LOW:HIGH``, ``int:LOW:HIGH``, ``choice:A,B,C``) and
  the default space of each strategy.
* :mod:`~transferkit.tuning.pruning` — a Lightning callback that reports the validation metric after every epoch
  and stops a trial the pruner judges hopeless.
* :mod:`~transferkit.tuning.halving` — successive halving under a wall-clock budget (Jamieson & Talwalkar, 2016;
  Hyperband, Li et al., 2018): ``transferkit auto``'s stage-3 scheduler, the training run passed in.
* :mod:`~transferkit.tuning.study` — the study in its storage (SQLite by default): resuming, several workers at
  once, a TPE sampler (Bergstra et al., 2011) seeded per trial, and a plain record of every trial.
* :mod:`~transferkit.tuning.tune_plan` — what a tune search keeps fixed and searches, its pruner, the settings a
  study records, the best trial and its ``transfer --config`` file (``tune``'s options, one by one).
* :mod:`~transferkit.tuning.objective` — one trial (draw the values, train through the function passed in, report
  the validation metric) and the run of the study's trials.
* :mod:`~transferkit.tuning.auto_plan` — ``transferkit auto``'s plan: its budget and the stages' shares, the labels
  (inner split, refit on all K), the stage-3 configurations and first rung, the costs it reserves time for.

Trials only ever see the training split (their validation part included); the test split is for the single final
run of the chosen configuration (``transferkit transfer --config best_config.yaml``).
"""

from transferkit.tuning.pruning import PruningCallback
from transferkit.tuning.space import SearchParam, default_space, parse_space, parse_spec
from transferkit.tuning.study import open_study, trial_records

__all__ = ["PruningCallback", "SearchParam", "default_space", "open_study", "parse_space", "parse_spec",
           "trial_records"]
