"""LoRA adapters on a backbone — the model surgery, and the bundle format that stores only what LoRA changed.

Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models": a frozen weight ``W`` gets a trainable
update ``(alpha / r) · B·A`` of rank ``r``. The adapters are injected by Hugging Face ``peft`` (``LoraModel``);
:func:`merge_lora` folds the update back into ``W`` for a plain network. How LoRA *trains* (which layers, rate,
steps) is the ``lora`` strategy (:mod:`transferkit.strategies.lora`); this module is what a model with adapters
is, so that bundles, export and merge can handle one without knowing the strategy.

:data:`LORA_FORMAT` is the ``lora`` :class:`~transferkit.backbones.formats.BundleFormat`: a LoRA bundle holds the
adapters, the head (and BatchNorm statistics when they trained) and an ``adapter`` record naming its source by
weight hash; loading rebuilds the source (a bundle, checked like any other, or a backbone whose pretrained
weights are on this machine — never downloaded) and injects the adapters again.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.formats import BundleFormat, LoadContext

ADAPTER_KEY = "lora_"
BN_POLICIES = ("frozen", "train")


def inject_lora(model: Backbone, targets: list[str], r: int, alpha: float, dropout: float = 0.0) -> Backbone:
    """Wrap ``targets`` of ``model`` (in place) with LoRA adapters through ``peft``; returns ``model``.

    Afterwards only the adapters are trainable (``peft`` freezes the rest); the caller unfreezes the head.
    """
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    config = LoraConfig(r=int(r), lora_alpha=float(alpha), lora_dropout=float(dropout), target_modules=list(targets))
    LoraModel(model, config, "default")  # injects into ``model`` itself
    model.adapter = {"type": "lora", "r": int(r), "alpha": float(alpha), "dropout": float(dropout),
                     "targets": list(targets)}
    return model


def adapter_state(model: Backbone, with_bn_stats: bool = False) -> dict[str, torch.Tensor]:
    """The tensors that make a LoRA model differ from its source: adapters, head (and BatchNorm statistics)."""
    bn = {f"{n}.{b}" for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          for b in ("running_mean", "running_var", "num_batches_tracked")} if with_bn_stats else set()
    return {k: v for k, v in model.state_dict().items()
            if ADAPTER_KEY in k or k.startswith("head.") or k in bn}


def merge_lora(model: Backbone) -> Backbone:
    """Fold every LoRA update into its base layer and remove the adapters (in place); returns ``model``.

    The merged model computes the same function (up to float rounding) as a plain backbone.
    """
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, module.get_base_layer())
    if hasattr(model, "adapter"):
        del model.adapter
    return model


# -- the bundle format ------------------------------------------------------------------------------------------
def _validate(meta: dict[str, Any]) -> None:
    """``adapter`` of a LoRA bundle's ``transferkit.json``: rank, scale, dropout, BN policy, target module names
    (no path characters), the source's architecture (on the allow-lists) and weight hash."""
    from transferkit.backbones.registry import _type, validate_config

    adapter = meta["adapter"]
    r, alpha, dropout = adapter.get("r"), adapter.get("alpha"), adapter.get("dropout", 0.0)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4096:
        raise ValueError(f"adapter.r must be a whole number in [1, 4096], got {r!r}"[:300])
    for name, v, lo_ok in (("alpha", alpha, False), ("dropout", dropout, True)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                or (v == 0 and not lo_ok) or (name == "dropout" and v >= 1):
            raise ValueError(f"adapter.{name} must be a number in {'[0, 1)' if name == 'dropout' else '(0, ∞)'}, "
                             f"got {v!r}"[:300])
    if adapter.get("bn", "frozen") not in BN_POLICIES:
        raise ValueError(f"adapter.bn must be 'frozen' or 'train', got {adapter.get('bn')!r}"[:300])
    targets = adapter.get("targets")
    if not isinstance(targets, list) or not 1 <= len(targets) <= 100_000 or not all(
            isinstance(t, str) and 0 < len(t) <= 512 and all(ch.isalnum() or ch in "._-" for ch in t) for t in targets):
        raise ValueError("adapter.targets must be a list of module names (letters, digits, '.', '_', '-')")
    base = adapter.get("base")
    if not isinstance(base, dict):
        raise ValueError(f"adapter.base must be an object (the source's architecture and weight hash), got "
                         f"{_type(base)}")
    validate_config(base.get("architecture"), "adapter.base.architecture")
    h = base.get("weights_hash")
    if not (isinstance(h, str) and 16 <= len(h) <= 128 and all(ch in "0123456789abcdef" for ch in h)):
        raise ValueError(f"adapter.base.weights_hash must be a hexadecimal hash, got {h!r}"[:300])


def _state(model: Backbone) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    adapter = model.adapter
    return adapter_state(model, with_bn_stats=adapter.get("bn") == "train"), {"adapter": dict(adapter)}


def _load(meta: dict[str, Any], ctx: LoadContext) -> Backbone:
    """Rebuild the source (a bundle, or a backbone with pretrained weights here), check its weight hash, inject the
    adapters and load the stored tensors."""
    from transferkit.backbones.cache import weights_hash
    from transferkit.backbones.registry import create_backbone, is_backbone_name

    adapter = meta["adapter"]
    base_info = adapter["base"]
    source = str((meta.get("lineage") or {}).get("source") or "")
    base = ctx.load_source(source) if source else None
    if base is None:
        arch = base_info["architecture"]
        if not (source and is_backbone_name(source)):
            raise ctx.error(f"{ctx.path}: a LoRA bundle holds adapters only; its source '{source}' is neither a "
                            "bundle nor a backbone with pretrained weights here — merge it where the source is "
                            "available (transferkit merge) to get a self-contained bundle")
        if arch["arch"] != source:
            raise ctx.error(f"{ctx.path / 'transferkit.json'}: lineage.source '{source}' is not the architecture the "
                            f"adapters were trained on (adapter.base.architecture.arch '{arch['arch']}')")
        try:
            base = create_backbone(source, pretrained=True, **(arch.get("kwargs") or {}))
        except Exception as exc:  # noqa: BLE001 — not available locally (sealed: never downloaded)
            raise ctx.error(f"{ctx.path}: a LoRA bundle holds adapters only, and the pretrained weights of its "
                            f"source '{source}' are not available here ({str(exc).splitlines()[0][:300]}); merge it "
                            "where they are (transferkit merge) to get a self-contained bundle") from None
    if weights_hash(base) != base_info["weights_hash"]:
        raise ctx.error(f"{ctx.path}: the source '{source}' has other weights than the ones these adapters were "
                        "trained on (weight hash differs); the adapters would not fit it")
    base.reset_classifier(int(meta["num_classes"]))
    inject_lora(base, adapter["targets"], adapter["r"], adapter["alpha"], adapter.get("dropout", 0.0))
    base.adapter.update({k: v for k, v in adapter.items() if k not in base.adapter})
    ctx.check_weights(adapter_state(base, with_bn_stats=adapter.get("bn") == "train"), "adapter weights")
    base.load_state_dict(ctx.read_weights(), strict=False)
    return base


LORA_FORMAT = BundleFormat(
    "lora", "adapters, head (and BatchNorm statistics) only; rebuilt on the source, checked by weight hash",
    validate=_validate, state=_state, load=_load, merge=merge_lora)
"""The ``lora`` bundle format (declared as an entry point in ``pyproject.toml``)."""
