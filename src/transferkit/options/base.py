"""The machinery every configuration shares: :class:`JobConfig` (flat names, building, flattening,
checking a file's values) and the parsers of values the command line gives as text."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

from transferkit.errors import ConfigError
from transferkit.lazy import lazy_module

tyro = lazy_module("tyro")  # flags are made only when a command line is parsed


C = TypeVar("C", bound="JobConfig")




def parse_key_values(option: tuple[str, ...] = ()) -> dict[str, Any]:
    """``("bn=frozen", "reg_alpha=0.01")`` → ``{"bn": "frozen", "reg_alpha": 0.01}`` (values read as YAML scalars):
    the command line's repeatable ``--option KEY=VALUE``."""
    import yaml

    out: dict[str, Any] = {}
    for item in option:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError("option", "KEY=VALUE, e.g. regularizer=l2sp", item)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def parse_labels_per_class(value: int | str | None | Iterable[int | str | None]) -> list[int | None]:
    """``"1,5,10,all"`` / ``[1, 5, None]`` / ``5`` → ``[1, 5, 10, None]``: a grid's budgets, sorted, ``None`` ("all")
    last. ``None``, ``"all"`` and ``"none"`` mean every labelled training image (minus validation)."""
    items: Iterable[Any] = str(value).split(",") if isinstance(value, str) else \
        [value] if value is None or isinstance(value, int) else value
    out: list[int | None] = []
    for item in items:
        text = "all" if item is None else str(item).strip().lower()
        if not text:
            continue
        if text in ("all", "none", "null"):
            k: int | None = None
        else:
            try:
                k = int(text)
            except ValueError:
                raise ConfigError("labels_per_class", "budgets such as 1,5,10,50,all", item,
                                  f"'{item}' is neither a number nor 'all'") from None
            if k < 1:
                raise ConfigError("labels_per_class", "budgets of at least 1 (or 'all')", k)
        if k in out:
            raise ConfigError("labels_per_class", "each budget once", k or "all", "given twice")
        out.append(k)
    if not out:
        raise ConfigError("labels_per_class", "at least one budget, e.g. 1,5,10,all", value)
    return sorted(out, key=lambda k: (k is None, k or 0))


def parse_seeds(value: int | str | Iterable[int | str]) -> list[int]:
    """A grid's seeds: a count ``3`` / ``"3"`` (seeds 0, 1, 2), a list ``"0,3,7"``, or any iterable of whole numbers;
    at least one, no duplicates."""
    try:
        if isinstance(value, str) and "," not in value or isinstance(value, int) and not isinstance(value, bool):
            out = list(range(int(value)))
        else:
            out = [int(s) for s in (value.split(",") if isinstance(value, str) else value) if str(s).strip()]
    except (TypeError, ValueError):
        raise ConfigError("seeds", "a count N (seeds 0..N-1) or a list of whole numbers such as 0,3,7", value) from None
    if not out or len(set(out)) != len(out):
        raise ConfigError("seeds", "at least one seed and no duplicates", value)
    return out


def parse_specs(value: str | Iterable[str | Mapping[str, Any]]) -> list[str | dict[str, Any]]:
    """A grid's strategy variants: ``"scratch,finetune"`` or a list of specs (each may hold several, comma-separated)
    or mappings (:func:`transferkit.api.variants.parse_variant`)."""
    items = [value] if isinstance(value, str) else list(value)
    return [dict(item) if isinstance(item, Mapping) else part.strip() for item in items
            for part in ([item] if isinstance(item, Mapping) else str(item).split(",")) if part]


def _specs_flags(strategies: tuple[str, ...] = (), strategy: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The command line's ``--strategies a,b`` and/or ``--strategy SPEC`` (both repeatable)."""
    return tuple(str(s) for s in parse_specs([*strategies, *strategy]))


def parse_names(value: str | Iterable[Any] | None) -> list[str]:
    """``"a, b,c"`` or ``["a", "b"]`` → ``["a", "b", "c"]``: a list of names as the command line gives it (one
    comma-separated text) or as Python and ``--config`` files give it (a list); blanks dropped, order kept."""
    items = str(value).split(",") if isinstance(value, str) else [] if value is None else value
    return [text for text in (str(item).strip() for item in items) if text]


def _text_flag(flag: str, default: str | None | object = inspect.Parameter.empty) -> Any:
    """The tyro marker of a field the command line gives as one text value (``--methods a,b``, ``--seeds 3``,
    ``--space FILE``) while Python and ``--config`` files may give a list or a mapping: a constructor that keeps the
    text as given, for the job to read. tyro names a constructor-made flag after the constructor's parameter, so the
    function is made here with the flag's name as its one parameter (one factory instead of one identity function
    per flag)."""

    def keep(*args: Any, **kwargs: Any) -> Any:
        return (*args, *kwargs.values())[0]

    annotation = str if default is inspect.Parameter.empty or default is not None else str | None
    keep.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(flag, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)],
        return_annotation=annotation)
    keep.__annotations__ = {flag: annotation, "return": annotation}
    keep.__name__ = keep.__qualname__ = f"_{flag}_text"
    return tyro.conf.arg(constructor=keep)



