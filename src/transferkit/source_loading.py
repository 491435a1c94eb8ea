"""The model a job starts from: a run directory, a bundle directory, a pretrained backbone name, or a feature fusion
of several of them (``fuse:[MODE[@WIDTH]:]A+B``); a backbone built for the data; and whether a model takes the data.

Floor 5 (beside :mod:`transferkit.bundle`, which it reads): it composes backbones and bundles only, so every job in
:mod:`transferkit.api` and the methods below them load a source the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from transferkit.backbones.base import Backbone
from transferkit.backbones.fused import FUSION_MODES, FeatureFusionBackbone
from transferkit.backbones.imagenet import imagenet_classes
from transferkit.backbones.registry import backbone_info, create_backbone, is_backbone_name
from transferkit.bundle import BundleError, load_bundle, resolve_bundle
from transferkit.data.base import AnyDataset
from transferkit.errors import ConfigError

FUSED_SOURCE_PREFIX = "fuse:"


def load_source(source: str | Path | Backbone, image_size: int | None = None,
                weights: str | Path | None = None, max_length: int | None = None) -> tuple[Backbone, dict[str, Any]]:
    """A source model from a run directory, a bundle directory or a pretrained backbone name.

    ``image_size`` sets the input size of a named pretrained backbone (e.g. 96 px to save CPU time);
    ``max_length`` the token limit of a named text backbone (``minilm``, ``hf:…``);
    ``weights`` is a local weights file for ``timm:<arch>`` / ``torchvision:<arch>``.
    ``fuse:[MODE[@WIDTH]:]A+B`` fuses the features of several such sources (:func:`parse_fused_source`).
    """
    if isinstance(source, Backbone):
        if max_length is not None:
            if not hasattr(source, "set_max_length"):
                raise ConfigError("max_length", "a text backbone source", max_length,
                                  f"{source.arch} takes {source.input_spec.modality} input")
            source = copy.deepcopy(source)  # the caller's model keeps its own limit
            source.set_max_length(max_length)
        return source, {"source": source.arch}
    text = str(source)
    if text.startswith(FUSED_SOURCE_PREFIX) and not Path(text).exists():
        if max_length is not None:
            raise ConfigError("max_length", "a text backbone source, not a fusion", max_length, f"source {text}")
        if weights is not None:
            raise ConfigError("weights", "one pretrained backbone as the source, not a fusion", str(weights),
                              f"source {text}")
        return _load_fused_source(text, image_size)
    try:
        path = resolve_bundle(text)
    except BundleError as exc:
        if is_backbone_name(text):
            if max_length is not None and backbone_info(text).modality != "text":
                raise ConfigError("max_length", "a text backbone source", max_length,
                                  f"source {text} takes images (its input size is image_size)") from None
            kwargs: dict[str, Any] = {"img_size": image_size} if image_size else {}
            if weights is not None:
                kwargs["weights"] = str(weights)
            if max_length is not None:
                kwargs["max_length"] = int(max_length)
            model = create_backbone(text, pretrained=True, **kwargs)
            classes = imagenet_classes() if model.num_classes == 1000 else []
            return model, {"source": text, "classes": classes, "lineage": {"source": f"pretrained:{text}"}}
        if Path(text).exists():
            raise
        raise BundleError(
            f"source='{text}': neither a run/bundle directory nor a backbone with pretrained weights ({exc})"
        ) from None
    if weights is not None or image_size is not None or max_length is not None:
        given = {n: v for n, v in (("weights", weights), ("image_size", image_size), ("max_length", max_length))
                 if v is not None}
        name = next(iter(given))
        raise ConfigError(name, "a pretrained backbone name as the source", given[name],
                          f"source {path} is a bundle: it has its own weights and input size")
    model, meta = load_bundle(path)
    meta = {**meta, "source": str(path)}
    return model, meta


def backbone_for_data(name: str, channels: int, num_classes: int = 0, pretrained: bool = False,
                      image_size: int | None = None, **kwargs: Any) -> Backbone:
    """``create_backbone(name, ...)`` fitted to the data: a grey-native small CNN built with random weights takes the
    data's ``channels``; ImageNet-style backbones keep their 3 (grey images are repeated when prepared).
    ``image_size`` sets the input size. Seeding is the caller's."""
    if not pretrained and backbone_info(name).default_channels == 1:
        kwargs["in_chans"] = channels
    if image_size:
        kwargs["img_size"] = image_size
    return create_backbone(name, num_classes=num_classes, pretrained=pretrained, **kwargs)


