"""``--config FILE.yaml`` for every command: YAML keys mirror the flags; flags given on the command line win."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read ``path`` and map its keys (``labels-per-class`` or ``labels_per_class``) to the parser's options.

    Unknown keys are an error that lists the valid ones, so a typo never silently falls back to a default.
    """
    import yaml  # here, not at the top: ``transferkit --help`` should not pay for it

    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ValueError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option: value, got {type(data).__name__}")
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
