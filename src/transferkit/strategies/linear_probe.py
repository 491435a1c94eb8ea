"""Feature transfer: a frozen source feature extractor and a new linear head on its features.

Features are extracted **once** (inference mode, batched, and cached on disk keyed by the backbone's
weights, the data and the preprocessing), so fitting the head costs matrix multiplies instead of passes through
the network — the reason feature transfer is the fast option (Donahue et al., 2014, "DeCAF").

The head is **solved** by default (``solver="lbfgs"``): a linear head on frozen features is a convex problem, so
it is fitted to convergence as L2-regularised multinomial logistic regression on standardised features, its L2
strength chosen by stratified cross-validation on the training labels (:mod:`transferkit.strategies.probe_solver`;
Kornblith et al., 2019, "Do Better ImageNet Models Transfer Better?", and CLIP's linear-probe protocol, Radford et
al., 2021). ``solver="sgd"`` keeps the stepped head — mini-batch AdamW epochs with early stopping on the validation
split — for comparison.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.features import extract_features
from transferkit.config import TrainConfig
from transferkit.data.augment import refuse_pixel_options
from transferkit.data.prepare import TensorBatches
from transferkit.engine.device import inference_device
from transferkit.strategies.base import Strategy, TrainingPlan, register_strategy, truncation_stage
from transferkit.strategies.probe_solver import check_finite, solve_probe

SOLVERS = ("lbfgs", "sgd")
# training settings a solved probe has no use for (TrainConfig fields); listed in its record as name=value when changed
STEPPING_SETTINGS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "patience", "schedule", "warmup_epochs",
                     "mixup", "accelerator", "precision")


def frozen_features(model: Backbone, data: TensorBatches, accelerator: str = "cpu") -> tuple[torch.Tensor, bool]:
    """Features of ``data`` through ``model`` (whole extractor), from the disk cache when the data has a key,
    extracted on the run's GPU when its ``accelerator`` resolves to one (:func:`~transferkit.engine.device
    .inference_device`)."""
    device = inference_device(accelerator)
    if getattr(data, "key", None):
        return cached_features(model, data, data.key, device=device)
    return extract_features(model, data, device=device), False


def ignored_settings(cfg: TrainConfig) -> list[str]:
    """The flags of ``cfg`` (as given, before a strategy's defaults) that a solved probe does not use — those set away
    from their defaults: learning rate, epochs, batch size, optimiser, schedule, early stopping, Mixup, devices."""
    default = TrainConfig()
    out = [f"{name}={getattr(cfg, name)}" for name in STEPPING_SETTINGS if getattr(cfg, name) != getattr(default, name)]
    if cfg.processes > 1:
        out.append(f"devices={cfg.devices} num_nodes={cfg.num_nodes} (the solve runs in one process)")
    return out


def solvable_head(head: nn.Module, arch: str) -> tuple[nn.Linear, nn.Module | None]:
    """``(the final linear layer, what comes before it or None)`` of a probe head, when everything before the linear
    layer is parameter-free (a plain linear head; a feature-fusion head that concatenates). A head with trainable
    layers before its classifier (a fusion projection) is not a convex problem: a ``ValueError`` says what to use."""
    if isinstance(head, nn.Linear):
        return head, None
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
        before = nn.Sequential(*list(head)[:-1])
        if not any(True for _ in before.parameters()):
            return head[-1], before
    raise ValueError(f"linear_probe solver=lbfgs solves a linear head on fixed features, but the probe head of {arch} "
                     "has trainable layers before its classifier (a feature-fusion projection such as 'sum@16'); use "
                     "the option solver=sgd (the head trained by steps) or fuse with 'concat'")


def parse_c(value: Any) -> float | str:
    """``C`` as given (``"auto"`` or a positive number, also as text such as ``"1e-3"``); anything else is an error
    naming the option and its valid values."""
    if value == "auto":
        return "auto"
    try:
        c = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        c = math.nan
    if not (c > 0 and math.isfinite(c)):
        raise ValueError(f"linear_probe option C: expected 'auto' (chosen by cross-validation) or a positive number "
                         f"(the inverse L2 strength), got {value!r}")
    return c


@register_strategy
class LinearProbe(Strategy):
    """Frozen extractor up to stage ``layer`` (default: the backbone's ``default_probe_layer``) + linear head
    (:meth:`Backbone.probe_head`: a feature-fusion backbone puts its fusion layer before it).

    Options: ``layer``; ``solver`` — ``lbfgs`` (default: the head is solved, see the module docstring; settings for
    stepped training such as ``--lr``/``--epochs``/``--batch-size`` are ignored and listed in the record) or ``sgd``
    (the head trained by the engine's epochs); ``C`` — ``auto`` (default: chosen by stratified cross-validation on
    the training labels) or a positive number (``lbfgs`` only). The validation split is not used to fit a solved
    head; its loss and accuracy are reported. The target model is the source truncated after ``layer`` with that
    head — a complete model that ``predict``, ``evaluate`` and ``export`` use like any other.
    """

    name = "linear_probe"
    aliases = ("feature",)
    paper = "Donahue et al., 2014 (DeCAF); Kornblith et al., 2019"
    kind = "feature transfer"
    default_lr = 1e-2
    default_batch_size = 256  # a step on cached features costs microseconds: fewer, larger steps
    option_defaults = {"layer": None, "solver": "lbfgs", "C": "auto"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        solver = self.options["solver"]
        if solver not in SOLVERS:
            raise ValueError(f"linear_probe option solver: unknown {solver!r}; valid choices: {', '.join(SOLVERS)}")
        self.options["C"] = parse_c(self.options["C"])
        if solver == "sgd" and self.options["C"] != "auto":
            raise ValueError("linear_probe option C applies to solver=lbfgs; the sgd head's L2 strength is "
                             "weight_decay=… (drop C, or use solver=lbfgs)")

    def plan(self, source: Backbone, num_classes: int, train: TensorBatches, val: TensorBatches | None,
             cfg: TrainConfig) -> TrainingPlan:
        given, cfg = cfg, self.resolve(cfg)
        # checked before the (slow) feature extraction; the engine checks again for any strategy
        refuse_pixel_options(cfg, "linear_probe trains a head on cached features, not images")
        solved = self.options["solver"] == "lbfgs"
        model = self.copy_source(source)
        stages = list(source.stages)
        layer = self.options["layer"] or source.default_probe_layer or (stages[-1] if stages else None)
        if truncation_stage(source, layer) is not None:
            model.truncate(layer)  # validates the name; external backbones refuse with a clear message
        model.reset_classifier(num_classes)
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        torch.manual_seed(cfg.seed)
        head = model.probe_head(num_classes)
        linear, before = solvable_head(head, source.arch) if solved else (None, None)  # before extracting
        start = time.perf_counter()
        f_train, hit_train = frozen_features(model, train, cfg.accelerator)
        f_val, hit_val = frozen_features(model, val, cfg.accelerator) if val is not None and len(val) else (None, True)
        extract_s = time.perf_counter() - start
        where = f"{source.arch} at layer {layer}"
        check_finite(f_train, f"the training features ({where}; data {train.key or 'given in memory'})")
        if f_val is not None:
            check_finite(f_val, f"the validation features ({where}; data {val.key or 'given in memory'})")

        def attach_head() -> Backbone:
            model.head = head
            return model.eval()

        solve = self._solver(linear, before, f_train, train.y, num_classes, given, f"the training features ({where})") \
            if solved else None
        return TrainingPlan(
            head, [{"params": list(head.parameters()), "lr": cfg.lr, "name": "head"}],
            TensorBatches(f_train, train.y), TensorBatches(f_val, val.y) if f_val is not None else None, cfg,
            self.name, {**self.options, "layer": layer}, finalize=attach_head, extra_time_s=extract_s,
            feature_cache="hit" if hit_train and hit_val else "miss", head=head, solve=solve,
        )

    def _solver(self, linear: nn.Linear, before: nn.Module | None, features: torch.Tensor, labels: torch.Tensor,
                num_classes: int, cfg: TrainConfig, name: str) -> Any:
        """The plan's ``solve``: L-BFGS logistic regression per task (one task, or each task's block of logit columns
        on the rows labelled for it), written into ``linear``."""
        balanced = cfg.class_weight == "balanced" or cfg.sampler == "balanced"  # the same correction in expectation
        notes = {"ignored": ignored_settings(cfg)}
        if cfg.sampler == "balanced":
            notes["balanced_by"] = "--sampler balanced, solved as balanced class weights"

        @torch.no_grad()
        def solve(slices: Sequence[slice] | None = None) -> dict[str, Any]:
            x = features if before is None else before(features)
            parts = [(slice(0, num_classes), torch.ones(len(x), dtype=torch.bool), labels)] if slices is None else \
                [(sl, labels[:, t] >= 0, labels[:, t]) for t, sl in enumerate(slices)]
            records = []
            for t, (sl, rows, y) in enumerate(parts):
                task = name if slices is None else f"{name}, task {t + 1}"
                sol = solve_probe(x[rows], y[rows], sl.stop - sl.start, self.options["C"], seed=cfg.seed,
                                  balanced=balanced, name=task)
                linear.weight[sl] = sol.weight.to(linear.weight)
                linear.bias[sl] = sol.bias.to(linear.bias)
                records.append(sol.record)
            return {**records[0], **notes} if slices is None else {"tasks": records, **notes}

        return solve
