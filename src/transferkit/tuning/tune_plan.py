"""The plan of a ``transferkit tune`` search (:func:`transferkit.api.tune`): what every trial keeps fixed, what it
searches, how it is judged and pruned, and which trial won — pure bookkeeping, no training.

* the fixed ``transfer`` arguments of every trial (:func:`trial_base`, :func:`fixed_arguments`) and a trial's own
  (:func:`trial_arguments`: searched values override them; ``option.KEY`` values go to the strategy's options);
* the search space (:func:`search_space`: the ``space`` file or mapping with ``param`` added), parsed by
  :mod:`transferkit.tuning.space` and checked bound by bound against ``transfer``'s own validation
  (:func:`validate_space`) before the first trial trains;
* the pruner (:func:`make_pruner`: the median rule of Optuna, Akiba et al., 2019, unless replaced or turned off);
* what the study records to refuse resuming under other settings (:func:`study_settings`);
* the best finished trial (:func:`best_trial`) and its ``transfer --config`` file (:func:`best_config`).

The strategy factory is passed in (``make_strategy``: :func:`transferkit.api.runs.make_strategy`), so that this
lower floor checks strategy options exactly as a trial's ``transfer`` will, without importing the API.

The options of :func:`transferkit.api.tune` (the flat names of :class:`~transferkit.options.TuneConfig`):

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml

from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.tuning.space import (
    OPTION_PREFIX,
    TRAIN_PARAMS,
    SearchParam,
    default_space,
    load_space_file,
    parse_space,
)

if TYPE_CHECKING:
    from transferkit.options import SearchSpaceOptions, StudyOptions, TuneConfig
    from transferkit.strategies.base import Strategy

# metric → (key in RunResult.metrics["validation"], study direction, words for reports)
METRICS = {"val_acc": ("accuracy", "maximize", "validation accuracy"),
           "val_loss": ("loss", "minimize", "validation loss")}
FORMAT = 1  # of the settings a study records (study_settings)
_CONFIG_FIELDS = set(TrainConfig.__dataclass_fields__)
# a setting that says where trials run, not what they compute: workers may differ in it
UNCHECKED = ("accelerator",)

MakeStrategy = Callable[..., "Strategy"]


def plain_value(value: Any) -> Any:
    """``value`` as YAML/JSON writes it (a path as its text)."""
    return str(value) if isinstance(value, Path) else value


def same_place(value: str | Path | None) -> str | None:
    """A path as an absolute string when it exists (so workers started in other directories agree)."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else str(value)


def trial_base(c: TuneConfig, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The ``transfer`` keyword arguments every trial of ``c`` shares (its task, strategy, epochs, seed and the
    ``fixed`` training arguments). Trials are judged on a separate validation set: with ``labels_per_class`` K and
    no ``val_per_class``, V = K (a labelled budget of K + V, issue 26)."""
    task = c.task
    val_per_class = task.val_per_class
    if task.labels_per_class is not None and val_per_class is None:
        val_per_class = task.labels_per_class
    return {
        "source": c.source, "data": task.data, "classes": task.classes, "strategy": c.strategy,
        "labels_per_class": task.labels_per_class, "val_per_class": val_per_class, "val_fraction": task.val_fraction,
        "image_size": c.image_size, "weights": c.weights, "class_map": task.class_map, "strict": task.strict,
        "convert_channels": task.convert_channels, "epochs": c.epochs, "seed": c.seed, **fixed,
        "accelerator": c.accelerator,
    }


def check_arguments(strategy: str, kwargs: Mapping[str, Any], options: Mapping[str, Any],
                    make_strategy: MakeStrategy) -> None:
    """Raise what ``transfer`` would raise for these arguments before training (bad choice, bad combination)."""
    TrainConfig(**{k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS})
    if "head_init" in kwargs and not isinstance(kwargs["head_init"], bool):
        raise ValueError(f"head_init must be true or false, got {kwargs['head_init']!r}")
    make_strategy(strategy, kwargs.get("freeze"), kwargs.get("probe_layer"), dict(options))


def trial_arguments(base: Mapping[str, Any], options: Mapping[str, Any],
                    values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``transfer`` keyword arguments and strategy options for a trial with the searched ``values``."""
    kwargs, opts = dict(base), dict(options)
    for name, value in values.items():
        if name.startswith(OPTION_PREFIX):
            opts[name[len(OPTION_PREFIX):]] = value
        else:
            kwargs[name] = value
    return kwargs, opts


def validate_space(strategy: str, base: dict[str, Any], options: dict[str, Any], space: Any,
                   fixed: Mapping[str, Any], make_strategy: MakeStrategy) -> list[SearchParam]:
    """The parsed search space (``None``: the strategy's default space; a path: a YAML space file), after checking
    the fixed arguments, that no name is both searched and fixed, and that ``transfer`` accepts both ends of every
    range and every choice — all before the first trial trains."""
    try:
        check_arguments(strategy, base, options, make_strategy)
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
            kwargs, opts = trial_arguments(base, options, {p.name: value})
            try:
                check_arguments(strategy, kwargs, opts, make_strategy)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"search parameter '{p.name}' ({p.spec}): value {value!r} is refused: {exc}") from None
    return params


