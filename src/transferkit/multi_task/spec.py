"""The multi-task spec (``tasks.yaml``): which tasks, where their labels come from, how their losses combine.

Two ways to give tasks, which can be mixed:

* **one dataset, several labellings** — a top-level ``data`` (e.g. ``fashion_mnist``, ``text:news.csv``) and tasks
  that derive their labels from it: the dataset's own classes, a subset of them (``classes``; the other rows have
  no label for this task), merged or renamed by a ``class_map`` (coarse groups), or, for a text table, another
  label ``column`` (an empty cell = no label for that row);
* **several datasets** — a task with its own ``data``: its rows train that task only.

Every row contributes to the loss of the tasks it has a label for; a missing label is masked out of that task's
loss and counted in the report. A ``holdout`` task is not trained with the others: after training, a linear probe
on the shared features measures how well what the other tasks taught transfers to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.config import read_structured_file
from transferkit.errors import ConfigError

WEIGHTINGS = ("fixed", "uncertainty", "gradnorm", "dwa")
SAMPLINGS = ("proportional", "uniform", "temperature")
TASK_KEYS = ("name", "data", "classes", "class_map", "column", "labels_per_class", "val_per_class", "weight",
             "holdout")
SPEC_KEYS = ("data", "source", "strategy", "options", "tasks", "weighting", "sampling", "temperature",
             "gradnorm_alpha", "dwa_temperature", "baselines", "epochs", "batch_size", "lr", "weight_decay",
             "optimizer", "patience", "monitor", "seed", "val_fraction", "image_size", "max_length", "out")


@dataclass
class TaskSpec:
    """One task: a name, where its labels come from, its labelled budget and its fixed loss weight."""

    name: str
    data: str | None = None
    classes: str | list[int] | None = None
    class_map: dict[str, str] | None = None
    column: str | None = None
    labels_per_class: int | None = None
    val_per_class: int | None = None
    weight: float = 1.0
    holdout: bool = False


@dataclass
class MultiTaskSpec:
    """The whole multi-task job as read from ``tasks.yaml`` (or given as a mapping from Python)."""

    tasks: list[TaskSpec]
    data: str | None = None
    source: str | None = None
    strategy: str = "finetune"
    options: dict[str, Any] = field(default_factory=dict)
    weighting: str = "fixed"
    sampling: str = "proportional"
    temperature: float = 2.0
    gradnorm_alpha: float = 1.5
    dwa_temperature: float = 2.0
    baselines: bool = True
    train: dict[str, Any] = field(default_factory=dict)  # epochs, batch_size, lr, … (TrainConfig fields)
    val_fraction: float = 0.1
    image_size: int | None = None
    max_length: int | None = None
    out: str | None = None

    @property
    def trained_tasks(self) -> list[TaskSpec]:
        return [t for t in self.tasks if not t.holdout]

    @property
    def holdout_tasks(self) -> list[TaskSpec]:
        return [t for t in self.tasks if t.holdout]


def _whole(value: Any, what: str, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be a whole number ≥ {minimum}, got {value!r}")
    return value


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


def _class_map(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        from transferkit.data.class_map import load_class_map

        return load_class_map(value)
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{where}: class_map must be a mapping 'class: new name' (or a YAML/JSON file), "
                         f"got {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, list):  # the grouped form  group: [class, class, …]
            for member in v:
                out[str(member)] = str(k)
        elif v is None or isinstance(v, dict) or not str(v).strip():
            raise ValueError(f"{where}: class_map entry '{k}' needs a new class name, got {v!r}")
        else:
            out[str(k)] = str(v).strip()
    return out


def _check_keys(raw: Any, valid: tuple[str, ...], what: str, expected: str) -> None:
    """``raw`` must be a mapping whose keys are all in ``valid`` (a typo never falls back to a default)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be a mapping with {expected}, got {raw!r}")
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ValueError(f"{what} has unknown key(s) {unknown}; valid keys: {', '.join(valid)}")


