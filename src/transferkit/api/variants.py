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
        raise ValueError("--strategy: empty variant spec; expected [LABEL=]STRATEGY[:KEY=VALUE...]")
    head, *parts = text.split(":")
    label: str | None = None
    if "=" in head:
        label, _, head = head.partition("=")
        label = label.strip()
        if not label:
            raise ValueError(f"--strategy '{spec}': empty label before '='; expected [LABEL=]STRATEGY[:KEY=VALUE...]")
    name = head.strip()
    if not name:
        raise ValueError(f"--strategy '{spec}': no strategy name; expected [LABEL=]STRATEGY[:KEY=VALUE...]")
    raw: list[tuple[str, str]] = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            if not raw:  # a ':' right after the strategy name with no KEY=VALUE after it
                raise ValueError(f"--strategy '{spec}': '{part}' is not KEY=VALUE; expected "
                                 "[LABEL=]STRATEGY[:KEY=VALUE...], e.g. finetune:bn=frozen")
            raw[-1] = (raw[-1][0], raw[-1][1] + ":" + part)  # a value that itself contains ':'
            continue
        if not key.strip():
            raise ValueError(f"--strategy '{spec}': empty option name in '{part}'")
        raw.append((key.strip(), value))
    options: dict[str, Any] = {}
    for key, value in raw:
        if key in options:
            raise ValueError(f"--strategy '{spec}': option '{key}' given twice")
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
            raise ValueError(f"--strategy {dict(spec)}: unknown key(s) {sorted(unknown)}; "
                             "valid keys: label, strategy, options")
        name = spec.get("strategy")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"--strategy {dict(spec)}: needs 'strategy: NAME'")
        opts = spec.get("options") or {}
        if not isinstance(opts, Mapping):
            raise ValueError(f"--strategy {dict(spec)}: 'options' must be a mapping of option: value")
        label = None if spec.get("label") is None else str(spec["label"]).strip()
        name, options, shown = name.strip(), dict(opts), str(dict(spec))
    elif isinstance(spec, str):
        label, name, options = _parse_spec(spec)
        shown = f"'{spec}'"
    else:
        raise ValueError(f"--strategy: expected a spec string or a mapping, got {type(spec).__name__} {spec!r}")
    try:
        make_strategy(name, options=options)
    except ValueError as exc:
        raise ValueError(f"--strategy {shown}: {exc}") from None
    if label is not None and not label:
        raise ValueError(f"--strategy {shown}: empty label")
    return Variant(label or default_label(name, options), name, options)


def parse_variants(specs: Iterable[str | Mapping[str, Any]]) -> list[Variant]:
    """Parse every spec (see :func:`parse_variant`); two variants with the same label are an error, because
    the label is what cells, tables, plots and resumed results are keyed by."""
    variants = [parse_variant(s) for s in specs]
    if not variants:
        raise ValueError("--strategy: no strategy given")
    seen: dict[str, Variant] = {}
    for v in variants:
        if v.label in seen:
            raise ValueError(f"--strategy: duplicate label '{v.label}' ({seen[v.label].strategy} "
                             f"{seen[v.label].options or ''} and {v.strategy} {v.options or ''}); give each variant "
                             "its own label, e.g. LABEL=STRATEGY:KEY=VALUE")
        seen[v.label] = v
    return variants
