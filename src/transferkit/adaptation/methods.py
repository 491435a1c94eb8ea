"""Domain-adaptation methods as loss modules, kept apart from the training loop (the TLlib pattern).

A method is an ``nn.Module`` built for a feature width and a number of classes. The engine
(:func:`transferkit.engine.adapt.fit_adapt`) draws a labelled source batch and an unlabelled target batch
together, passes both through the network, and adds the method's terms to the source cross-entropy::

    terms = method(f_s, logits_s, f_t, logits_t, progress)   # {"name": scalar tensor}

``f_*`` are the features the adaptation aligns (the classifier's bottleneck output), ``logits_*`` the
predictions, ``progress`` ∈ [0, 1] the fraction of training done (for warm-up schedules). Methods with
their own parameters (domain discriminators) train with the network, at the head's learning rate.

Registered methods (``transferkit adapt --list-methods``):

* ``source_only`` — no adaptation: the baseline every method must beat.
* ``target_oracle`` — trained on the *labelled* target training split: an upper reference that uses target
  labels, marked as such wherever it appears.
* ``dann`` — Ganin & Lempitsky, ICML 2015 / Ganin et al., JMLR 2016, "Domain-Adversarial Training of Neural
  Networks": a domain discriminator on the features behind a gradient-reversal layer whose coefficient
  warms up as ``2/(1+e^(−10p)) − 1``.
* ``cdan`` / ``cdan+e`` — Long, Cao, Wang & Jordan, NeurIPS 2018, "Conditional Adversarial Domain
  Adaptation": the discriminator sees the multilinear map ``f ⊗ softmax(g)`` (randomised when wide);
  ``+e`` weights examples by ``1 + e^(−H(g))`` so that confident predictions count more.
* ``dan`` — Long, Cao, Wang & Jordan, ICML 2015, "Learning Transferable Features with Deep Adaptation
  Networks": multi-kernel MMD² between the batches' features.
* ``coral`` — Sun & Saenko, ECCV-W 2016, "Deep CORAL": distance between the feature covariances.
* ``adabn`` — Li et al., 2016, "Revisiting Batch Normalization For Practical Domain Adaptation": train as
  source-only, then re-estimate every BatchNorm layer's statistics on the target (no loss term).
* ``self_training`` — pseudo-labelling (Lee, 2013, "Pseudo-Label"), with FixMatch's confidence threshold
  (Sohn et al., 2020): cross-entropy on the target examples the model predicts with probability ≥
  ``threshold``, ramped in with the DANN schedule.

Methods combine with ``+``: ``dann+self_training``, ``cdan+e+adabn``; the terms add up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.adaptation.losses import GradientReversal, coral_loss, dann_coefficient, mk_mmd_loss
from transferkit.errors import ConfigError
from transferkit.registry import Registry

Terms = dict[str, torch.Tensor]


class AdaptMethod(nn.Module):
    """Base class. Subclasses set ``name``, ``summary``, ``paper``, ``option_defaults`` and implement
    :meth:`forward` (unless they add no loss term).

    Class attributes
    ----------------
    uses_target:
        Whether training draws unlabelled target batches (``False``: source batches only, faster).
    target_labels:
        The method trains on target labels (``target_oracle``): an upper reference, never a method.
    post_hoc:
        Work done after training (``"adabn"``: re-estimate BatchNorm statistics on the target).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    option_defaults: ClassVar[dict[str, Any]] = {}
    uses_target: ClassVar[bool] = True
    target_labels: ClassVar[bool] = False
    post_hoc: ClassVar[str | None] = None

    def __init__(self, feature_dim: int, num_classes: int, **options: Any) -> None:
        super().__init__()
        unknown = set(options) - set(self.option_defaults)
        if unknown:
            valid = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"adaptation method '{self.name}' has no option(s) {sorted(unknown)}; valid options: "
                             f"{valid}")
        self.options = {**self.option_defaults, **options}
        self.feature_dim, self.num_classes = int(feature_dim), int(num_classes)

    @property
    def parts(self) -> list[str]:
        return [self.name]

    def forward(self, f_s: torch.Tensor, logits_s: torch.Tensor, f_t: torch.Tensor | None,
                logits_t: torch.Tensor | None, progress: float) -> Terms:
        return {}