def make_pruner(st: StudyOptions) -> optuna.pruners.BasePruner:
    """The study's pruner (checked first, with the other study options): the given one, none, or the median pruner
    (prune a trial whose value at an epoch is worse than the median of earlier trials at that epoch)."""
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


def fixed_arguments(values: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """The training arguments every trial keeps (``batch_size``, ``schedule``, …), checked by name."""
    fixed = {str(k).replace("-", "_"): v for k, v in name_values(values, "fixed", "schedule=cosine",
                                                                 typed=True).items()}
    unknown = sorted((set(fixed) - set(TRAIN_PARAMS)) | (set(fixed) & {"epochs"}))
    if unknown:
        raise ValueError(f"tune: unknown fixed training argument(s) {unknown}; valid: "
                         f"{', '.join(k for k in TRAIN_PARAMS if k != 'epochs')} (epochs is an argument of its own)")
    return fixed


def search_space(s: SearchSpaceOptions) -> Mapping[str, Any] | str | Path | None:
    """The search space: the ``space`` file or mapping, with ``param`` added (and winning); ``None``: the
    strategy's default space."""
    param = name_values(s.param, "param", "lr=loguniform:1e-4:1e-1", typed=False)
    if not param:
        return s.space
    return {**(load_space_file(s.space) if isinstance(s.space, str | Path) else dict(s.space or {})), **param}


def study_settings(metric: str, params: list[SearchParam], base: Mapping[str, Any],
                   options: Mapping[str, Any]) -> dict[str, Any]:
    """What a study records of its search (metric, space, every fixed setting but :data:`UNCHECKED` ones, with paths
    made absolute by :func:`same_place`): a resumed study or a further worker must match it (comparable trials)."""
    class_map = base["class_map"]
    return {
        "format": FORMAT, "metric": metric, "space": {p.name: p.spec for p in params},
        "fixed": {**{k: plain_value(v) for k, v in base.items() if k not in UNCHECKED},
                  "source": same_place(base["source"]), "weights": same_place(base["weights"]),
                  "class_map": same_place(class_map) if isinstance(class_map, str | Path) else class_map,
                  "options": dict(options)},
    }


def searched_names(params: list[SearchParam], records: list[dict[str, Any]]) -> list[str]:
    """The searched names: this search's in order, then any other a trial of the study recorded (sorted)."""
    names = [p.name for p in params]
    return names + sorted({n for r in records for n in r["params"]} - set(names))


def trial_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """Trials per state: COMPLETE, PRUNED, FAIL, RUNNING."""
    return {state: sum(r["state"] == state for r in records) for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}


def best_trial(records: list[dict[str, Any]], direction: str, study_name: str, out: Path) -> dict[str, Any]:
    """The best finished trial (ties: the earlier one); raises, with the first failure's reason, when none finished."""
    complete = [r for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    if not complete:
        counts = trial_counts(records)
        errors = [r["error"] for r in records if r["error"]]
        raise ValueError(f"tune: no trial of study '{study_name}' has finished ({counts['FAIL']} failed, "
                         f"{counts['PRUNED']} pruned, {counts['RUNNING']} running); "
                         + (f"first failure: {errors[0]}" if errors else f"see {out / 'trials.csv'}"))
    return sorted(complete, key=lambda r: (-r["value"] if direction == "maximize" else r["value"], r["number"]))[0]


def best_config(base: Mapping[str, Any], options: Mapping[str, Any], values: Mapping[str, Any],
                out: str | Path) -> dict[str, Any]:
    """The ``transfer`` configuration of a trial with ``values``, keyed as ``transferkit transfer --config``
    reads it (flag names: ``labels-per-class``; strategy options as an ``options:`` mapping); unset (``None``)
    arguments are left out, ``out`` names the run directory it will write."""
    kwargs, opts = trial_arguments(base, options, values)
    config: dict[str, Any] = {"command": "transfer"}
    for name, value in kwargs.items():
        if value is not None:
            config[name.replace("_", "-")] = plain_value(value)
    if opts:
        config["options"] = opts
    config["out"] = str(out)
    return config