def _task(raw: Any, i: int, where: str) -> TaskSpec:
    _check_keys(raw, TASK_KEYS, f"{where}: tasks[{i}]", "at least 'name'")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: tasks[{i}] needs a 'name' (a non-empty string), got {name!r}")
    name = name.strip()
    here = f"{where}: task '{name}'"
    if not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"{here}: use letters, digits, '_', '-' or '.' in task names (they become column names)")
    if raw.get("column") is not None and raw.get("data") is not None:
        raise ValueError(f"{here}: 'column' reads another label column of the shared data; a task with its own "
                         "'data' names its label column there ('text:FILE?label=COL')")
    data = raw.get("data")
    if data is not None and (not isinstance(data, str) or not data.strip()):
        raise ValueError(f"{here}: data must be a dataset spec such as 'fashion_mnist' or 'text:FILE.csv'")
    return TaskSpec(
        name=name, data=data, classes=raw.get("classes"), class_map=_class_map(raw.get("class_map"), here),
        column=raw.get("column"),
        labels_per_class=_whole(raw.get("labels_per_class"), f"{here}: labels_per_class"),
        val_per_class=_whole(raw.get("val_per_class"), f"{here}: val_per_class", 0),
        weight=_positive(raw.get("weight", 1.0), f"{here}: weight"), holdout=bool(raw.get("holdout", False)),
    )


def parse_spec(raw: Mapping[str, Any], where: str = "multitask") -> MultiTaskSpec:
    """Check a spec mapping and build :class:`MultiTaskSpec`; every error names the key and the valid choices."""
    _check_keys(raw, SPEC_KEYS, f"{where}: the spec", "a 'tasks' list")
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise ValueError(f"{where}: 'tasks' must be a non-empty list of tasks (each with a 'name')")
    tasks = [_task(t, i, where) for i, t in enumerate(tasks_raw)]
    seen: dict[str, int] = {}
    for i, t in enumerate(tasks):
        if t.name in seen:
            raise ValueError(f"{where}: task name '{t.name}' is used twice (tasks[{seen[t.name]}] and tasks[{i}]); "
                             "task names must be unique")
        seen[t.name] = i
    if not any(not t.holdout for t in tasks):
        raise ValueError(f"{where}: every task is 'holdout: true'; at least one task must be trained")
    shared = raw.get("data")
    orphans = [t.name for t in tasks if t.data is None and shared is None]
    if orphans:
        raise ValueError(f"{where}: task(s) {orphans} have no 'data' and there is no shared top-level 'data'; give "
                         "one or the other")
    weighting = raw.get("weighting", "fixed")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{where}: weighting '{weighting}' is unknown; valid choices: {', '.join(WEIGHTINGS)}")
    sampling = raw.get("sampling", "proportional")
    if sampling not in SAMPLINGS:
        raise ValueError(f"{where}: sampling '{sampling}' is unknown; valid choices: {', '.join(SAMPLINGS)}")
    weighted = [t.name for t in tasks if t.weight != 1.0]
    if weighted and weighting != "fixed":
        raise ValueError(f"{where}: task weight(s) for {weighted} apply to weighting 'fixed' only ('{weighting}' "
                         "learns or adapts its own weights)")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}: options must be a mapping of strategy options, got {options!r}")
    train = {k: raw[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "patience", "monitor",
                                 "seed") if k in raw}
    val_fraction = raw.get("val_fraction", 0.1)
    return MultiTaskSpec(
        tasks=tasks, data=shared, source=None if raw.get("source") is None else str(raw["source"]),
        strategy=str(raw.get("strategy", "finetune")), options=dict(options), weighting=weighting,
        sampling=sampling, temperature=_positive(raw.get("temperature", 2.0), f"{where}: temperature"),
        gradnorm_alpha=_positive(raw.get("gradnorm_alpha", 1.5), f"{where}: gradnorm_alpha"),
        dwa_temperature=_positive(raw.get("dwa_temperature", 2.0), f"{where}: dwa_temperature"),
        baselines=bool(raw.get("baselines", True)), train=train,
        val_fraction=_positive(val_fraction, f"{where}: val_fraction"),
        image_size=_whole(raw.get("image_size"), f"{where}: image_size"),
        max_length=_whole(raw.get("max_length"), f"{where}: max_length"),
        out=None if raw.get("out") is None else str(raw["out"]),
    )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read ``tasks.yaml`` (or ``.json``) into a mapping (paths inside it are relative to the working directory,
    as on the command line)."""
    p = Path(path).expanduser()
    raw = read_structured_file(p, "--config")
    if not isinstance(raw, dict):
        raise ConfigError("config", "a YAML/JSON file holding a mapping with a 'tasks' list", str(p))
    return raw
