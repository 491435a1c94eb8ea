"""Any model the user has: ``timm:<name>`` and ``torchvision:<name>`` behind the :class:`Backbone` interface.

``create_backbone("timm:convnext_atto", num_classes=10, weights="convnext.safetensors")`` builds the library's
architecture and loads a local file; ``pretrained=True`` without a file uses the library's own download cache
(timm: the Hugging Face hub cache; torchvision: ``$TORCH_HOME/hub/checkpoints``) and downloads only when
online. Offline (``TRANSFERKIT_OFFLINE=1``) with nothing cached is an error, never a silent random init.

Weights files are ``.safetensors`` or plain state dicts read with ``torch.load(weights_only=True)``
(:mod:`transferkit.backbones.weights`); a transferkit bundle of the same architecture is accepted too. Keys
and shapes must match exactly, except the classifier: its weights become the head's when the number of
classes agrees, otherwise the head is fresh (the usual parameter transfer of Yosinski et al., 2014).

The library model lives in ``self.net`` with its classifier removed, and :meth:`forward_features` is its own
pre-logits path (``(B, D)``), so every architecture works without being cut apart. ``stages`` therefore stays
empty; freezing and discriminative learning rates use :meth:`ExternalBackbone.param_groups`: timm's
``group_matcher`` (stem, then stage by stage / block by block), torchvision's top-level children, or the
user's own ``groups={"name": regex, ...}`` over parameter names (``re.match`` on names inside ``net``).
``config()`` rebuilds the architecture without the weights file, since a bundle supplies the weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone, InputSpec, ParamGroup
from transferkit.backbones.registry import (
    BackboneInfo,
    boolean,
    float_in,
    int_in,
    is_sealed,
    numbers,
    regex_groups,
    register_backbone_family,
)
from transferkit.backbones.weights import load_strict, read_state_dict
from transferkit.data.download import offline
from transferkit.data.resize import INTERPOLATIONS
from transferkit.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What a stored config (a bundle's architecture.kwargs) may pass: exactly what these factories write into config()
# (plus timm's/torchvision's dropout rates), never a path, URL or download option (weights, pretrained,
# checkpoint_path, pretrained_cfg_overlay, cache_dir, …).
_COMMON_KWARGS = {"img_size": int_in(1, 4096, optional=True), "in_chans": int_in(1, 64), "groups": regex_groups,
                  "mean": numbers(), "std": numbers(positive=True)}
TIMM_CONFIG_KWARGS = {**_COMMON_KWARGS, "drop_rate": float_in(0.0, 1.0), "drop_path_rate": float_in(0.0, 1.0)}
TORCHVISION_CONFIG_KWARGS = {**_COMMON_KWARGS, "transform_input": boolean, "dropout": float_in(0.0, 1.0)}


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for, but there is no file, no cached copy and no way to download."""


def _missing_weights(name: str, why: str) -> PretrainedWeightsUnavailable:
    return PretrainedWeightsUnavailable(
        f"{name}: pretrained weights are not available ({why}). Pass weights=PATH (CLI: --weights PATH) with a "
        ".safetensors or state-dict file for this architecture, connect to the internet once so the library can "
        "cache them, or use pretrained=False for a random initialisation."
    )


def _offline_any() -> bool:
    return offline() or os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "YES", "yes"}