class JobConfig:
    """What every job's configuration shares: building from flat keyword names, and flattening back.

    A configuration is a frozen dataclass whose fields are either values or parts (dataclasses whose fields are
    values); every value has one flat name across the tree (``labels_per_class``, ``lr``), which is what Python
    keyword arguments, YAML keys and ``config.yaml`` use. ``POSITIONAL`` names the fields a job also takes by
    position (``transfer(source, data, classes)``).
    """

    POSITIONAL: ClassVar[tuple[str, ...]] = ()
    ALIASES: ClassVar[dict[str, str]] = {}  # older names of fields, read from files (a saved run's config.yaml)
    SPEC_FILE: ClassVar[bool] = False  # its --config flag is the job's own spec file (not an options file)

    @classmethod
    def names(cls) -> list[str]:
        """Every flat name, in declaration order."""
        out = []
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            if part is None:
                out.append(f.name)
            else:
                out.extend(g.name for g in fields(part))
        return out

    @classmethod
    def flag_names(cls) -> dict[str, str]:
        """The fields whose command-line flag is named otherwise (``tyro.conf.arg(name=…)``, read from the
        annotation's text): field → flag, e.g. ``decode_timeout_s`` → ``--decode-timeout``."""
        out = {}
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            for g in fields(part) if part is not None else [f]:
                m = re.search(r"tyro\.conf\.arg\([^)]*\bname=['\"]([^'\"]+)", str(g.type))
                if m:
                    out[g.name] = "--" + m.group(1).replace("_", "-")
        return out

    @classmethod
    def build(cls: type[C], *args: Any, **options: Any) -> C:
        """The configuration from positional values (``POSITIONAL``) and flat keyword names; an unknown name is a
        ``ValueError`` listing the valid ones, a value given twice a ``TypeError``."""
        if len(args) > len(cls.POSITIONAL):
            raise TypeError(f"{cls.__name__}: at most {len(cls.POSITIONAL)} positional values "
                            f"({', '.join(cls.POSITIONAL)}), got {len(args)}")
        for name, value in zip(cls.POSITIONAL, args, strict=False):
            if name in options:
                raise TypeError(f"{cls.__name__}: {name} given twice (by position and by name)")
            options[name] = value
        return cls.from_mapping(options)

    @classmethod
    def given(cls: type[C], config: C | None, args: tuple[Any, ...], options: dict[str, Any]) -> C:
        """A job's configuration: ``config`` as given, or built (:meth:`build`) from its positional values and flat
        keyword names — not both."""
        if config is None:
            return cls.build(*args, **options)
        if args or options:
            got = ", ".join(options) or "positional values"
            raise TypeError(f"give either config= or options, not both (got {got})")
        return config

    def record(self, command: str) -> dict[str, Any]:
        """What a run's ``config.yaml`` records: the command and every flat value (paths as text)."""
        return {"command": command, **{k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                                       for k, v in self.flat().items()}}

    @classmethod
    def from_mapping(cls: type[C], values: Mapping[str, Any], default: C | None = None, where: str = "") -> C:
        """The configuration with ``values`` (flat names; ``-`` read as ``_``) over ``default`` (else the declared
        defaults). Unknown names are a ``ValueError`` listing the valid ones (``where`` prefixes it: the file)."""
        tuples = cls._tuple_names()
        values = {cls.ALIASES.get(k, k): tuple(v) if isinstance(v, list) and cls.ALIASES.get(k, k) in tuples else v
                  for k, v in ((str(k).replace("-", "_"), v) for k, v in values.items())}
        valid = cls.names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"{where or cls.__name__ + ': '}unknown option(s) {unknown}; valid: "
                             f"{', '.join(sorted(valid))}")
        base = default if default is not None else cls()  # type: ignore[call-arg]
        top: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            if part is None:
                if f.name in values:
                    top[f.name] = values[f.name]
                continue
            mine = {g.name: values[g.name] for g in fields(part) if g.name in values}
            if mine:
                top[f.name] = dataclasses.replace(getattr(base, f.name), **mine)
        return dataclasses.replace(base, **top)  # type: ignore[type-var]

    @classmethod
    def check_types(cls, values: Mapping[str, Any]) -> None:
        """Refuse a value whose type its field does not take (a YAML file's ``labels_per_class: ten``): a
        :class:`~transferkit.errors.ConfigError` naming the field and the type. The Python API does not call this:
        it also takes paths, mappings and model objects where the command line takes text."""
        import typeguard

        hints = cls._hints()
        for name, value in values.items():
            name = cls.ALIASES.get(str(name).replace("-", "_"), str(name).replace("-", "_"))
            value = tuple(value) if isinstance(value, list) else value  # YAML has lists where fields take tuples
            hint = hints.get(name)
            if hint is None:
                continue
            try:
                typeguard.check_type(value, hint)
            except typeguard.TypeCheckError:
                shown = (hint.__name__ if isinstance(hint, type) else str(hint)).replace("typing.", "").replace(
                    "NoneType", "None")
                raise ConfigError(name, f"a value of type {shown}", value) from None

    @classmethod
    def _tuple_names(cls) -> set[str]:
        """The flat names whose type takes a tuple (YAML and JSON give lists there). Read from the annotations' text
        (``from __future__ import annotations``), so building a configuration never evaluates the command-line
        markers in them (nor imports tyro)."""
        out: set[str] = set()
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            for g in fields(part) if part is not None else [f]:
                if "tuple[" in str(g.type):
                    out.add(g.name)
        return out

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        """Every flat name's type (``Annotated`` unwrapped)."""
        hints: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            hints.update(get_type_hints(part) if part is not None else {f.name: get_type_hints(cls)[f.name]})
        return hints

    def flat(self) -> dict[str, Any]:
        """Every value under its flat name (what ``config.yaml`` records and :meth:`from_mapping` reads back)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if is_dataclass(value) and not isinstance(value, type):
                out.update({g.name: getattr(value, g.name) for g in fields(value)})
            else:
                out[f.name] = value
        return out


def _part_type(cls: type, f: dataclasses.Field) -> type | None:
    """The dataclass a field holds when it is a part (read from its default), else ``None``."""
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
    return type(default) if is_dataclass(default) and not isinstance(default, type) else None
