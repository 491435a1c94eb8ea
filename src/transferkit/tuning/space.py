"""The search space of a hyper-parameter search: which ``transfer`` arguments are searched, over which values.

A space maps a name to a spec:

* ``loguniform:LOW:HIGH`` — a real number drawn uniformly in log space, ``0 < LOW < HIGH`` (learning rate,
  weight decay: their useful values span orders of magnitude);
* ``uniform:LOW:HIGH`` — a real number drawn uniformly, ``LOW < HIGH``;
* ``int:LOW:HIGH`` — a whole number in ``[LOW, HIGH]``, both ends included;
* ``choice:A,B,C`` — one of the values, each read as YAML (``choice:none,light``, ``choice:0,0.2``,
  ``choice:true,false``, ``choice:null,5``); in a YAML space file a list means the same.

Names are ``transfer``'s training arguments (:data:`TRAIN_PARAMS`; a dash may stand for the underscore, as in
the flags) or a strategy option as ``option.KEY`` (``transferkit strategies`` lists each strategy's options).
Parsing checks names, spec forms and bounds; :func:`transferkit.api.tune` then checks every bound and choice
against ``transfer``'s own validation — all before the first trial trains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from transferkit.errors import ConfigError

if TYPE_CHECKING:
    import optuna

OPTION_PREFIX = "option."
SPEC_FORMS = ("loguniform:LOW:HIGH", "uniform:LOW:HIGH", "int:LOW:HIGH", "choice:A,B,C")
REAL, WHOLE, CATEGORY = "real number", "whole number", "category"
# transfer's training arguments that may be searched, by the kind of value each takes
TRAIN_PARAMS: dict[str, str] = {
    "lr": REAL, "weight_decay": REAL, "mixup": REAL, "cutmix": REAL,
    "batch_size": WHOLE, "epochs": WHOLE, "patience": WHOLE, "freeze": WHOLE, "warmup_epochs": WHOLE,
    "optimizer": CATEGORY, "schedule": CATEGORY, "augment": CATEGORY, "class_weight": CATEGORY,
    "sampler": CATEGORY, "probe_layer": CATEGORY, "head_init": CATEGORY,
}
_KINDS_FOR = {REAL: ("loguniform", "uniform", "choice"), WHOLE: ("int", "choice"), CATEGORY: ("choice",)}
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # YAML 1.1 reads 1e-3 as a string; we do not


@dataclass(frozen=True)
class SearchParam:
    """One searched argument. ``kind`` is ``loguniform`` or ``uniform`` (a float in ``[low, high]``), ``int``
    (an integer in ``[low, high]``) or ``choice`` (one of ``choices``)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def spec(self) -> str:
        """The spec in ``--param NAME=SPEC`` form; ``parse_spec(name, p.spec) == p``."""
        if self.kind == "choice":
            return "choice:" + ",".join(_show(c) for c in self.choices)
        return f"{self.kind}:{self.low}:{self.high}"

    @property
    def option(self) -> str | None:
        """``KEY`` of an ``option.KEY`` parameter (a strategy option); ``None`` for a training argument."""
        return self.name[len(OPTION_PREFIX):] if self.name.startswith(OPTION_PREFIX) else None

    def extremes(self) -> tuple[Any, ...]:
        """The values that bound what a trial can be given: both ends of a range, or every choice."""
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def suggest(self, trial: optuna.Trial) -> Any:
        """This parameter's value for ``trial``, drawn by the study's sampler."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))  # type: ignore[arg-type]
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore[arg-type]
                                   log=self.kind == "loguniform")


def fmt_value(value: Any) -> str:
    """A searched value as a trial's line and the tune report show it: a float to 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    if isinstance(value, str) and (_scalar(text) != value or "," in text):
        return "'" + text.replace("'", "''") + "'"  # a string that would read back as another type
    return text


def _scalar(text: str) -> Any:
    text = text.strip()
    value = yaml.safe_load(text)
    if isinstance(value, str) and _NUMBER.fullmatch(text):
        return float(text)
    return value


def _choice(name: str, spec: Any, item: Any) -> Any:
    if isinstance(item, str):
        if not item.strip():
            raise ValueError(f"search parameter '{name}' ({spec}): an empty choice; write null for None")
        try:
            item = _scalar(item)
        except yaml.YAMLError:
            raise ValueError(f"search parameter '{name}' ({spec}): choice '{item}' is not a YAML value") from None
    if item is not None and not isinstance(item, bool | int | float | str):
        raise ValueError(f"search parameter '{name}' ({spec}): choice {item!r} is a {type(item).__name__}; choices "
                         "are single values (number, string, true/false, null)")
    return item


