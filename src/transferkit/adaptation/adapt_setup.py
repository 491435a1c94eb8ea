"""What the ``adapt`` job (:mod:`transferkit.api.adapt_job`) prepares before the adaptation loop
(:func:`transferkit.engine.adapt.fit_adapt`) runs: the checks that need no data, the network to adapt (a backbone by
name with a bottleneck head, or a bundle), the batches it trains on
(cached features of a frozen extractor), the training settings and parameter groups, and what the label-free
selection criteria see after each epoch, with the scorer that computes them."""

from __future__ import annotations

import copy
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from transferkit.adaptation.methods import AdaptMethod, build_method, parse_method
from transferkit.adaptation.net import AdaptNet
from transferkit.adaptation.selection import (
    SELECTION_CRITERIA,
    check_criterion,
    deep_embedded_validation,
    target_entropy,
)
from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.registry import is_backbone_name
from transferkit.bundle import load_bundle, resolve_bundle
from transferkit.config import TrainConfig
from transferkit.data.adapt_splits import AdaptDomains, unlabelled
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.engine.adapt import ValOutput
from transferkit.errors import ConfigError
from transferkit.options import AdaptConfig
from transferkit.source_loading import backbone_for_data

LABEL_FREE = ("source_val", "target_entropy", "dev")


def check_adapt_options(c: AdaptConfig) -> list[str]:
    """Validate what needs no data (before anything loads); the method's parts."""
    method, selection, epochs, target_val = c.method, c.selection, c.train.epochs, c.domains.target_val
    frozen, pretrained, backbone = c.network.frozen, c.network.pretrained, c.network.backbone
    parts = parse_method(method)
    check_criterion(selection)
    if selection == "oracle":
        raise ConfigError("selection", "a label-free criterion", "oracle",
                          "the oracle peeks at target labels; ask for it explicitly with oracle_selection=True")
    if epochs < 1:
        raise ConfigError("epochs", "at least 1", epochs)
    if target_val < 4:
        raise ConfigError("target_val", "at least 4 held-out target images", target_val)
    if frozen and not pretrained and is_backbone_name(backbone):
        raise ValueError("frozen=True adapts a head on frozen features: pass pretrained=True (or a bundle as the "
                         "backbone); frozen random features would not transfer anything")
    return parts


def build_model(backbone: str, num_classes: int, channels: int, pretrained: bool, image_size: int | None,
                bottleneck: int) -> tuple[Backbone, str]:
    """The network to adapt: a backbone by name (random or pretrained weights) or a bundle/run directory."""
    if not is_backbone_name(backbone):
        try:
            path = resolve_bundle(backbone)
        except Exception as exc:
            raise ConfigError("backbone", "a backbone name ('transferkit backbones' lists them) or a bundle/run "
                              "directory", backbone, str(exc)) from None
        model, _ = load_bundle(path)
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        model.set_bottleneck(num_classes, bottleneck)
        return model, f"bundle:{path}"
    model = backbone_for_data(backbone, channels, num_classes, pretrained, image_size)
    model.set_bottleneck(num_classes, bottleneck)
    return model, f"{'pretrained' if pretrained else 'scratch'}:{backbone}"


def build_network(c: AdaptConfig, d: AdaptDomains, parts: list[str]
                  ) -> tuple[Backbone, str, dict[str, TensorBatches], AdaptNet, float]:
    """The model (its initialisation depends on the seed alone: backbone from scratch, bottleneck head), where it
    came from, the batches it trains on (cached features when frozen), the network the method adapts, and the
    feature extraction time."""
    n, oracle_method = c.network, parts == ["target_oracle"]
    if len(d.t_train) < c.train.batch_size and not oracle_method and "source_only" not in parts:
        raise ValueError(f"target={c.target}: {len(d.t_train)} unlabelled target training images, fewer than "
                         f"batch_size={c.train.batch_size}; lower batch_size=… or give more target data")
    torch.manual_seed(c.train.seed)
    model, origin = build_model(n.backbone, d.source.num_classes, d.channels, n.pretrained, n.image_size, n.bottleneck)
    feat, net, extract_s = network_inputs(model, d, n.frozen, oracle_method)
    return model, origin, feat, net, extract_s


