"""Backbones by name: ``register_backbone`` / ``create_backbone`` / ``list_backbones`` (timm's pattern).

A factory has the signature ``factory(num_classes, pretrained, in_chans, img_size, **kwargs) -> Backbone``.
``pretrained`` is always explicit: asking for weights that are not on this machine is an error, never a
silent random initialisation.

**Families** open whole model libraries under a prefix: ``create_backbone("timm:resnet18", ...)`` calls the
factory registered with ``register_backbone_family("timm", ...)`` as ``factory(arch="resnet18", num_classes=…,
pretrained=…, **kwargs)``; the family factory checks for weights itself (they may come from a file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transferkit.backbones.base import Backbone

Factory = Callable[..., Backbone]


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


_REGISTRY: dict[str, tuple[BackboneInfo, Factory]] = {}
_FAMILIES: dict[str, BackboneFamily] = {}


def register_backbone(
    name: str,
    description: str,
    default_size: int = 28,
    weights_available: Callable[[], bool] = lambda: False,
    default_channels: int = 1,
    weights_hint: str = "",
) -> Callable[[Factory], Factory]:
    """Register a backbone factory under ``name``; ``weights_available`` says whether pretrained weights
    can be loaded on this machine (shown by ``transferkit backbones``), ``weights_hint`` how to get them."""

    def wrap(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"backbone '{name}' is already registered")
        if ":" in name:
            raise ValueError(f"backbone names cannot contain ':' (reserved for families), got '{name}'")
        info = BackboneInfo(name, description, default_size, weights_available, default_channels, weights_hint)
        _REGISTRY[name] = (info, factory)
        return factory

    return wrap


def register_backbone_family(
    prefix: str, description: str, info: Callable[[str], BackboneInfo]
) -> Callable[[Factory], Factory]:
    """Register ``factory(arch, num_classes, pretrained, **kwargs)`` for every name ``"<prefix>:<arch>"``."""

    def wrap(factory: Factory) -> Factory:
        if prefix in _FAMILIES:
            raise ValueError(f"backbone family '{prefix}' is already registered")
        _FAMILIES[prefix] = BackboneFamily(prefix, description, factory, info)
        return factory

    return wrap


def list_backbone_families() -> list[BackboneFamily]:
    """All registered families (``timm:``, ``torchvision:``), sorted by prefix."""
    return [_FAMILIES[p] for p in sorted(_FAMILIES)]


def _family(name: str) -> tuple[BackboneFamily, str] | None:
    prefix, sep, arch = name.partition(":")
    if not sep:
        return None
    if prefix not in _FAMILIES:
        raise ValueError(
            f"unknown backbone family '{prefix}:' in '{name}'; valid families: "
            f"{', '.join(p + ':' for p in sorted(_FAMILIES))}"
        )
    if not arch:
        raise ValueError(f"'{name}' names no architecture; write e.g. '{prefix}:resnet18'")
    return _FAMILIES[prefix], arch


def list_backbones() -> list[BackboneInfo]:
    """All registered backbones, sorted by name."""
    return [info for info, _ in sorted(_REGISTRY.values(), key=lambda e: e[0].name)]


def backbone_info(name: str) -> BackboneInfo:
    family = _family(name)
    if family is not None:
        return family[0].info(family[1])
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone '{name}'; valid backbones: {', '.join(i.name for i in list_backbones())}")
    return _REGISTRY[name][0]


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
            + f"Or pretrain it on a source task with 'transferkit pretrain --backbone {name} ...' and pass that "
            "run as --source, or use pretrained=False for a random initialisation."
        )
    model = _REGISTRY[name][1](pretrained=pretrained, **kwargs)
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
    return name in _REGISTRY or bool(sep and prefix in _FAMILIES)
