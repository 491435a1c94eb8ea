"""DELTA: keep the target network's feature maps close to the source network's, channel by channel.

Li, Xiong, Wang, Huan, Liu, Xu, Chen & Huan, 2019, "DELTA: Deep Learning Transfer using Feature Map with
Attention for Convolutional Networks" (ICLR). Instead of constraining the weights (L2-SP), DELTA constrains
the *behaviour*: on every training batch the outer-layer feature maps of the network being fine-tuned
should stay close to those of the frozen source network, weighted per channel by how much the target task
needs that channel:

    Ω = α/2 · Σ_j mean_b Σ_c W_jc · ||FM_jc(x_b; w) − FM_jc(x_b; w⁰)||² / (H_j·W_j)  +  β/2 · ||w_head||²

``j`` runs over the chosen stages, ``c`` over a stage output's channels (for a ``(B, D)`` output, each of the
``D`` units is a channel), and the squared distance is averaged over the ``H_j·W_j`` positions so stages of
different resolution weigh alike. The mean over the batch matches the per-example form of the paper.

**Scale (calibrated for a batch-mean loss).** TLlib's ``AttentionBehavioralRegularization`` computes the same
position-averaged, attention-weighted distance but *sums* it over the batch and adds it to the batch-mean
cross-entropy with trade-off 0.01 (``--trade-off-backbone``, batch 48); DELTA's authors use α = β = 0.01 in the
same summed form. Our term is the batch *mean*, so the same strength is α = 0.01 × 48 = **0.48** (default), and it
no longer changes with the batch size. (An α of 0.01 on the mean — the previous default — was 48× weaker than
the paper's and left fine-tuning unchanged to the third decimal.) β is a weight penalty, not a sum over
examples: 0.01 as in the paper. The run history's ``reg_ratio`` shows the term against the cross-entropy.

**Attention weights** (``attention=True``, the paper's method). The paper weights channel ``c`` by the
increase of the target loss when the channel is removed from the *source* network,
``W_c ∝ softmax(L(w⁰ without c) − L(w⁰))``. We compute them **once**, in :meth:`DELTA.attach`, on a labelled
sample of the target training set, like the authors' and TLlib's implementations (per-batch weights would
cost one extra forward pass per channel per step): (1) a copy of the new head is fitted on the frozen source
features of the sample (full batch, Adam); (2) for every chosen stage and channel, that channel of the
stage's output is set to 0, the rest of the source network and the fitted head are run, and the increase of
the cross-entropy is the channel's importance ``Δ_c``; (3) per stage, ``W = C · softmax(z(Δ) / τ)``, with
``z`` the standardisation over the stage's channels and temperature ``τ = 5`` (TLlib's choice: raw loss
differences are tiny and would give uniform weights). The factor ``C`` makes the weights average 1, so
``attention=False`` (every ``W = 1``, the paper's unweighted "feature map" variant) has the same scale.
Cost: ``Σ_j C_j`` forward passes of the network after stage ``j`` over the sample, once — and not even that
when the same (source weights, head, sample, stages, settings) were measured before: the weights are cached in
this process and on disk (``<feature cache>/delta-attention``, checksummed safetensors written atomically), so a
resumed run, a search's trials or a rerun skip the pass (``attention_cache``: ``"hit"``/``"miss"``).

Feature maps are read through forward hooks on the chosen stages during the training forward pass (no extra
target pass); the source maps need one forward of the frozen source up to the last chosen stage per step.
The source runs in eval mode (running BatchNorm statistics), as in the reference implementations, so a
network with BatchNorm in train mode is not at distance 0 from its own copy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.regularizers.base import (
    Batch,
    Regularizer,
    coefficient,
    head_prefix,
    register_regularizer,
    squared_norm,
)

CHUNK_ELEMENTS = 1 << 22  # values per batched channel-removal pass in the attention computation (16 MB in float32)
DEFAULT_ALPHA = 0.01 * 48  # the paper's/TLlib's α on the batch sum (batch 48), as a batch-mean term
MEMORY_ENTRIES = 8  # attention results kept in this process (each: one float vector per chosen stage)
_MEMORY: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
log = logging.getLogger("transferkit.regularizers.delta")


def attention_cache_dir() -> Path:
    """Where channel-attention results are kept between processes: ``<feature cache>/delta-attention``
    (``$TRANSFERKIT_CACHE``, default ``~/.cache/transferkit/features``)."""
    from transferkit.backbones.cache import cache_root

    return cache_root() / "delta-attention"


def _cached_attention(key: str, layers: list[str]) -> dict[str, torch.Tensor] | None:
    """The weights stored under ``key`` (this process first, then the disk), or ``None``. A disk entry that
    cannot be read, fails its checksum or lacks a stage is logged, deleted and recomputed."""
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return {k: v.clone() for k, v in _MEMORY[key].items()}
    path = attention_cache_dir() / f"{key}.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            checksum = (fh.metadata() or {}).get("sha256")
            weights = {name: fh.get_tensor(name) for name in layers}
        ok = checksum == _checksum(weights) and all(torch.isfinite(w).all() for w in weights.values())
    except Exception as err:  # a truncated or garbled file fails in many ways
        ok, weights = False, {}
        log.warning("unreadable DELTA attention cache entry %s (%s); recomputing", path.name, type(err).__name__)
    if not ok:
        path.unlink(missing_ok=True)
        return None
    _remember(key, weights)
    return weights


def _checksum(weights: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].float().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _remember(key: str, weights: dict[str, torch.Tensor]) -> None:
    _MEMORY[key] = {k: v.detach().cpu().clone() for k, v in weights.items()}
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)


def _store_attention(key: str, weights: dict[str, torch.Tensor]) -> None:
    """Keep ``weights`` in this process and on disk (atomic: a temporary file renamed into place); a disk that
    cannot be written only loses the cross-process reuse."""
    _remember(key, weights)
    from safetensors.torch import save_file

    folder = attention_cache_dir()
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in weights.items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"sha256": _checksum(tensors)})
            os.replace(tmp, folder / f"{key}.safetensors")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        log.warning("could not write the DELTA attention cache entry in %s: %s", folder, err)


def feature_map_distance(target: torch.Tensor, source: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_b Σ_c w_c · ||T_bc − S_bc||² / P`` for maps ``(B, C, H, W)`` (``P = H·W``) or ``(B, C)`` (``P = 1``).

    ``weights`` ``(C,)``: per-channel weights (default: all 1). ``source`` is treated as a constant.
    """
    if target.shape != source.shape:
        raise ValueError(f"delta: target map {tuple(target.shape)} and source map {tuple(source.shape)} differ")
    t = target.flatten(2) if target.ndim > 2 else target.unsqueeze(-1)  # (B, C, P)
    s = source.detach().flatten(2) if source.ndim > 2 else source.detach().unsqueeze(-1)
    d = (t - s).pow(2).mean(-1)  # (B, C)
    if weights is not None:
        d = d * weights.to(d.dtype)
    return d.sum(1).mean()


