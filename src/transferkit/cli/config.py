"""``--config FILE.yaml`` for every command: YAML keys mirror the flags; flags given on the command line win."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read ``path`` and map its keys (``labels-per-class`` or ``labels_per_class``) to the parser's options.

    Unknown keys are an error that lists the valid ones, so a typo never silently falls back to a default.
    """
    data = _read_yaml(path)
    dests = {a.dest for a in parser._actions if a.dest not in ("help", "config", "command")}  # noqa: SLF001
    out, unknown = {}, []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest == "command":  # a saved run config.yaml names its command; accept it
            continue
        if dest not in dests:
            unknown.append(str(key))
        else:
            out[dest] = value
    if unknown:
        raise ValueError(f"--config {path}: unknown option(s) {unknown}; valid: {', '.join(sorted(dests))}")
    return out


def parse_args(parser: argparse.ArgumentParser, subparsers: dict[str, argparse.ArgumentParser],
               argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse once to find the command and ``--config``, apply the file as defaults, parse again."""
    args = parser.parse_args(argv)
    config = getattr(args, "config", None)
    if config and not getattr(args, "config_is_spec", False):  # e.g. multitask: --config is the job's own spec
        sub = subparsers[args.command]
        sub.set_defaults(**load_config_file(config, sub))
        args = parser.parse_args(argv)
    return args


CONFIG_NOTE = "--config FILE.yaml reads options from a YAML file (keys are the flags' names; flags given here win)."
RESUME_NOTE = (" --resume RUN_DIR continues that interrupted run with the options recorded in it (others are ignored; "
               "same as 'transferkit resume RUN_DIR').")


def _take(argv: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` (or ``flag=VALUE``) from ``argv`` and return the value (the last one given)."""
    value = None
    i = 0
    while i < len(argv):
        if argv[i] == flag and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
        elif argv[i].startswith(flag + "="):
            value = argv.pop(i).split("=", 1)[1]
        else:
            i += 1
    return value


def parse_generated(command: str, argv: Sequence[str]) -> Any:
    """Parse a command whose flags are generated from its configuration (:data:`transferkit.options.CONFIGS`) by
    tyro: ``--config FILE.yaml`` supplies the defaults, ``--resume RUN_DIR`` is answered as ``transferkit resume``
    (an :class:`argparse.Namespace` with ``command="resume"``); else the built configuration."""
    import tyro

    from transferkit.options import CONFIGS

    cls = CONFIGS[command]
    argv = list(argv)
    resumable = "resume" in cls.names()
    if resumable and "-h" not in argv and "--help" not in argv:
        run_dir = _take(argv, "--resume")
        if run_dir is not None:
            return argparse.Namespace(command="resume", run_dir=run_dir, progress="--no-progress" not in argv)
    path = _take(argv, "--config")
    default = None
    if path is not None:
        values = _read_yaml(path)
        values.pop("command", None)  # a saved run's config.yaml names its command
        if isinstance(values.get("classes"), list):
            values["classes"] = ",".join(str(c) for c in values["classes"])
        default = cls.from_mapping(values, where=f"--config {path}: ")
        cls.check_types(values)  # argparse read a file's values through each flag's type; tyro takes them as given
    about = " ".join(str(cls.__doc__).split())
    parsed = tyro.cli(cls, args=argv, default=default, prog=f"transferkit {command}",
                      description=f"{about}. {CONFIG_NOTE}" + (RESUME_NOTE if resumable else ""),
                      config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagCreatePairsOff, tyro.conf.UseAppendAction))
    return _keep_unflagged(parsed, default if default is not None else cls(), argv)


def _made_by_constructor(cls: type) -> dict[tuple[str, ...], tuple[str | None, str]]:
    """The fields tyro builds with a constructor (``--option KEY=VALUE``, ``--[no-]deterministic``, ``--seeds N``,
    …): their flags (the constructor's parameters) → (part, field)."""
    import inspect
    from typing import get_type_hints

    out: dict[tuple[str, ...], tuple[str | None, str]] = {}
    owners = [(None, cls)] + [(f.name, type(f.default)) for f in dataclasses.fields(cls)
                              if dataclasses.is_dataclass(f.default)]
    for part, owner in owners:
        for name, hint in get_type_hints(owner, include_extras=True).items():
            for meta in getattr(hint, "__metadata__", ()):
                factory = getattr(meta, "constructor_factory", None)
                if factory is not None:
                    params = inspect.signature(factory()).parameters
                    out[tuple("--" + p.replace("_", "-") for p in params)] = (part, name)
    return out


def _keep_unflagged(parsed: Any, default: Any, argv: Sequence[str]) -> Any:
    """tyro builds a constructor's field from the flags alone (the constructor's own defaults when none is given):
    a field whose flags are absent keeps the default's value (the file's, else the declared default), and
    ``--option`` adds to the file's options."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    for flags, (part, name) in _made_by_constructor(type(parsed)).items():
        holder, base = (getattr(parsed, part), getattr(default, part)) if part else (parsed, default)
        value = getattr(base, name)
        if given & set(flags):
            if name != "options":
                continue
            value = {**(getattr(base, name) or {}), **(getattr(holder, name) or {})} or None
        holder = dataclasses.replace(holder, **{name: value})
        parsed = dataclasses.replace(parsed, **{part: holder}) if part else holder
    return parsed


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ValueError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option: value, got {type(data).__name__}")
    return data
