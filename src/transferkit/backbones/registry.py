"""Backbones by name: ``register_backbone`` / ``create_backbone`` / ``list_backbones`` (timm's pattern).

A factory has the signature ``factory(num_classes, pretrained, in_chans, img_size, **kwargs) -> Backbone``.
``pretrained`` is always explicit: asking for weights that are not on this machine is an error, never a
silent random initialisation.

**Families** open whole model libraries under a prefix: ``create_backbone("timm:resnet18", ...)`` calls the
factory registered with ``register_backbone_family("timm", ...)`` as ``factory(arch="resnet18", num_classes=…,
pretrained=…, **kwargs)``; the family factory checks for weights itself (they may come from a file).

**Rebuilding from untrusted configuration** (a bundle's ``architecture``): :func:`validate_config` checks a config
before anything is built — every ``kwargs`` key must be on its backbone's or family's allow-list (``config_kwargs``:
name → check; built-ins default to their factory's parameters), so a bundle cannot pass ``checkpoint_path``,
``weights``, ``pretrained_cfg_overlay``, ``cache_dir`` … to a library. Inside :func:`sealed` factories read nothing
the config names (no path, no hub name) and never download.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from transferkit.backbones.base import Backbone, InputSpec
from transferkit.registry import Registry, source_file

Factory = Callable[..., Backbone]
Check = Callable[[Any], "str | None"]  # a config value → what is wrong with it (None: fine)

MAX_CLASSES = 100_000  # widest head a config may ask for
MAX_MEMBERS = 16  # members of a composite model (fused, fused_features)
MAX_NESTING = 3  # composite models inside composite models


# -- checks of configuration values (each returns what is wrong, or None) ------------------------------------------
def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_in(lo: int, hi: int, optional: bool = False) -> Check:
    """An integer in ``[lo, hi]`` (or ``None`` when ``optional``)."""
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        return None if is_int(v) and lo <= v <= hi else f"must be a whole number in [{lo}, {hi}], got {v!r}"[:200]
    return check


def float_in(lo: float, hi: float) -> Check:
    """A finite number in ``[lo, hi)``."""
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v < hi
        return None if ok else f"must be a number in [{lo}, {hi}), got {v!r}"[:200]
    return check


def one_of(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        ok = any(v == c and type(v) is type(c) for c in choices)
        return None if ok else f"must be one of {', '.join(map(repr, choices))}, got {v!r}"[:200]
    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"[:200]


def scalar(v: Any) -> str | None:
    """A number, true/false or null — never a string (which could name a path or a URL)."""
    ok = v is None or isinstance(v, bool) or (isinstance(v, (int, float)) and math.isfinite(v))
    return None if ok else f"must be a number, true/false or null, got {type(v).__name__}"


def numbers(positive: bool = False, max_len: int = 64) -> Check:
    """A list of finite numbers (each > 0 when ``positive``), or null."""
    def check(v: Any) -> str | None:
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= max_len:
            return f"must be a list of 1 to {max_len} numbers, got {v!r}"[:200]
        for x in v:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or (positive and x <= 0):
                return f"must hold finite numbers{' > 0' if positive else ''}, got {x!r}"[:200]
        return None
    return check


def _unbounded_repeat_of_alternatives(tree: Any, inside: bool = False) -> bool:
    """Whether a parsed regex has a ``*``/``+``/``{n,}`` around another repeat or an alternation — the shape of
    catastrophic backtracking (``(a+)+``, ``(a|a)*``)."""
    from re import _constants as c  # type: ignore[attr-defined]

    for op, arg in tree:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            lo, hi, sub = arg
            unbounded = hi == c.MAXREPEAT
            if inside and (unbounded or hi > 1):
                return True
            if _unbounded_repeat_of_alternatives(sub, inside or unbounded):
                return True
        elif op == c.BRANCH:
            if inside:
                return True
            if any(_unbounded_repeat_of_alternatives(b, inside) for b in arg[1]):
                return True
        elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
            sub = arg[-1]
            if _unbounded_repeat_of_alternatives(sub, inside):
                return True
        elif op in (c.ASSERT, c.ASSERT_NOT):
            if _unbounded_repeat_of_alternatives(arg[1], inside):
                return True
        elif op == c.GROUPREF_EXISTS:
            return True
    return False


def regex_groups(v: Any) -> str | None:
    """``{group name: regex}`` over parameter names (or null): at most 64 short patterns, none that backtracks
    catastrophically."""
    if v is None:
        return None
    if not isinstance(v, dict) or not 1 <= len(v) <= 64:
        return f"must be an object of 1 to 64 group name → regex, got {type(v).__name__}"
    for name, pattern in v.items():
        if not isinstance(pattern, str) or not 0 < len(pattern) <= 256 or len(name) > 128:
            return f"group {name[:40]!r}: a regex of 1 to 256 characters, got {pattern!r}"[:200]
        try:
            from re import _parser  # type: ignore[attr-defined]

            tree = _parser.parse(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            return f"group {name[:40]!r}: not a valid regex ({exc})"
        if _unbounded_repeat_of_alternatives(tree):
            return f"group {name[:40]!r}: nested repetition ({pattern[:60]!r}) could backtrack for ever; write it " \
                   "without a repeated group"
    return None


COMMON_CHECKS: dict[str, Check] = {  # built-in factories' parameters, by name
    "in_chans": int_in(1, 64),
    "img_size": int_in(1, 4096, optional=True),
    "depth": int_in(1, 32),
    "width": int_in(1, 1024),
}


# -- sealed rebuilding ----------------------------------------------------------------------------------------------
_SEALED: contextvars.ContextVar[bool] = contextvars.ContextVar("transferkit_sealed_rebuild", default=False)


@contextlib.contextmanager
def sealed() -> Iterator[None]:
    """Build from untrusted configuration: factories take nothing from outside the caller's files (no path or hub
    name from the config is opened) and never download; pretrained weights only from local weight packages or
    the libraries' existing caches."""
    token = _SEALED.set(True)
    try:
        yield
    finally:
        _SEALED.reset(token)