def parse_fused_source(text: str) -> tuple[str, int | None, list[str]]:
    """``fuse:[MODE[@WIDTH]:]A+B[+…]`` → ``(mode, width, [A, B, …])`` — a feature-fusion source
    (:class:`~transferkit.backbones.fused.FeatureFusionBackbone`) of members ``A``, ``B`` (run or bundle directories,
    or pretrained backbone names). ``MODE`` is one of :data:`~transferkit.backbones.fused.FUSION_MODES` (default
    ``concat``); ``WIDTH`` the common projection width (required by ``sum``, ``product`` and ``max``)."""
    body = text[len(FUSED_SOURCE_PREFIX):]
    head, sep, rest = body.partition(":")
    mode, width, members_text = "concat", None, body
    # a mode spec is the first ':'-part when it is neither a member list, a model-family prefix nor a path
    if sep and "+" not in head and not is_backbone_name(f"{head}:x") and not Path(head).exists():
        name, _, w = head.partition("@")
        if name not in FUSION_MODES:
            raise ValueError(f"source={text}: unknown feature-fusion mode '{name}'; valid modes: "
                             f"{', '.join(FUSION_MODES)} (syntax: fuse:[MODE[@WIDTH]:]A+B)")
        mode, members_text = name, rest
        if w:
            try:
                width = int(w)
            except ValueError:
                raise ValueError(f"source={text}: projection width '{w}' is not an integer "
                                 "(e.g. fuse:sum@256:A+B)") from None
    members = [m.strip() for m in members_text.split("+")]
    if len(members) < 2 or not all(members):
        raise ValueError(f"source={text}: feature fusion needs at least two members joined by '+', e.g. "
                         "fuse:concat:mobilenet_v2+runs/demo/source")
    nested = [m for m in members if m.startswith(FUSED_SOURCE_PREFIX)]
    if nested:
        raise ValueError(f"source={text}: a fusion member cannot itself be a fusion ({nested[0]})")
    return mode, width, members


def _load_fused_source(text: str, image_size: int | None) -> tuple[Backbone, dict[str, Any]]:
    mode, width, names = parse_fused_source(text)
    members, lineages = [], []
    for name in names:  # --image-size applies to the named pretrained members (bundles have their own size)
        named = is_backbone_name(name) and not Path(name).exists()
        model, meta = load_source(name, image_size if named else None)
        members.append(model)
        lineages.append(meta.get("lineage") or {"source": meta.get("source", name)})
    try:
        model = FeatureFusionBackbone(members, mode, width)
    except ValueError as exc:
        raise ValueError(f"source={text}: {exc}") from None
    return model, {"source": text, "classes": [], "lineage": {"source": text, "fusion": {
        "mode": mode, "width": width, "members": names, "member_lineages": lineages}}}


def check_channels(ds: AnyDataset, model: Backbone, convert_channels: bool, what: str) -> None:
    """The data's kind (images/text) must be the model's; grey → colour is automatic (lossless); colour → grey needs
    ``convert_channels`` (it loses information)."""
    data_kind, model_kind = getattr(ds, "modality", "image"), model.input_spec.modality
    if data_kind != model_kind:
        raise ValueError(f"{what}: the data {ds.name} is {data_kind} but the model ({model.arch}) takes {model_kind} "
                         f"input; choose a {data_kind} backbone ('transferkit backbones' lists them)")
    if data_kind == "text":
        return
    have, want = ds.channels, model.input_spec.channels
    if have > want and not convert_channels:
        raise ValueError(
            f"{what}: the data {ds.name} has {have} input channels but the model expects {want}; "
            "pass convert_channels=True to convert colour images to greyscale"
        )