def _forward_stages(
    stages: nn.ModuleDict, x: torch.Tensor, after: str | None = None, keep: tuple[str, ...] = (),
    stop: str | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``stages`` on ``x`` (starting after stage ``after``, ending at ``stop``); outputs of ``keep`` too."""
    names = list(stages)
    start = names.index(after) + 1 if after is not None else 0
    kept: dict[str, torch.Tensor] = {}
    for name in names[start:]:
        x = stages[name](x)
        if name in keep:
            kept[name] = x
        if name == stop:
            break
    return x, kept


@register_regularizer
class DELTA(Regularizer):
    """Attention-weighted feature-map distance to the frozen source network, plus L2 on the new head.

    Parameters
    ----------
    alpha:
        Strength of the feature-map term on the batch mean (default 0.48: the paper's and TLlib's 0.01 on the
        batch sum at batch 48; see the module docstring).
    beta:
        Strength of plain L2 on the head (paper: 0.01; default 0.01).
    layers:
        Stages whose outputs are compared (a name, a list, or a comma-separated string; default: every stage).
    attention:
        ``True``: the paper's channel-attention weights (needs ``data`` at :meth:`attach`); ``False``: all 1.
    temperature:
        ``τ`` of the attention softmax.
    attention_steps:
        Adam steps that fit the head copy on the source features before the channel importances are measured.
    head:
        Attribute name of the classifier.

    The model (and source) must follow the :class:`~transferkit.backbones.base.Backbone` interface: named
    ``stages``, ``pool_features`` and a ``head``.
    """

    name = "delta"
    paper = "Li et al., 2019 (DELTA)"
    strategy_options = {"alpha": "alpha", "beta": "beta", "layers": "layers", "attention": "attention"}
    replaces_weight_decay = True
    needs_data = True

    def __init__(self, alpha: float = DEFAULT_ALPHA, beta: float = 0.01, layers: str | list[str] | None = None,
                 attention: bool = True, temperature: float = 5.0, attention_steps: int = 100,
                 head: str = "head") -> None:
        super().__init__()
        self.alpha, self.beta = coefficient("delta", "alpha", alpha), coefficient("delta", "beta", beta)
        if not coefficient("delta", "temperature", temperature) > 0:
            raise ValueError(f"delta: temperature must be positive, got {temperature}")
        if not isinstance(attention, bool):
            raise ValueError(f"delta: attention must be true or false, got {attention!r}")
        if isinstance(attention_steps, bool) or not isinstance(attention_steps, int) or attention_steps < 0:
            raise ValueError(f"delta: attention_steps must be an integer ≥ 0, got {attention_steps!r}")
        if layers is not None and not isinstance(layers, (str, list, tuple)):
            raise ValueError(f"delta: layers must be a stage name, a list of names or 'a,b', got {layers!r}")
        self.head = head
        self.layers = [s.strip() for s in layers.split(",") if s.strip()] if isinstance(layers, str) else layers
        self.attention, self.temperature, self.attention_steps = attention, float(temperature), attention_steps
        self.source: nn.Module | None = None
        self.weights: dict[str, torch.Tensor] = {}
        self.attention_cache: str | None = None  # "hit"/"miss" of the last attach with attention (None: not asked)
        self._maps: dict[str, torch.Tensor] = {}

    # -- before training ---------------------------------------------------------------------------
    def attach(self, model: nn.Module, source: nn.Module | None = None, data: Batch | None = None) -> DELTA:
        """Copy ``source`` (default: ``model`` now) as the frozen reference, hook the chosen stages of ``model``,
        and, with ``attention=True``, compute the channel weights on ``data = (x, y)``."""
        self.detach()
        head_prefix(model, self.head)
        stages = getattr(model, "stages", None)
        if not isinstance(stages, nn.ModuleDict) or not len(stages):
            raise ValueError("delta: the model has no named stages (Backbone.stages) to read feature maps from")
        layers = list(self.layers) if self.layers else list(stages)
        unknown = [n for n in layers if n not in stages]
        if unknown:
            raise ValueError(f"delta: unknown layer(s) {unknown}; valid layers: {', '.join(stages)}")
        self.layers = [n for n in stages if n in layers]  # input → output order
        ref = copy.deepcopy(source if source is not None else model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        missing = [n for n in self.layers if n not in ref.stages]
        if missing:
            raise ValueError(f"delta: the source lacks stage(s) {missing}; valid layers: {', '.join(ref.stages)}")
        self.source = ref
        self.weights = {}
        self.attention_cache = None
        if self.attention:
            if data is None:
                raise ValueError("delta: attention weights need a labelled sample data=(x, y); "
                                 "pass data or attention=False")
            head = getattr(model, self.head)
            key = self._attention_key(head, *data)
            cached = _cached_attention(key, self.layers)
            self.attention_cache = "hit" if cached is not None else "miss"
            self.weights = cached if cached is not None else self.channel_attention(head, *data)
            if cached is None:
                _store_attention(key, self.weights)
        for name in self.layers:
            self._hook(stages[name].register_forward_hook(self._recorder(name)))
        return self

    def _attention_key(self, head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
        """What the channel weights depend on: the source's weights, the head they start the fitted copy from,
        the sample, the stages and the attention settings (hex SHA-256)."""
        from transferkit.backbones.cache import weights_hash

        h = hashlib.sha256()
        h.update(json.dumps({"format": 1, "source": weights_hash(self.source), "layers": self.layers,
                             "temperature": self.temperature, "steps": self.attention_steps,
                             "x": [list(x.shape), str(x.dtype)], "y": [list(y.shape), str(y.dtype)]},
                            sort_keys=True).encode())
        for t in (*(p.detach() for p in head.state_dict().values()), x, y):
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:40]

    def _recorder(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if torch.is_grad_enabled():  # training forwards only
                self._maps[name] = output.clone()  # a later stage may modify its input in place
        return record

    @torch.no_grad()
    def channel_attention(self, head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per chosen stage, channel weights ``(C,)`` from the loss increase when the channel is removed from the
        frozen source (see the module docstring); ``head`` is the new classifier, copied and fitted first."""
        src = self.source
        assert src is not None
        device = next(src.parameters()).device
        x, y = x.to(device), y.to(device)
        last, outputs = _forward_stages(src.stages, x, keep=tuple(self.layers))
        features = src.pool_features(last)
        clf = copy.deepcopy(head).to(device).train()
        for p in clf.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
        with torch.enable_grad():
            for _ in range(self.attention_steps):
                opt.zero_grad()
                F.cross_entropy(clf(features), y).backward()
                opt.step()
        clf.eval()
        base = F.cross_entropy(clf(features), y)
        weights: dict[str, torch.Tensor] = {}
        for name in self.layers:
            out = outputs[name]
            n, channels = out.shape[0], out.shape[1]
            delta = torch.empty(channels, device=device)
            # several channel removals per pass, as one batch of k copies (the source is in eval mode, so the
            # examples are independent); k keeps the batch near CHUNK_ELEMENTS values
            k = max(1, min(channels, CHUNK_ELEMENTS // max(out.numel(), 1)))
            for start in range(0, channels, k):
                cs = torch.arange(start, min(channels, start + k), device=device)
                removed = out.unsqueeze(0).repeat(len(cs), *([1] * out.ndim))  # (k, B, C, …)
                removed[torch.arange(len(cs), device=device), :, cs] = 0  # copy i loses channel cs[i]
                last, _ = _forward_stages(src.stages, removed.flatten(0, 1), after=name)
                losses = F.cross_entropy(clf(src.pool_features(last)), y.repeat(len(cs)), reduction="none")
                delta[cs] = losses.view(len(cs), n).mean(1) - base
            std = delta.std() if delta.numel() > 1 else delta.new_zeros(())
            z = (delta - delta.mean()) / std if std > 0 else torch.zeros_like(delta)
            weights[name] = delta.numel() * torch.softmax(z / self.temperature, dim=0)
        return weights

    # -- each training step ------------------------------------------------------------------------
    def forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The penalty for the batch ``x``: maps recorded during the forward that made ``logits`` (recomputed
        when there was none) against the frozen source's maps on the same ``x``."""
        if self.source is None:
            raise RuntimeError("delta: call attach(model, source) before training")
        maps, self._maps = self._maps, {}
        if any(n not in maps or maps[n].shape[0] != x.shape[0] for n in self.layers):
            _, maps = _forward_stages(model.stages, x, keep=tuple(self.layers), stop=self.layers[-1])
            self._maps = {}  # the recomputation fired the hooks too
        if next(self.source.parameters()).device != x.device:
            self.source.to(x.device)
            self.weights = {k: w.to(x.device) for k, w in self.weights.items()}
        with torch.no_grad():
            _, ref = _forward_stages(self.source.stages, x, keep=tuple(self.layers), stop=self.layers[-1])
        dist = torch.stack([feature_map_distance(maps[n], ref[n], self.weights.get(n)) for n in self.layers]).sum()
        prefix = head_prefix(model, self.head)
        head = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        return 0.5 * self.alpha * dist + 0.5 * self.beta * squared_norm(head, x.device)
