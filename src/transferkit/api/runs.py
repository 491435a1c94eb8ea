"""Shared pieces of the high-level jobs: run results, loading a source, fitting data to a model, building a
strategy from options, scoring a model."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from transferkit import atomic
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import predict_logits
from transferkit.backbones.fused import FUSION_MODES, FeatureFusionBackbone
from transferkit.backbones.imagenet import imagenet_classes
from transferkit.backbones.registry import backbone_info, create_backbone, is_backbone_name
from transferkit.bundle import BundleError, load_bundle, resolve_bundle
from transferkit.config import TrainConfig
from transferkit.data.base import AnyDataset
from transferkit.data.class_map import apply_class_map, match_classes
from transferkit.data.prepare import TensorBatches
from transferkit.data.registry import get_dataset
from transferkit.data.splits import parse_classes, select_classes
from transferkit.engine.trainer import TrainedModel
from transferkit.errors import ConfigError
from transferkit.report.metrics import classification_metrics
from transferkit.strategies.base import Strategy, get_strategy, resolve_strategy_name

FUSED_SOURCE_PREFIX = "fuse:"


@dataclass
class RunResult:
    """What a job returns: where its run directory is, its metrics, and the trained model."""

    run_dir: Path | None
    metrics: dict[str, Any]
    model: Backbone | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bundle_dir(self) -> Path | None:
        return self.run_dir / "bundle" if self.run_dir else None


def require_one_process(cfg: TrainConfig, what: str) -> None:
    """Refuse DDP for a job that runs many trainings or writes from every process (compare, curve, cv, …)."""
    if cfg.processes > 1:
        raise ValueError(f"{what} runs in one process (it trains many models and writes their results as it goes); "
                         "use --devices 1 --num-nodes 1 here, and DDP for a single 'transfer' or 'pretrain' run")


def set_threads(num_threads: int | None = None) -> None:
    """Use every core for intra-op parallelism (or ``num_threads``); one inter-op thread avoids oversubscription."""
    n = num_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


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
            f"--source '{text}': neither a run/bundle directory nor a backbone with pretrained weights ({exc})"
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
            raise ValueError(f"--source {text}: unknown feature-fusion mode '{name}'; valid modes: "
                             f"{', '.join(FUSION_MODES)} (syntax: fuse:[MODE[@WIDTH]:]A+B)")
        mode, members_text = name, rest
        if w:
            try:
                width = int(w)
            except ValueError:
                raise ValueError(f"--source {text}: projection width '{w}' is not an integer "
                                 "(e.g. fuse:sum@256:A+B)") from None
    members = [m.strip() for m in members_text.split("+")]
    if len(members) < 2 or not all(members):
        raise ValueError(f"--source {text}: feature fusion needs at least two members joined by '+', e.g. "
                         "fuse:concat:mobilenet_v2+runs/demo/source")
    nested = [m for m in members if m.startswith(FUSED_SOURCE_PREFIX)]
    if nested:
        raise ValueError(f"--source {text}: a fusion member cannot itself be a fusion ({nested[0]})")
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
        raise ValueError(f"--source {text}: {exc}") from None
    return model, {"source": text, "classes": [], "lineage": {"source": text, "fusion": {
        "mode": mode, "width": width, "members": names, "member_lineages": lineages}}}


def load_task(data: str, split: str, classes: str | list[int] | None, strict: bool = False,
              class_map: dict[str, str] | None = None) -> AnyDataset:
    """Dataset ``data``'s ``split`` restricted to ``classes`` (relabelled 0..k-1 in the given order), then renamed
    or merged by ``class_map`` (:func:`transferkit.data.class_map.apply_class_map`) when one is given."""
    ds = select_classes(get_dataset(data, split, strict=strict), parse_classes(classes))
    return apply_class_map(ds, class_map) if class_map else ds


def require_images(ds: AnyDataset, option: str, job: str) -> None:
    """A clear refusal for jobs that handle images only so far (text goes through transfer, fewshot, zeroshot)."""
    if ds.modality != "image":
        raise ValueError(f"{option}: {job} supports image data only so far; {ds.name} is {ds.modality}. For text use "
                         "'transferkit transfer', 'fewshot' or 'zeroshot'")


def check_max_length(ds: AnyDataset, max_length: int | None) -> None:
    """Refuse ``--max-length`` (a token limit) for data that is not text, naming the data's kind."""
    if max_length is not None and ds.modality != "text":
        raise ConfigError("max_length", "text data", max_length, f"{ds.name} holds {ds.modality} examples")


def head_init_mapping(target_classes: list[str], source_meta: dict[str, Any],
                      on: bool) -> tuple[dict[int, int] | None, list[str]]:
    """``({target class: source class}, source classes)`` for the source-head row initialisation: classes matched
    by name (:func:`transferkit.data.class_map.match_classes`); ``None`` when off or the source names no classes."""
    source_classes = list(source_meta.get("classes") or [])
    return (match_classes(target_classes, source_classes) if on and source_classes else None), source_classes


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
            "pass --convert-channels (convert_channels=True) to convert colour images to greyscale"
        )


def check_classes(ds: AnyDataset, meta: dict[str, Any], what: str) -> None:
    """The data must have the model's classes (same number; same names when both are known)."""
    model_classes = meta.get("classes") or []
    if len(model_classes) != ds.num_classes:
        raise ValueError(
            f"{what}: the model has {len(model_classes)} classes {model_classes} but the data {ds.name} has "
            f"{ds.num_classes} classes {ds.classes}; choose the matching --classes"
        )


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, yaml.safe_dump(_plain(data), sort_keys=False))


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic.write_text(path, json.dumps(_plain(data), indent=2) + "\n")


def _plain(obj: Any) -> Any:
    """Make ``obj`` YAML/JSON-safe (paths → str, tuples → lists, numpy scalars → Python)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def score(model: Backbone, data: TensorBatches, classes: list[str]) -> dict[str, Any]:
    """Classification metrics of ``model`` on ``data``, plus the mean cross-entropy as ``loss``."""
    logits = predict_logits(model, data)
    metrics = classification_metrics(data.y.numpy(), logits.argmax(1).numpy(), classes)
    metrics["loss"] = float(F.cross_entropy(logits, data.y)) if len(data) else float("nan")
    return metrics


def make_strategy(strategy: str, freeze: int | None = None, layer: str | None = None,
                  options: dict[str, Any] | None = None) -> Strategy:
    """The strategy with only the options that apply to it (``freeze`` for finetune, ``layer`` for the probe,
    plus any of its own ``options``, e.g. ``{"regularizer": "l2sp"}``); a wrong option lists the valid ones."""
    name = resolve_strategy_name(strategy)
    options = dict(options or {})
    if freeze is not None:
        if name != "finetune":
            raise ConfigError("freeze", "the finetune strategy", freeze, f"the strategy is '{strategy}'")
        options["freeze"] = freeze
    if layer is not None:
        if name != "linear_probe":
            raise ConfigError("probe_layer", "the linear_probe strategy", layer, f"the strategy is '{strategy}'")
        options["layer"] = layer
    return get_strategy(name, **options)


def best_val_accuracy(trained: TrainedModel) -> float:
    """Validation accuracy of the kept (best-epoch) weights, as the engine measured it: no second pass."""
    epoch = trained.fit.best_epoch
    return trained.fit.history[epoch].get("val_acc", float("nan")) if 0 <= epoch < len(trained.fit.history) \
        else float("nan")
