"""Every command's flags, generated from its configuration by tyro; ``--config FILE.yaml`` (keys are the flat
option names, flags given on the command line win) and ``--resume RUN_DIR``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    """Parse a command's flags, generated from its configuration (:data:`transferkit.options.CONFIGS`) by tyro:
    ``--config FILE.yaml`` supplies the defaults, ``--resume RUN_DIR`` is answered as ``transferkit resume`` (a
    :class:`~transferkit.options.ResumeConfig`); else the built configuration. A configuration with
    ``SPEC_FILE`` (multitask) takes ``--config`` as its own field instead."""
    import tyro

    from transferkit import tyro_fast
    from transferkit.options import CONFIGS, ResumeConfig

    tyro_fast.install()

    cls = CONFIGS[command]
    argv = list(argv)
    resumable = "resume" in cls.names() and not cls.SPEC_FILE
    if resumable and "-h" not in argv and "--help" not in argv:
        run_dir = _take(argv, "--resume")
        if run_dir is not None:
            return ResumeConfig(out=run_dir, progress="--no-progress" not in argv)
    path = None if cls.SPEC_FILE else _take(argv, "--config")
    default = None
    if path is not None:
        values = _read_yaml(path)
        values.pop("command", None)  # a saved run's config.yaml names its command
        if isinstance(values.get("classes"), list):
            values["classes"] = ",".join(str(c) for c in values["classes"])
        default = cls.from_mapping(values, where=f"--config {path}: ")
        cls.check_types(values)  # argparse read a file's values through each flag's type; tyro takes them as given
    about = ". ".join(" ".join(part.split()).rstrip(".") for part in str(cls.__doc__).split("\n\n") if part.strip())
    note = "" if cls.SPEC_FILE else f" {CONFIG_NOTE}" + (RESUME_NOTE if resumable else "")
    parsed = tyro.cli(cls, args=argv, default=default, prog=f"transferkit {command}",
                      description=f"{about.rstrip('.')}.{note}",
                      config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagCreatePairsOff, tyro.conf.UseAppendAction))
    return _keep_unflagged(parsed, default if default is not None else cls(), argv)


def made_by_constructor(cls: type) -> dict[tuple[str, ...], tuple[str | None, str]]:
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
    for flags, (part, name) in made_by_constructor(type(parsed)).items():
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