def parse_spec(name: str, spec: Any) -> SearchParam:
    """``("lr", "loguniform:1e-4:1e-2")`` → a :class:`SearchParam`; a list or tuple is a choice. A malformed spec
    is a ``ValueError`` naming the parameter, the spec and the valid forms."""
    if isinstance(spec, list | tuple):
        choices = tuple(_choice(name, spec, c) for c in spec)
        return _checked_choice(name, spec, choices)
    if not isinstance(spec, str):
        raise ValueError(f"search parameter '{name}': expected a spec ({', '.join(SPEC_FORMS)}) or a list of "
                         f"choices, got {spec!r}")
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind == "choice" and sep:
        return _checked_choice(name, spec, tuple(_choice(name, spec, c) for c in rest.split(",")))
    if kind not in ("loguniform", "uniform", "int") or not sep:
        raise ValueError(f"search parameter '{name}': '{spec}' is not a spec; valid forms: {', '.join(SPEC_FORMS)} "
                         "(e.g. loguniform:1e-4:1e-1, int:0:2, choice:none,light)")
    bounds = rest.split(":")
    if len(bounds) != 2 or not all(b.strip() for b in bounds):
        raise ValueError(f"search parameter '{name}' ({spec}): expected {kind}:LOW:HIGH, e.g. {kind}:"
                         f"{'0:3' if kind == 'int' else '1e-4:1e-1'}")
    try:
        low, high = (int(b) if kind == "int" else float(b) for b in bounds)
    except ValueError:
        what = "whole numbers" if kind == "int" else "numbers"
        raise ValueError(f"search parameter '{name}' ({spec}): LOW and HIGH must be {what}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"search parameter '{name}' ({spec}): LOW and HIGH must be finite")
    if low >= high:
        raise ValueError(f"search parameter '{name}' ({spec}): LOW ({low}) must be below HIGH ({high}); for a fixed "
                         "value leave the parameter out of the search and set it directly")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"search parameter '{name}' ({spec}): loguniform needs LOW > 0 (a log scale has no 0 or "
                         "negative values); use uniform:LOW:HIGH for ranges that include 0")
    return SearchParam(name, kind, low, high)


def _checked_choice(name: str, spec: Any, choices: tuple[Any, ...]) -> SearchParam:
    if not choices:
        raise ValueError(f"search parameter '{name}' ({spec}): no choices; expected choice:A,B,C")
    seen: list[Any] = []
    for c in choices:
        if any(c == s and type(c) is type(s) for s in seen):
            raise ValueError(f"search parameter '{name}' ({spec}): choice {_show(c)} is given twice")
        seen.append(c)
    return SearchParam(name, "choice", choices=choices)


def _check_name(name: str, strategy: str, options: Sequence[str]) -> str:
    if name.startswith(OPTION_PREFIX):
        key = name[len(OPTION_PREFIX):]
        if key not in options:
            raise ValueError(f"search parameter '{name}': strategy '{strategy}' has no option '{key}'; its options: "
                             f"{', '.join(OPTION_PREFIX + o for o in options) or 'none'}")
        return name
    canonical = name.replace("-", "_")
    if canonical not in TRAIN_PARAMS:
        opts = ", ".join(OPTION_PREFIX + o for o in options) or "none"
        raise ValueError(f"unknown search parameter '{name}'; valid: {', '.join(TRAIN_PARAMS)}, or a strategy option "
                         f"of '{strategy}' as option.KEY ({opts})")
    return canonical


def parse_space(space: Mapping[str, Any], strategy: str, options: Sequence[str]) -> list[SearchParam]:
    """Parse ``{name: spec}`` for ``strategy`` whose option names are ``options``.

    Checks every name (a :data:`TRAIN_PARAMS` name or ``option.KEY``), spec and bound, and that the spec suits
    the argument (``lr`` takes a range of real numbers or a choice, ``optimizer`` only a choice, …).
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"search space: expected a mapping of name: spec, got {type(space).__name__}")
    if not space:
        raise ValueError("the search space is empty; give at least one NAME=SPEC (e.g. lr=loguniform:1e-4:1e-1), or "
                         "none at all for the strategy's default space")
    params: dict[str, SearchParam] = {}
    for raw, spec in space.items():
        name = _check_name(str(raw).strip(), strategy, options)
        if name in params:
            raise ValueError(f"search parameter '{name}' is given twice (as '{raw}' too)")
        param = parse_spec(name, spec)
        kind = TRAIN_PARAMS.get(name)
        if kind is not None and param.kind not in _KINDS_FOR[kind]:
            forms = [f for f in SPEC_FORMS if f.split(":")[0] in _KINDS_FOR[kind]]
            raise ValueError(f"search parameter '{name}' ({param.spec}) takes a {kind}: use {' or '.join(forms)}")
        params[name] = param
    for plain, key in (("freeze", "freeze"), ("probe_layer", "layer")):
        if plain in params and OPTION_PREFIX + key in params:
            raise ValueError(f"search parameters '{plain}' and '{OPTION_PREFIX}{key}' set the same strategy option; "
                             "give one of them")
    return list(params.values())


def default_space(strategy: str, default_lr: float) -> dict[str, str]:
    """The space searched when none is given: the learning rate over two decades around the strategy's own
    default (``default_lr`` / 10 … × 10), weight decay 1e-6 … 1e-2, and for ``finetune`` how many of the first
    parameter groups stay frozen (0 … 2, Yosinski et al., 2014)."""
    space = {"lr": f"loguniform:{default_lr / 10:g}:{default_lr * 10:g}", "weight_decay": "loguniform:1e-06:0.01"}
    if strategy == "finetune":
        space["freeze"] = "int:0:2"
    return space


def load_space_file(path: str | Path) -> dict[str, Any]:
    """A YAML space file: a mapping ``name: spec`` (``lr: loguniform:1e-4:1e-1``, ``augment: [none, light]``)."""
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError("space", "a readable YAML file", str(path), str(exc.strerror or exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("space", "a valid YAML file", str(path), str(exc)) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError("space", "a file holding a mapping of name: spec, e.g. 'lr: loguniform:1e-4:1e-1'",
                          str(path))
    return {str(k): v for k, v in data.items()}