def _split_classifier(
    state: Mapping[str, torch.Tensor], classifier: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(body, classifier) parts of a state dict; a transferkit bundle (``net.*`` + ``head.*``) is unwrapped."""
    if state and all(k.startswith(("net.", "head.")) for k in state):
        body = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        return body, {k[5:]: v for k, v in state.items() if k.startswith("head.")}
    prefix = classifier + "."
    return ({k: v for k, v in state.items() if not k.startswith(prefix)},
            {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _group_name(index: int, names: list[str]) -> str:
    """``layer1``, ``blocks.3``, ``stem`` or ``blocks.11+norm``: the common module prefix (at most two levels)."""
    parts = [n.split(".")[:-1] for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1 or len(common) == 2:
            break
        common.append(level[0])
    if common:
        return ".".join(common)
    if index == 0:
        return "stem"
    heads = [".".join(n.split(".")[:2]) if n.split(".")[1:2] and n.split(".")[1].isdigit() else n.split(".")[0]
             for n in names]
    return "+".join(dict.fromkeys(heads))[:60]


def _param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _torchvision_groups(net: nn.Module) -> list[tuple[str, list[str]]]:
    """Parameter groups from the module tree: the top-level children input → output; while there are fewer
    than four, the largest splittable one is replaced by its children (``features`` → ``features.0``, …;
    ViT's ``encoder`` → its layers). Leading single layers and root parameters form ``stem``."""
    parts = [(name, m, []) for name, m in net.named_children() if _param_count(m)]
    while len(parts) < 4:
        splittable = [i for i, (_, m, _) in enumerate(parts) if sum(1 for c in m.children() if _param_count(c)) >= 2]
        if not splittable:
            break
        i = max(splittable, key=lambda j: _param_count(parts[j][1]))
        name, module, extra = parts[i]
        own = extra + [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
        children = [(f"{name}.{c}", cm, []) for c, cm in module.named_children() if _param_count(cm)]
        children[0] = (children[0][0], children[0][1], own)  # e.g. ViT's pos_embedding joins the first layer
        parts[i : i + 1] = children
    stem = [n for n, _ in net.named_parameters(recurse=False)]
    groups: list[tuple[str, list[str]]] = []
    for name, module, extra in parts:
        names = extra + [f"{name}.{n}" for n, _ in module.named_parameters()]
        if not groups and "." not in name and not any(True for _ in module.children()):
            stem += names  # a leading single layer: conv1, bn1, conv_proj …
            continue
        groups.append((name, names))
    return ([("stem", stem)] if stem else []) + groups


class ExternalBackbone(Backbone):
    """A timm or torchvision model: ``net`` (the library model without its classifier) + a linear ``head``.

    Parameters
    ----------
    arch, arch_kwargs:
        ``"timm:<name>"``/``"torchvision:<name>"`` and the options that rebuild it.
    net:
        The library model whose ``forward`` returns pre-logits features ``(B, D)`` (classifier removed).
    classifier_state:
        ``weight``/``bias`` of the original classifier, reused as the head when shapes agree.
    auto_groups:
        Parameter names of ``net`` grouped input → output (used unless ``groups`` overrides them).
    groups:
        Optional ``{group name: regex}``; each parameter joins the first group whose regex matches its name.
    """

    def __init__(self, arch: str, arch_kwargs: dict[str, Any], net: nn.Module, spec: InputSpec, num_classes: int,
                 classifier_state: Mapping[str, torch.Tensor], auto_groups: list[tuple[str, list[str]]],
                 groups: Mapping[str, str] | None = None, weights_source: str | None = None) -> None:
        super().__init__(arch, arch_kwargs)
        self.net = net
        self.input_spec = spec
        self.weights_source = weights_source  # lineage only; not part of config()
        self._groups = self._match_groups(groups) if groups else auto_groups
        self.feature_dim = self._dry_run()
        self.reset_classifier(num_classes)
        w, b = classifier_state.get("weight"), classifier_state.get("bias")
        if isinstance(self.head, nn.Linear) and w is not None and tuple(w.shape) == tuple(self.head.weight.shape):
            with torch.no_grad():
                self.head.weight.copy_(w)
                if b is not None and self.head.bias is not None:
                    self.head.bias.copy_(b)

    def _dry_run(self) -> int:
        h, w = self.input_spec.size or (224, 224)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self.forward_features(torch.zeros(1, self.input_spec.channels, h, w))
        except (RuntimeError, AssertionError, ValueError) as err:
            raise ValueError(
                f"{self.arch} cannot run at image_size={h}: {str(err).splitlines()[0]} (the image size may be too "
                f"small, at least {self.input_spec.min_size} px, or the architecture needs a fixed size)"
            ) from None
        finally:
            self.train(was_training)
        return int(out.shape[1])

    def _match_groups(self, patterns: Mapping[str, str]) -> list[tuple[str, list[str]]]:
        compiled = [(name, re.compile(p)) for name, p in patterns.items()]
        out: dict[str, list[str]] = {name: [] for name, _ in compiled}
        unmatched = []
        for pname, _ in self.net.named_parameters():
            hit = next((g for g, rx in compiled if rx.match(pname)), None)
            (out[hit] if hit else unmatched).append(pname)
        if unmatched:
            raise ValueError(
                f"{self.arch}: {len(unmatched)} parameters match no group pattern, e.g. {', '.join(unmatched[:5])}; "
                "add a pattern for them (a last group '.*' catches the rest)"
            )
        return [(g, names) for g, names in out.items() if names]

    # -- Backbone interface -------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Pre-logits features ``(B, D)`` of the library model (``layer`` must be ``None``)."""
        if layer is not None:
            raise ValueError(f"{self.arch}: external backbones expose only their final features (layer=None)")
        out = self.net(x)
        if isinstance(out, tuple):  # e.g. torchvision's Inception returns (logits, aux) in training
            out = out[0]
        return out.mean((2, 3)) if out.ndim == 4 else out.flatten(1)

    def truncate(self, layer: str) -> None:
        raise ValueError(f"{self.arch}: cutting an external backbone at '{layer}' is not supported; "
                         "use its final features")

    def param_groups(self) -> list[ParamGroup]:
        """Groups input → output (automatic or from ``groups`` patterns), then ``head``."""
        params = dict(self.net.named_parameters())
        owner: dict[str, str] = {p: g for g, names in self._groups for p in names}
        modules: dict[str, list[nn.Module]] = {g: [] for g, _ in self._groups}
        for mname, module in self.net.named_modules():
            direct = [n for n, _ in module.named_parameters(recurse=False)]
            if direct:
                group = owner.get(f"{mname}.{direct[0]}" if mname else direct[0])
                if group is not None:
                    modules[group].append(module)
        groups = [ParamGroup(g, [params[n] for n in names], modules[g]) for g, names in self._groups]
        groups.append(ParamGroup("head", list(self.head.parameters()), [self.head]))
        return [g for g in groups if g.params]


# -- timm ----------------------------------------------------------------------------------------------
def _timm_resize(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation transform of a timm pretrained config (``resolve_data_config``'s ``crop_pct``,
    ``interpolation``, ``crop_mode``) as :class:`InputSpec` fields: ``shorter_crop`` with the config's crop_pct
    (timm's ``crop_mode="squash"`` → our ``squash``, which drops timm's crop of a squashed image); an interpolation
    other than bilinear/bicubic → bilinear; no crop_pct in the config → ``squash``."""
    crop_pct, mode = cfg.get("crop_pct"), cfg.get("crop_mode") or "center"
    interpolation = cfg.get("interpolation") if cfg.get("interpolation") in INTERPOLATIONS else "bilinear"
    if not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1 or mode == "squash":
        return {"resize": "squash", "interpolation": interpolation}
    return {"resize": "shorter_crop", "crop_pct": float(crop_pct), "interpolation": interpolation}


def _timm_cached_file(arch: str) -> str | None:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None or not cfg.hf_hub_id:
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    for fname in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, fname, revision=revision or None)
        if isinstance(path, str):
            return path
    return None


def _timm_info(arch: str) -> BackboneInfo:
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"timm has no model '{arch}'; e.g. {', '.join(timm.list_models(f'*{arch}*')[:8]) or 'none'}")
    cfg = timm.get_pretrained_cfg(arch)
    size = int(cfg.input_size[-1]) if cfg is not None else 224
    return BackboneInfo(f"timm:{arch}", "timm architecture", size,
                        lambda: _timm_cached_file(arch) is not None or not _offline_any(), 3)


@register_backbone_family("timm", "any timm architecture (pytorch-image-models), weights from a file or timm's cache",
                          _timm_info, TIMM_CONFIG_KWARGS)
def timm_backbone(arch: str, num_classes: int = 1000, pretrained: bool = False, weights: str | Path | None = None,
                  img_size: int | None = None, in_chans: int = 3, groups: Mapping[str, str] | None = None,
                  mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                  **model_kwargs: Any) -> ExternalBackbone:
    """``timm:<arch>``; ``weights`` (a file) implies pretrained; extra ``model_kwargs`` go to ``timm.create_model``."""
    import timm
    from timm.models import group_parameters

    info = _timm_info(arch)
    name = f"timm:{arch}"
    if in_chans != 3:
        model_kwargs["in_chans"] = in_chans
    net, source = None, None
    if weights is None and pretrained:
        cached = _timm_cached_file(arch)
        if cached is None and (_offline_any() or is_sealed()):  # sealed: rebuilding from a bundle never downloads
            raise _missing_weights(name, "not in timm's cache, and " + ("a bundle never downloads" if is_sealed()
                                                                        else "offline"))
        overlay = {"file": cached} if cached else None
        try:
            net = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs)
        except Exception as err:  # network errors come in many types
            raise _missing_weights(name, f"download failed: {str(err).splitlines()[0][:200]}") from None
        source = cached or f"timm hub: {net.pretrained_cfg.get('hf_hub_id')}"
    if net is None:
        net = timm.create_model(arch, pretrained=False, **model_kwargs)
    cfg = net.pretrained_cfg
    classifier_name = cfg.get("classifier") or "head"
    if not isinstance(classifier_name, str):  # distilled models: (head, head_dist); keep the first
        classifier_name = classifier_name[0]
    state = net.state_dict() if source else {}
    net.reset_classifier(0)
    if weights is not None:
        body, state = _split_classifier(read_state_dict(weights), classifier_name)
        load_strict(net, body, str(weights))
        source = str(weights)
    else:
        state = _split_classifier(state, classifier_name)[1]
    size = img_size or info.default_size
    if cfg.get("fixed_input_size") and size != cfg["input_size"][-1]:
        raise ConfigError("image_size", f"{cfg['input_size'][-1]} for {name} (a fixed input size)", size)
    min_size = int((cfg.get("min_input_size") or (3, 32, 32))[-1])
    if size < min_size:
        raise ConfigError("image_size", f"at least {min_size} px for {name}", size)
    mean, std = tuple(mean or cfg.get("mean", IMAGENET_MEAN)), tuple(std or cfg.get("std", IMAGENET_STD))
    if len(mean) != in_chans:  # e.g. in_chans=1 with RGB statistics: their average
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    spec = InputSpec(channels=in_chans, size=(size, size), mean=mean, std=std, min_size=min_size,
                     **_timm_resize(cfg))
    try:  # timm's own stage/block grouping (the one its layer-wise LR decay uses)
        matched = group_parameters(net, net.group_matcher(coarse=True)).values()
        auto = [(_group_name(i, names), names) for i, names in enumerate(matched)]
    except (AttributeError, NotImplementedError):
        auto = _torchvision_groups(net)
    model_kwargs.pop("in_chans", None)
    kwargs = {"img_size": size, "in_chans": in_chans, "groups": dict(groups) if groups else None,
              "mean": list(spec.mean), "std": list(spec.std), **model_kwargs}
    return ExternalBackbone(name, kwargs, net, spec, num_classes, state, auto, groups, source)


# -- torchvision ---------------------------------------------------------------------------------------
def _tv_weights(arch: str) -> Any:
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        return None


def _tv_cached_file(arch: str) -> Path | None:
    w = _tv_weights(arch)
    if w is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    return path if path.is_file() else None


def _tv_info(arch: str) -> BackboneInfo:
    from torchvision.models import list_models

    if arch not in list_models(module=_tv_classification()):
        raise ValueError(f"torchvision has no classification model '{arch}'; e.g. "
                         f"{', '.join(m for m in list_models(module=_tv_classification()) if arch[:3] in m)[:200]}")
    w = _tv_weights(arch)
    size = int(w.transforms().crop_size[0]) if w is not None else 224
    return BackboneInfo(f"torchvision:{arch}", "torchvision classification architecture", size,
                        lambda: _tv_cached_file(arch) is not None or (w is not None and not offline()), 3)


def _tv_resize(transforms: Any) -> dict[str, Any]:
    """The evaluation transform of torchvision weights (``ImageClassification``: ``Resize(resize_size)`` →
    ``CenterCrop(crop_size)``) as :class:`InputSpec` fields: ``shorter_crop`` with crop_pct = crop / resize size and
    the weights' interpolation; ``squash`` for an architecture without published weights."""
    if transforms is None or not getattr(transforms, "resize_size", None) or not getattr(transforms, "crop_size", None):
        return {"resize": "squash"}
    interpolation = getattr(getattr(transforms, "interpolation", None), "value", "bilinear")
    crop_pct = min(1.0, float(transforms.crop_size[0]) / float(transforms.resize_size[0]))
    return {"resize": "shorter_crop", "crop_pct": crop_pct,
            "interpolation": interpolation if interpolation in INTERPOLATIONS else "bilinear"}


def _tv_classification() -> Any:
    import torchvision.models

    return torchvision.models


def _tv_classifier(net: nn.Module, num_outputs: int) -> tuple[str, nn.Linear]:
    """Name and module of the final linear classifier (the last ``nn.Linear`` with ``num_outputs`` outputs)."""
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_outputs]
    if not found:
        raise ValueError(f"found no linear classifier with {num_outputs} outputs in {type(net).__name__}; "
                         "use timm: or a model with a linear head")
    return found[-1]


@register_backbone_family("torchvision", "any torchvision classification model, weights from a file or torch's cache",
                          _tv_info, TORCHVISION_CONFIG_KWARGS)
def torchvision_backbone(arch: str, num_classes: int = 1000, pretrained: bool = False,
                         weights: str | Path | None = None, img_size: int | None = None, in_chans: int = 3,
                         groups: Mapping[str, str] | None = None, mean: tuple[float, ...] | None = None,
                         std: tuple[float, ...] | None = None, **model_kwargs: Any) -> ExternalBackbone:
    """``torchvision:<arch>``; ``weights`` (a file) implies pretrained; ``model_kwargs`` go to ``get_model``."""
    from torchvision.models import get_model

    info = _tv_info(arch)
    name = f"torchvision:{arch}"
    if in_chans != 3:
        raise ValueError(f"{name} takes RGB input (in_chans=3); grayscale images are converted by the preprocessing")
    tv_weights = _tv_weights(arch)
    source: str | None = None
    if weights is None and pretrained:
        cached = _tv_cached_file(arch)
        if cached is None and (offline() or tv_weights is None or is_sealed()):
            raise _missing_weights(name, "none published" if tv_weights is None else "not in torch's hub cache, and "
                                   + ("a bundle never downloads" if is_sealed() else "offline"))
        try:  # torchvision's own loader: its cache first, then a checksummed download
            net = get_model(arch, weights=tv_weights, **model_kwargs)
        except Exception as err:  # network errors come in many types
            raise _missing_weights(name, f"download failed: {str(err).splitlines()[0][:200]}") from None
        source = str(_tv_cached_file(arch) or tv_weights.url)
        if getattr(net, "transform_input", False):  # Inception/GoogLeNet weights expect it; rebuilds must too
            model_kwargs["transform_input"] = True
    else:
        net = get_model(arch, weights=None, **model_kwargs)
    cls_name, _ = _tv_classifier(net, model_kwargs.get("num_classes", 1000))
    state = net.state_dict() if source else {}
    parent_name, _, leaf = cls_name.rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, leaf, nn.Identity())
    if weights is not None:
        body, state = _split_classifier(read_state_dict(weights), cls_name)
        load_strict(net, body, str(weights))
        source = str(weights)
    else:
        state = _split_classifier(state, cls_name)[1]
    meta_min = (tv_weights.meta.get("min_size") if tv_weights is not None else None) or (32, 32)
    size = img_size or info.default_size
    if size < meta_min[0]:
        raise ConfigError("image_size", f"at least {meta_min[0]} px for {name}", size)
    transforms = tv_weights.transforms() if tv_weights is not None else None
    spec = InputSpec(channels=3, size=(size, size),
                     mean=tuple(mean or (transforms.mean if transforms else IMAGENET_MEAN)),
                     std=tuple(std or (transforms.std if transforms else IMAGENET_STD)), min_size=int(meta_min[0]),
                     **_tv_resize(transforms))
    auto = _torchvision_groups(net)
    kwargs = {"img_size": size, "in_chans": 3, "groups": dict(groups) if groups else None,
              "mean": list(spec.mean), "std": list(spec.std), **model_kwargs}
    return ExternalBackbone(name, kwargs, net, spec, num_classes, state, auto, groups, source)