def is_sealed() -> bool:
    """Whether a :func:`sealed` rebuild is under way (in this thread)."""
    return _SEALED.get()


@dataclass(frozen=True)
class BackboneInfo:
    """What ``transferkit backbones`` shows about a registered backbone."""

    name: str
    description: str
    default_size: int
    weights_available: Callable[[], bool]
    default_channels: int = 1
    weights_hint: str = ""  # how to get the pretrained weights (shown when they are missing)

    @property
    def modality(self) -> str:
        """``"text"`` for a text encoder (registered with 0 input channels), else ``"image"``."""
        return "text" if self.default_channels == 0 else "image"


@dataclass(frozen=True)
class BackboneFamily:
    """A prefix (``timm``, ``torchvision``) that opens every architecture of a model library."""

    prefix: str
    description: str
    factory: Factory  # factory(arch, num_classes=..., pretrained=..., **kwargs) -> Backbone
    info: Callable[[str], BackboneInfo]  # arch -> what `transferkit backbones` would show for it
    config_kwargs: Mapping[str, Check] = field(default_factory=dict)  # what a config may pass (allow-list)


BACKBONES: Registry[tuple[BackboneInfo, Factory]] = Registry("backbones", "backbone")
BACKBONE_FAMILIES: Registry[BackboneFamily] = Registry("backbone-families", "backbone family", "backbone families",
                                              label=lambda e: e.name + ":")
_CONFIG_KWARGS: dict[str, dict[str, Check]] = {}  # built-in name -> its allow-list of config kwargs


def register_backbone(
    name: str,
    description: str,
    default_size: int = 28,
    weights_available: Callable[[], bool] = lambda: False,
    default_channels: int = 1,
    weights_hint: str = "",
    config_kwargs: Mapping[str, Check] | None = None,
) -> Callable[[Factory], Factory]:
    """Register a backbone factory under ``name``; ``weights_available`` says whether pretrained weights
    can be loaded on this machine (shown by ``transferkit backbones``), ``weights_hint`` how to get them.

    ``config_kwargs`` (name → check) are the keyword arguments a stored config (a bundle) may pass to the factory;
    by default the factory's own named parameters (besides ``num_classes`` and ``pretrained``), checked by
    :data:`COMMON_CHECKS` or, for other names, allowed as numbers/booleans only (never strings: no paths)."""

    def wrap(factory: Factory) -> Factory:
        if ":" in name:
            raise ValueError(f"backbone names cannot contain ':' (reserved for families), got '{name}'")
        info = BackboneInfo(name, description, default_size, weights_available, default_channels, weights_hint)
        BACKBONES.add(name, (info, factory), summary=description, where=source_file(factory))
        if config_kwargs is not None:
            _CONFIG_KWARGS[name] = dict(config_kwargs)
        else:
            params = [p for p in inspect.signature(factory).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                      and p.name not in ("num_classes", "pretrained")]
            _CONFIG_KWARGS[name] = {p.name: COMMON_CHECKS.get(p.name, scalar) for p in params}
        return factory

    return wrap