METHODS: Registry[type[AdaptMethod]] = Registry("adaptation-methods", "adaptation method", sort=False)


def register_method(cls: type[AdaptMethod]) -> type[AdaptMethod]:
    """Class decorator: make an adaptation method available by its ``name``."""
    return METHODS.register()(cls)


def list_methods() -> list[type[AdaptMethod]]:
    return [METHODS.get(n) for n in METHODS.names()]


def _tokens(spec: str) -> list[str]:
    """``"cdan+e+self_training"`` → ``["cdan+e", "self_training"]`` (``cdan+e`` is one method)."""
    raw = [t.strip() for t in spec.split("+")]
    out: list[str] = []
    for tok in raw:
        if tok == "e" and out and out[-1] == "cdan":
            out[-1] = "cdan+e"
        else:
            out.append(tok)
    return out


def parse_method(spec: str) -> list[str]:
    """Validate a method spec (``dann``, ``cdan+e``, ``dann+self_training``); returns its parts.

    ``source_only`` and ``target_oracle`` stand alone; every other part appears at most once.
    """
    parts = _tokens(spec)
    for p in parts:
        if p not in METHODS:
            raise METHODS.unknown(p, f" in '{spec}'", "combine with '+', e.g. dann+self_training")
    if len(parts) > 1:
        alone = [p for p in parts if p in ("source_only", "target_oracle")]
        if alone:
            raise ConfigError("method", f"'{alone[0]}' alone (it cannot be combined with other methods)", spec)
        if len(set(parts)) != len(parts):
            raise ConfigError("method", "each method once", spec)
        adversarial = [p for p in parts if p in ("dann", "cdan", "cdan+e")]
        if len(adversarial) > 1:
            raise ConfigError("method", f"one adversarial method of {', '.join(adversarial)}", spec)
    return parts


def _split_options(parts: Sequence[str], options: dict[str, Any]) -> list[dict[str, Any]]:
    """Give each option to the part(s) that have it; ``dann.trade_off=0.5`` names the part explicitly."""
    per: list[dict[str, Any]] = [{} for _ in parts]
    for key, value in options.items():
        owner, dot, opt = key.rpartition(".")
        targets = [i for i, p in enumerate(parts) if (not dot or p == owner) and opt in METHODS.get(p).option_defaults]
        if not targets:
            valid = sorted({f"{p}.{o}" if len(parts) > 1 else o for p in parts for o in METHODS.get(p).option_defaults})
            raise ConfigError("options", f"an option of method '{'+'.join(parts)}': {', '.join(valid) or 'none'}",
                              key)
        for i in targets:
            per[i][opt] = value
    return per


def build_method(spec: str, feature_dim: int, num_classes: int, options: dict[str, Any] | None = None) -> AdaptMethod:
    """The method (or combination) ``spec`` for features of width ``feature_dim`` and ``num_classes`` classes."""
    parts = parse_method(spec)
    per = _split_options(parts, dict(options or {}))
    if len(parts) == 1:
        return METHODS.get(parts[0])(feature_dim, num_classes, **per[0])
    return Combined([METHODS.get(p)(feature_dim, num_classes, **o) for p, o in zip(parts, per, strict=True)])


class Combined(AdaptMethod):
    """Several methods at once; their loss terms add up (e.g. ``dann+self_training``)."""

    name = "combined"

    def __init__(self, methods: Sequence[AdaptMethod]) -> None:
        super().__init__(methods[0].feature_dim, methods[0].num_classes)
        self.methods = nn.ModuleList(methods)
        self.options = {f"{m.name}.{k}": v for m in methods for k, v in m.options.items()}

    @property
    def parts(self) -> list[str]:
        return [m.name for m in self.methods]

    @property
    def uses_target(self) -> bool:  # type: ignore[override]
        return any(m.uses_target for m in self.methods)

    @property
    def post_hoc(self) -> str | None:  # type: ignore[override]
        return next((m.post_hoc for m in self.methods if m.post_hoc), None)

    def forward(self, f_s, logits_s, f_t, logits_t, progress):  # noqa: ANN001, ANN201
        terms: Terms = {}
        for m in self.methods:
            for k, v in m(f_s, logits_s, f_t, logits_t, progress).items():
                terms[k if k not in terms else f"{m.name}.{k}"] = v
        return terms


