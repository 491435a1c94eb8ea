"""Strategy *variants*: one strategy plus options under a label, e.g. ``l2sp=finetune:regularizer=l2sp``.

A curve or a comparison often pits several configurations of the same strategy against each other
(fine-tuning with and without L2-SP, with frozen BatchNorm, with discriminative learning rates). A variant
spec names one such configuration in a single command-line word::

    [LABEL=]STRATEGY[:KEY=VALUE[:KEY=VALUE...]]

    finetune                                   → label "finetune"
    finetune:bn=frozen                         → label "finetune[bn=frozen]"
    l2sp=finetune:regularizer=l2sp:reg_alpha=0.01
    discr=finetune:lr_decay=0.5

Values are YAML scalars (``0.01`` is a float, ``true`` a bool), as for ``--option``. YAML configs may give
the mapping form ``{"label": ..., "strategy": ..., "options": {...}}`` instead. Every variant is checked by
building its strategy, so a typo fails before any training starts, naming the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import yaml

from transferkit.api.runs import make_strategy
from transferkit.errors import ConfigError

FORM = "[LABEL=]STRATEGY[:KEY=VALUE...]"  # what a variant spec looks like


class Variant(NamedTuple):
    """A labelled strategy configuration (a plain ``(label, strategy, options)`` tuple)."""

    label: str
    strategy: str
    options: dict[str, Any]


def default_label(strategy: str, options: Mapping[str, Any]) -> str:
    """``finetune`` → ``finetune``; with options → ``finetune[bn=frozen,lr_decay=0.5]`` (never ambiguous)."""
    if not options:
        return strategy
    return f"{strategy}[{','.join(f'{k}={_text(v)}' for k, v in options.items())}]"


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _parse_spec(spec: str) -> tuple[str | None, str, dict[str, Any]]:
    text = spec.strip()
    if not text:
        raise ConfigError("strategies", f"a variant {FORM}", spec, "the spec is empty")
    head, *parts = text.split(":")
    label: str | None = None
    if "=" in head:
        label, _, head = head.partition("=")
        label = label.strip()
        if not label:
            raise ConfigError("strategies", f"a variant {FORM}", spec, "empty label before '='")
    name = head.strip()
    if not name:
        raise ConfigError("strategies", f"a variant {FORM}", spec, "no strategy name")
    raw: list[tuple[str, str]] = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            if not raw:  # a ':' right after the strategy name with no KEY=VALUE after it
                raise ConfigError("strategies", f"a variant {FORM}, e.g. finetune:bn=frozen", spec,
                                  f"'{part}' is not KEY=VALUE")
            raw[-1] = (raw[-1][0], raw[-1][1] + ":" + part)  # a value that itself contains ':'
            continue
        if not key.strip():
            raise ConfigError("strategies", f"a variant {FORM}", spec, f"empty option name in '{part}'")
        raw.append((key.strip(), value))
    options: dict[str, Any] = {}
    for key, value in raw:
        if key in options:
            raise ConfigError("strategies", "each option of a variant once", spec, f"option '{key}' given twice")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            options[key] = value
    return label, name, options


def parse_variant(spec: str | Mapping[str, Any]) -> Variant:
    """Parse and validate one variant: a ``[LABEL=]STRATEGY[:KEY=VALUE...]`` string or a mapping
    ``{"label": ..., "strategy": ..., "options": {...}}``; returns ``(label, strategy, options)``.

    The strategy is built once here, so an unknown strategy or option raises a ``ValueError`` listing the
    valid ones before anything is loaded or trained.
    """
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"label", "strategy", "options"}
        if unknown:
            raise ConfigError("strategies", "a mapping with the keys label, strategy, options", dict(spec),
                              f"unknown key(s) {sorted(unknown)}")
        name = spec.get("strategy")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("strategies", "a mapping with 'strategy: NAME'", dict(spec))
        opts = spec.get("options") or {}
        if not isinstance(opts, Mapping):
            raise ConfigError("strategies", "'options' as a mapping of option: value", dict(spec))
        label = None if spec.get("label") is None else str(spec["label"]).strip()
        name, options = name.strip(), dict(opts)
    elif isinstance(spec, str):
        label, name, options = _parse_spec(spec)
    else:
        raise ConfigError("strategies", f"a variant {FORM} or a mapping", spec)
    try:
        make_strategy(name, options=options)
    except ValueError as exc:
        raise ConfigError("strategies", "a known strategy with its valid options", spec, str(exc)) from None
    if label is not None and not label:
        raise ConfigError("strategies", f"a variant {FORM}", spec, "empty label")
    return Variant(label or default_label(name, options), name, options)


def parse_variants(specs: Iterable[str | Mapping[str, Any]]) -> list[Variant]:
    """Parse every spec (see :func:`parse_variant`); two variants with the same label are an error, because
    the label is what cells, tables, plots and resumed results are keyed by."""
    variants = [parse_variant(s) for s in specs]
    if not variants:
        raise ConfigError("strategies", "at least one strategy variant", [])
    seen: dict[str, Variant] = {}
    for v in variants:
        if v.label in seen:
            raise ConfigError("strategies", "variants with distinct labels", v.label,
                              f"duplicate label '{v.label}' ({seen[v.label].strategy} {seen[v.label].options or ''} "
                              f"and {v.strategy} {v.options or ''}); give each variant its own label, e.g. "
                              "LABEL=STRATEGY:KEY=VALUE")
        seen[v.label] = v
    return variants