def register_backbone_family(
    prefix: str, description: str, info: Callable[[str], BackboneInfo],
    config_kwargs: Mapping[str, Check] | None = None,
) -> Callable[[Factory], Factory]:
    """Register ``factory(arch, num_classes, pretrained, **kwargs)`` for every name ``"<prefix>:<arch>"``;
    ``config_kwargs`` (name → check) are the only keyword arguments a stored config (a bundle) may pass."""

    def wrap(factory: Factory) -> Factory:
        BACKBONE_FAMILIES.add(prefix, BackboneFamily(prefix, description, factory, info, dict(config_kwargs or {})),
                     summary=description, where=source_file(factory))
        return factory

    return wrap


def list_backbone_families() -> list[BackboneFamily]:
    """All registered families (``timm:``, ``torchvision:``), sorted by prefix."""
    return [e.obj for e in BACKBONE_FAMILIES.entries()]


def _family(name: str) -> tuple[BackboneFamily, str] | None:
    prefix, sep, arch = name.partition(":")
    if not sep:
        return None
    if prefix not in BACKBONE_FAMILIES:
        raise BACKBONE_FAMILIES.unknown(prefix + ":", f" in '{name}'")
    if not arch:
        raise ValueError(f"'{name}' names no architecture; write e.g. '{prefix}:resnet18'")
    return BACKBONE_FAMILIES.get(prefix), arch


def list_backbones() -> list[BackboneInfo]:
    """All registered backbones, sorted by name."""
    return [e.obj[0] for e in BACKBONES.entries()]


def backbone_info(name: str) -> BackboneInfo:
    family = _family(name)
    if family is not None:
        return family[0].info(family[1])
    return BACKBONES.get(name)[0]