@register_method
class SourceOnly(AdaptMethod):
    name = "source_only"
    summary = "no adaptation: trained on labelled source only (the baseline)"
    uses_target = False


@register_method
class TargetOracle(AdaptMethod):
    name = "target_oracle"
    summary = "trained on the LABELLED target (upper reference, uses target labels)"
    uses_target = False
    target_labels = True


@register_method
class AdaBN(AdaptMethod):
    name = "adabn"
    summary = "re-estimate BatchNorm statistics on the target after training"
    paper = "Li et al., 2016, Revisiting Batch Normalization For Practical Domain Adaptation"
    uses_target = False
    post_hoc = "adabn"


class DomainDiscriminator(nn.Sequential):
    """Two hidden layers with BatchNorm and ReLU, then one logit (the DANN/CDAN discriminator of TLlib's
    reference implementations, narrower for CPU budgets)."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, 1))


def _domain_loss(d_s: torch.Tensor, d_t: torch.Tensor, w_s: torch.Tensor | None = None,
                 w_t: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of the discriminator: source = 1, target = 0, each domain weighted equally."""
    ls = F.binary_cross_entropy_with_logits(d_s.squeeze(1), torch.ones_like(d_s.squeeze(1)), weight=w_s)
    lt = F.binary_cross_entropy_with_logits(d_t.squeeze(1), torch.zeros_like(d_t.squeeze(1)), weight=w_t)
    return (ls + lt) / 2


@register_method
class DANN(AdaptMethod):
    name = "dann"
    summary = "domain-adversarial: discriminator behind gradient reversal"
    paper = "Ganin et al., 2016, Domain-Adversarial Training of Neural Networks (JMLR)"
    option_defaults = {"trade_off": 1.0, "hidden": 256, "gamma": 10.0}

    def __init__(self, feature_dim: int, num_classes: int, **options: Any) -> None:
        super().__init__(feature_dim, num_classes, **options)
        self.grl = GradientReversal(0.0)
        self.discriminator = DomainDiscriminator(feature_dim, int(self.options["hidden"]))
        self.last_accuracy = float("nan")  # the discriminator's accuracy on the last batch (logged)

    def forward(self, f_s, logits_s, f_t, logits_t, progress):  # noqa: ANN001, ANN201
        self.grl.coeff = dann_coefficient(progress, self.options["gamma"])
        d = self.discriminator(self.grl(torch.cat([f_s, f_t])))
        d_s, d_t = d[: len(f_s)], d[len(f_s):]
        with torch.no_grad():
            self.last_accuracy = float(((d_s > 0).float().mean() + (d_t <= 0).float().mean()) / 2)
        return {"domain_loss": self.options["trade_off"] * _domain_loss(d_s, d_t)}


