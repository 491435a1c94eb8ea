"""The configuration of unsupervised domain adaptation (one method, or a comparison of methods × seeds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from transferkit.config import Accelerator, OptimiserOptions
from transferkit.options.base import JobConfig, _text_flag, parse_key_values, tyro
from transferkit.options.parts import (
    RunOptions,
)


@dataclass(frozen=True)
class NetworkOptions:
    """``adapt``: the network that is adapted."""

    backbone: str = "seed_cnn"
    """backbone name or bundle/run directory"""
    pretrained: bool = False
    """start from the backbone's shipped weights"""
    frozen: bool = False
    """adapt only the head on frozen (cached) features of a pretrained backbone"""
    bottleneck: int = 256
    """width of the bottleneck the methods align (0: none)"""
    image_size: int | None = None
    """input size of the backbone"""
    resize: bool = False
    """allow source and target images of different sizes (both are resized to the model's input size)"""


@dataclass(frozen=True)
class DomainOptions:
    """``adapt``: the images of each domain a run uses; the target's labels never train or select anything."""

    classes: str | None = None
    """class indices to keep in both domains, e.g. 0-4"""
    source_per_class: int | None = None
    """cap on source training images per class"""
    target_limit: int | None = None
    """cap on unlabelled target training images"""
    target_val: int = 1000
    """target images held out (unlabelled) for label-free selection"""
    test_limit: int | None = None
    """score on a fixed random subset of the target test split (the same for every seed and method)"""
    val_fraction: float = 0.1
    """source validation share"""
    strict: bool = False
    """fail on unreadable image files instead of skipping them"""


@dataclass(frozen=True)
class AdaptTrainOptions(OptimiserOptions):
    """``adapt``: how the network is trained (epochs, optimiser, devices)."""

    batch_size: int = 64
    """batch size (source and target batches alike)"""
    epochs: int = 10
    """training epochs"""
    lr: float | None = None
    """learning rate (default 1e-3)"""
    backbone_lr_mult: float | None = None
    """backbone rate = lr × this (default 0.1 for pretrained weights, 1 from scratch)"""
    accelerator: Accelerator = "auto"
    """auto: a CUDA GPU when one is visible, else the CPU; or cpu, gpu (= cuda), mps"""
    devices: int | str = 1
    """passed to Lightning (domain adaptation runs in one process)"""
    progress: bool = True
    """show the progress bar"""
    checkpoint_every: int | None = 200
    """write a resume checkpoint every this many optimiser steps, besides every epoch end"""


@dataclass(frozen=True)
class AdaptCompareOptions:
    """``adapt`` with several methods (comma-separated) or with seeds: a comparison of methods × seeds."""

    seeds: Annotated[str | int | tuple[int, ...] | None, _text_flag("seeds", None)] = None
    """comparison: N (seeds 0..N-1) or a list such as 0,3,7 (default: the seed only)"""
    title: str = ""
    """comparison: title of the table and chart"""
    restart: bool = False
    """comparison: discard the finished cells in out"""


@dataclass(frozen=True)
class AdaptConfig(JobConfig):
    """unsupervised domain adaptation: labelled source → unlabelled target (one method, or a comparison of methods ×
    seeds)"""

    source: str = "fashion_mnist"
    """labelled source dataset"""
    target: str = "fashion_mnist_m"
    """target dataset; its labels are not used"""
    method: str = "dann"
    """method, '+' combines (dann+self_training); comma-separated: a comparison (see adapt --list-methods)"""
    options: Annotated[dict[str, Any] | None, tyro.conf.arg(constructor=parse_key_values)] = None
    """method options KEY=VALUE, repeatable (trade_off=0.5, threshold=0.95, dann.hidden=512)"""
    network: NetworkOptions = NetworkOptions()
    domains: DomainOptions = DomainOptions()
    selection: Literal["source_val", "target_entropy", "dev"] = "source_val"
    """label-free checkpoint selection"""
    oracle_selection: bool = False
    """select on target-validation LABELS instead (analysis only; reports say so)"""
    train: AdaptTrainOptions = AdaptTrainOptions()
    diagnostics: bool = True
    """proxy A-distance / MMD before and after"""
    plots: bool = True
    """the t-SNE and learning-curve plots"""
    comparison: AdaptCompareOptions = AdaptCompareOptions()
    run: RunOptions = RunOptions(out="runs/adapt")

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "target", "method")

    @property
    def is_comparison(self) -> bool:
        """Methods given comma-separated, or seeds given: a comparison of methods × seeds
        (:func:`transferkit.api.adapt_compare`), not one run (:func:`transferkit.api.adapt`)."""
        return "," in self.method or self.comparison.seeds is not None