def network_inputs(model: Backbone, d: AdaptDomains, frozen: bool,
                   oracle_method: bool) -> tuple[dict[str, TensorBatches], AdaptNet, float]:
    """The batches the network trains and is scored on — with ``frozen``, the extractor's cached features (only the
    head adapts) — the network, and the seconds spent extracting."""
    prep = {name: to_batches(ds, model.input_spec) for name, ds in
            (("s_train", d.s_train), ("s_val", d.s_val), ("t_train", d.t_train), ("t_val", d.t_val),
             ("t_test", d.t_test))}
    prep["source_val"] = prep["s_val"]  # the real source validation data (diagnostics compare it with the target)
    if oracle_method:  # the upper reference: the labelled target replaces the source for training and selection
        prep["s_train"], prep["s_val"] = prep["t_train"], prep["t_val"]
    if not frozen:
        return prep, AdaptNet(model), 0.0
    t0 = time.perf_counter()
    extractor = copy.deepcopy(model).eval()
    feat = dict(prep)
    for key, data in prep.items():
        f, _ = cached_features(extractor, data, data.key or key)
        feat[key] = TensorBatches(f, data.y, key=data.key)
    return feat, AdaptNet(None, model.head), time.perf_counter() - t0


def training_setup(c: AdaptConfig, d: AdaptDomains, net: AdaptNet, origin: str
                   ) -> tuple[TrainConfig, AdaptMethod, list[dict[str, Any]]]:
    """The training settings, the method's module and the parameter groups (the backbone at ``backbone_lr_mult`` ×
    the rate: 0.1 for pretrained weights, 1 from scratch, by default)."""
    t = c.train
    cfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr if t.lr is not None else 1e-3,
                      weight_decay=t.weight_decay, optimizer=t.optimizer, seed=t.seed, accelerator=t.accelerator,
                      devices=t.devices, progress=t.progress, checkpoint_every=t.checkpoint_every)
    L.seed_everything(t.seed, verbose=False)
    method_mod = build_method(c.method, net.feature_dim, d.source.num_classes, c.options)
    mult = t.backbone_lr_mult if t.backbone_lr_mult is not None else (
        0.1 if (c.network.pretrained or origin.startswith("bundle")) else 1.0)
    return cfg, method_mod, param_groups(net, method_mod, cfg.lr, mult, c.network.frozen)


def param_groups(net: AdaptNet, method: AdaptMethod, lr: float, backbone_mult: float,
                 frozen: bool) -> list[dict[str, Any]]:
    """Head (bottleneck + classifier) and the method's own modules at ``lr``, the backbone at ``lr × mult``."""
    head_params = list(net.bottleneck.parameters()) + list(net.classifier.parameters())
    head_ids = {id(p) for p in head_params}
    body = [p for p in net.parameters() if id(p) not in head_ids]
    groups = [{"params": head_params, "lr": lr, "name": "head"},
              {"params": list(method.parameters()), "lr": lr, "name": "method"}]
    if body and not frozen:
        groups.insert(0, {"params": body, "lr": lr * backbone_mult, "name": "backbone"})
    return [g for g in groups if g["params"]]


def selection_inputs(feat: dict[str, TensorBatches], oracle_selection: bool, oracle_method: bool,
                     seed: int) -> tuple[list[TensorBatches], dict[str, Any]]:
    """What the label-free criteria see after each epoch (source validation, the held-out target images — labelled
    only for an oracle — and 1,000 source-training inputs for DEV's density-ratio fit) and the criteria."""
    t_val_seen = feat["t_val"] if (oracle_selection or oracle_method) else unlabelled(feat["t_val"])
    probe = unlabelled(feat["s_train"])
    probe.x = probe.x[torch.randperm(len(probe), generator=torch.Generator().manual_seed(seed))[:1000]]
    criteria = {c: SELECTION_CRITERIA[c] for c in LABEL_FREE}
    if oracle_selection:
        criteria["oracle"] = SELECTION_CRITERIA["oracle"]
    return [feat["s_val"], t_val_seen, probe], criteria


def make_scorer(oracle: bool):  # noqa: ANN201
    """Scores after each epoch from [source val, target val, source-train probe] outputs."""

    def scorer(outs: list[ValOutput]) -> dict[str, float]:
        src, tgt, probe = outs
        losses = F.cross_entropy(src.logits, src.labels, reduction="none")
        row = {"val_loss": float(losses.mean()), "val_acc": float((src.logits.argmax(1) == src.labels).float().mean())}
        row["source_val"] = row["val_acc"]
        row["target_entropy"] = target_entropy(tgt.logits)
        try:
            row["dev"] = deep_embedded_validation(probe.features.numpy(), src.features.numpy(), losses.numpy(),
                                                  tgt.features.numpy())
        except ValueError:
            row["dev"] = float("nan")
        if oracle and tgt.labels is not None:
            row["oracle"] = float((tgt.logits.argmax(1) == tgt.labels).float().mean())
        return row

    return scorer