@register_method
class CDAN(AdaptMethod):
    name = "cdan"
    summary = "conditional adversarial: discriminator on features ⊗ predictions"
    paper = "Long et al., 2018, Conditional Adversarial Domain Adaptation (NeurIPS)"
    option_defaults = {"trade_off": 1.0, "hidden": 256, "gamma": 10.0, "randomized_dim": 1024}
    entropy_conditioning: ClassVar[bool] = False

    def __init__(self, feature_dim: int, num_classes: int, **options: Any) -> None:
        super().__init__(feature_dim, num_classes, **options)
        self.grl = GradientReversal(0.0)
        full = feature_dim * num_classes
        rdim = int(self.options["randomized_dim"])
        self.randomized = full > 4096  # the paper's rule: multilinear map up to 4096 dims, randomised beyond
        if self.randomized:
            g = torch.Generator().manual_seed(0)
            self.register_buffer("rf", torch.randn(feature_dim, rdim, generator=g))
            self.register_buffer("rg", torch.randn(num_classes, rdim, generator=g))
        in_dim = rdim if self.randomized else full
        self.discriminator = DomainDiscriminator(in_dim, int(self.options["hidden"]))

    def _map(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:  # (f R_f) ⊙ (g R_g) / √d: an unbiased estimate of the inner products of f ⊗ g
            return (f @ self.rf) * (g @ self.rg) / math.sqrt(self.rf.shape[1])
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)

    def forward(self, f_s, logits_s, f_t, logits_t, progress):  # noqa: ANN001, ANN201
        self.grl.coeff = dann_coefficient(progress, self.options["gamma"])
        g = F.softmax(torch.cat([logits_s, logits_t]), dim=1).detach()
        f = torch.cat([f_s, f_t])
        d = self.discriminator(self.grl(self._map(f, g)))
        n = len(f_s)
        w_s = w_t = None
        if self.entropy_conditioning:  # CDAN+E: w = 1 + e^(−H), normalised to sum to the batch size per domain
            h = -(g * torch.log(g + 1e-8)).sum(1)
            w = 1.0 + torch.exp(-h)
            w_s, w_t = w[:n] / w[:n].sum() * n, w[n:] / w[n:].sum() * (len(w) - n)
        return {"domain_loss": self.options["trade_off"] * _domain_loss(d[:n], d[n:], w_s, w_t)}


@register_method
class CDANE(CDAN):
    name = "cdan+e"
    summary = "CDAN with entropy conditioning (confident examples weigh more)"
    entropy_conditioning = True


class _StatisticAlignment(AdaptMethod):
    """A distance between the source and target feature batches, weighted by ``trade_off``: the loss term
    ``loss_name`` is ``trade_off · distance(f_s, f_t)``."""

    option_defaults = {"trade_off": 1.0}
    loss_name = ""

    @staticmethod
    def distance(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, f_s, logits_s, f_t, logits_t, progress):  # noqa: ANN001, ANN201
        return {self.loss_name: self.options["trade_off"] * self.distance(f_s, f_t)}


@register_method
class DAN(_StatisticAlignment):
    name = "dan"
    summary = "multi-kernel MMD between source and target features"
    paper = "Long et al., 2015, Learning Transferable Features with Deep Adaptation Networks (ICML)"
    loss_name = "mmd_loss"
    distance = staticmethod(mk_mmd_loss)


@register_method
class CORAL(_StatisticAlignment):
    name = "coral"
    summary = "align second-order statistics (feature covariances)"
    paper = "Sun & Saenko, 2016, Deep CORAL: Correlation Alignment for Deep Domain Adaptation"
    loss_name = "coral_loss"
    distance = staticmethod(coral_loss)


@register_method
class SelfTraining(AdaptMethod):
    name = "self_training"
    summary = "pseudo-labels on confident target predictions"
    paper = "Lee, 2013, Pseudo-Label; confidence threshold as in Sohn et al., 2020, FixMatch"
    option_defaults = {"threshold": 0.9, "trade_off": 1.0, "gamma": 10.0}

    def __init__(self, feature_dim: int, num_classes: int, **options: Any) -> None:
        super().__init__(feature_dim, num_classes, **options)
        if not 0.0 < float(self.options["threshold"]) < 1.0:
            raise ValueError(f"self_training: threshold must be in (0, 1), got {self.options['threshold']}")
        self.last_mask_rate = float("nan")  # share of target examples above the threshold (logged)

    def forward(self, f_s, logits_s, f_t, logits_t, progress):  # noqa: ANN001, ANN201
        with torch.no_grad():
            conf, pseudo = F.softmax(logits_t, dim=1).max(1)
            mask = (conf >= self.options["threshold"]).float()
            self.last_mask_rate = float(mask.mean())
        ce = (F.cross_entropy(logits_t, pseudo, reduction="none") * mask).sum() / max(len(mask), 1)
        ramp = dann_coefficient(progress, self.options["gamma"])
        return {"pseudo_loss": self.options["trade_off"] * ramp * ce}