def create_backbone(
    name: str,
    num_classes: int | None = None,
    pretrained: bool = False,
    cut_at: str | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build backbone ``name`` with a ``num_classes``-way head.

    Parameters
    ----------
    num_classes:
        Width of the new head (``None``: the architecture's own default, e.g. 1000 for ImageNet models).
    pretrained:
        Load the backbone's pretrained weights; an error if it has none on this machine.
    cut_at:
        Drop the stages after this one (a feature-transfer model, see :meth:`Backbone.truncate`).
    kwargs:
        Architecture options (``in_chans``, ``img_size``, …); for a family (``"timm:resnet18"``) also
        ``weights=PATH``.
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    family = _family(name)
    if family is not None:  # the family checks for weights itself: they may come from a file
        model = family[0].factory(family[1], pretrained=pretrained, **kwargs)
        if cut_at is not None:
            model.truncate(cut_at)
        return model
    info = backbone_info(name)
    if pretrained and not info.weights_available():
        raise ValueError(
            f"backbone '{name}' has no pretrained weights on this machine. "
            + (f"{info.weights_hint}. " if info.weights_hint else "")
            + f"Or pretrain it on a source task (backbone={name} in 'transferkit pretrain' or tk.pretrain) and pass "
            "that run as the source, or use pretrained=False for a random initialisation."
        )
    model = BACKBONES.get(name)[1](pretrained=pretrained, **kwargs)
    if cut_at is not None:
        model.truncate(cut_at)
    return model


def build_from_config(config: dict[str, Any]) -> Backbone:
    """Rebuild an architecture (random weights) from :meth:`Backbone.config` — composite ones
    (:class:`~transferkit.backbones.fused.FeatureFusionBackbone`) member by member."""
    if config.get("arch") == "fused_features":
        from transferkit.backbones.fused import FeatureFusionBackbone  # imports this module

        return FeatureFusionBackbone.from_config(config, build_from_config)
    model = create_backbone(
        config["arch"], num_classes=config["num_classes"], pretrained=False, cut_at=config.get("cut_at"),
        **config.get("kwargs", {}),
    )
    if config.get("head_hidden"):
        model.set_bottleneck(config["num_classes"], int(config["head_hidden"]))
    if config.get("head_kind", "linear") != "linear":
        model.head_kind = config["head_kind"]
        model.reset_classifier(config["num_classes"])
    return model


def is_backbone_name(name: str) -> bool:
    """Whether ``name`` names a registered backbone or a ``family:arch`` (``timm:resnet18``)."""
    prefix, sep, _ = name.partition(":")
    return name in BACKBONES or bool(sep and prefix in BACKBONE_FAMILIES)


# -- validating stored configs ----------------------------------------------------------------------------------
COMPOSITE_ARCHS = ("fused", "fused_features")
# how transferkit.fusion.FusedModel combines its members (validated here, below fusion/)
FUSED_METHODS = ("average", "weighted", "stacking", "gating")


def _composite_checks(arch: str) -> dict[str, Check]:
    if arch == "fused":
        return {"method": one_of(*FUSED_METHODS), "gate_hidden": int_in(1, 4096)}
    from transferkit.backbones.fused import FUSION_MODES

    return {"mode": one_of(*FUSION_MODES), "width": int_in(1, 65536, optional=True)}


def config_kwargs_allowed(arch: str) -> tuple[str, dict[str, Check]]:
    """``(what, {kwarg: check})``: the keyword arguments a stored config of ``arch`` may pass, and a name for the
    allow-list's owner (``"timm models"``, ``"backbone 'seed_cnn'"``) for messages."""
    family = _family(arch)
    if family is not None:
        return f"{family[0].prefix} models", dict(family[0].config_kwargs)
    if arch not in BACKBONES:
        raise BACKBONES.unknown(arch[:80])
    return f"backbone '{arch}'", _CONFIG_KWARGS.get(arch, {})


def _type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(v), type(v).__name__)


def _fail(field_name: str, problem: str | None) -> None:
    if problem:  # a problem with a part of the value starts with ".part"
        raise ValueError(f"{field_name}{'' if problem.startswith('.') else ' '}{problem}")


# the fields Backbone.config() writes (a fused model's members carry their input_spec too, checked apart)
ARCHITECTURE_KEYS = frozenset({"arch", "kwargs", "num_classes", "cut_at", "head_hidden", "head_kind"})


def validate_config(config: Any, field_name: str = "architecture", _depth: int = 0) -> None:
    """Check a stored architecture config (:meth:`Backbone.config`) before anything is built from it.

    Raises ``ValueError`` naming the field (``architecture.kwargs.checkpoint_path is not allowed for timm models
    (allowed: …)``): an unknown architecture, a kwarg off its allow-list, a value of the wrong type or range, a
    composite model with too many or malformed members (each with a valid ``input_spec``)."""
    if not isinstance(config, dict):
        raise ValueError(f"{field_name} must be an object, got {_type(config)}")
    unknown = sorted(str(k)[:80] for k in config if k not in ARCHITECTURE_KEYS)
    if unknown:  # e.g. "weights": a path the bundle would have transferkit read
        raise ValueError(f"{field_name}.{unknown[0]} is not a field of an architecture (allowed: "
                         f"{', '.join(sorted(ARCHITECTURE_KEYS))})")
    arch = config.get("arch")
    if not isinstance(arch, str) or not 0 < len(arch) <= 256 or not arch.isprintable():
        raise ValueError(f"{field_name}.arch must name an architecture (a short string), got {arch!r}"[:300])
    _fail(f"{field_name}.num_classes", int_in(0, MAX_CLASSES)(config.get("num_classes")))
    cut = config.get("cut_at")
    if cut is not None and not (isinstance(cut, str) and 0 < len(cut) <= 64 and cut.isprintable()):
        raise ValueError(f"{field_name}.cut_at must be a layer name or null, got {cut!r}"[:300])
    if config.get("head_hidden") is not None:
        _fail(f"{field_name}.head_hidden", int_in(0, 65536)(config["head_hidden"]))
    if "head_kind" in config:
        _fail(f"{field_name}.head_kind", one_of("linear", "cosine")(config["head_kind"]))
    kwargs = config.get("kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{field_name}.kwargs must be an object, got {_type(kwargs)}")
    if arch in COMPOSITE_ARCHS:
        what, allowed = f"{arch} models", {**_composite_checks(arch), "members": lambda v: None}
    else:
        try:
            what, allowed = config_kwargs_allowed(arch)
        except ValueError as exc:
            raise ValueError(f"{field_name}.arch: {exc}") from None
    for key, value in kwargs.items():
        if key not in allowed:
            raise ValueError(f"{field_name}.kwargs.{str(key)[:80]} is not allowed for {what} (allowed: "
                             f"{', '.join(sorted(allowed)) or 'none'})")
        _fail(f"{field_name}.kwargs.{key}", allowed[key](value))
    if arch in COMPOSITE_ARCHS:
        members = kwargs.get("members")
        if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
            raise ValueError(f"{field_name}.kwargs.members must be a list of 2 to {MAX_MEMBERS} member configs, got "
                             f"{_type(members)}{f' of {len(members)}' if isinstance(members, list) else ''}")
        if _depth >= MAX_NESTING:
            raise ValueError(f"{field_name}: composite models nested more than {MAX_NESTING} deep")
        for i, member in enumerate(members):
            where = f"{field_name}.kwargs.members[{i}]"
            if not isinstance(member, dict):
                raise ValueError(f"{where} must be an object, got {_type(member)}")
            validate_config({k: v for k, v in member.items() if k != "input_spec"}, where, _depth + 1)
            InputSpec.validate_dict(member.get("input_spec"), f"{where}.input_spec")
