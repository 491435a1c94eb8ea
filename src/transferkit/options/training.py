"""The configurations of the jobs that train on a labelled target: transfer, pretrain, lr-find, compare,
curve and distill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from transferkit.config import FitOptions, OptimiserOptions, TrainOptions
from transferkit.options.base import JobConfig
from transferkit.options.parts import (
    DataOptions,
    GridOptions,
    LabelledOptions,
    RunOptions,
    SourceOptions,
    SplitOptions,
    StrategyOptions,
    TaskOptions,
)


@dataclass(frozen=True)
class TargetJobConfig(JobConfig):
    """What every job that takes a source to a target task shares: the source, the task and the strategy."""

    source: SourceOptions = SourceOptions()
    task: TaskOptions = TaskOptions()
    strategy: StrategyOptions = StrategyOptions()

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data", "classes")


@dataclass(frozen=True)
class TransferConfig(TargetJobConfig):
    """transfer a source model to a target task"""

    train: TrainOptions = TrainOptions()
    run: RunOptions = RunOptions()
    head_init: bool = True
    """start the head rows of classes the source also has from the source head"""
    cv: int | None = None
    """K-fold cross-validation on the labelled training set instead of one run (no test split, no bundle)"""


@dataclass(frozen=True)
class PretrainConfig(JobConfig):
    """train a source model on a source task"""

    data: DataOptions = DataOptions()
    backbone: str = "seed_cnn"
    """architecture (see 'transferkit list backbones')"""
    pretrained: bool = False
    """start from the backbone's shipped weights"""
    weights: str | None = None
    """weights file for a timm:/torchvision: backbone"""
    image_size: int | None = None
    """input size in pixels (default: the backbone's)"""
    val_fraction: float = 0.1
    """share of the training split held out for validation"""
    train: TrainOptions = TrainOptions(epochs=3, batch_size=128, schedule="constant", augment="none")
    run: RunOptions = RunOptions(out="runs/source")

    POSITIONAL: ClassVar[tuple[str, ...]] = ("data", "classes")


@dataclass(frozen=True)
class LrFindConfig(TargetJobConfig):
    """learning-rate range test for a strategy on a target task (plot + suggested --lr)"""

    optimiser: OptimiserOptions = OptimiserOptions()
    min_lr: float = 1e-6
    """the sweep's first learning rate"""
    max_lr: float = 1.0
    """the sweep's last learning rate"""
    steps: int = 100
    """training steps of the sweep (at least 10)"""
    out: str = "runs/lr_find"
    """directory to write: lr_find.png, lr_find.json, config.yaml"""


@dataclass(frozen=True)
class GridConfig(JobConfig):
    """What a grid job (``compare``, ``curve``) takes: one source, one target task, the grid, and the training options
    every cell shares (each cell's seed is the grid's)."""

    source: SourceOptions = SourceOptions()
    task: SplitOptions = SplitOptions()
    grid: GridOptions = GridOptions()
    train: TrainOptions = TrainOptions()
    head_init: bool = False
    """start the head rows of classes shared (by name) with the source from the source head, as transfer does"""
    out: str = "runs/grid"
    """directory to write; rerunning with the same one resumes the finished cells"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data", "classes")
    ALIASES: ClassVar[dict[str, str]] = {"strategy": "strategies"}  # a curve's config.yaml before 2026-12


@dataclass(frozen=True)
class CompareConfig(GridConfig):
    """compare strategies × labels per class × seeds (mean ± std)"""

    out: str = "runs/compare"
    """comparison directory; rerunning with the same one resumes the finished cells"""


@dataclass(frozen=True)
class CurveConfig(GridConfig):
    """label-efficiency curves: accuracy vs labels per class per strategy (resumable)"""

    grid: GridOptions = GridOptions(labels_per_class=(1, 5, 10, 50, 100, None))
    out: str = "runs/curve"
    """curve directory; rerunning with the same one resumes the finished cells"""


@dataclass(frozen=True)
class DistillConfig(JobConfig):
    """knowledge distillation: teacher bundle → small student, compared with a labels-only student"""

    teacher: str | None = None
    """run directory or bundle directory of the teacher"""
    student: str = "seed_cnn"
    """student backbone name (see 'transferkit list backbones')"""
    pretrained: bool = False
    """start the student from its shipped weights"""
    image_size: int | None = None
    """student input size (default: the backbone's)"""
    task: LabelledOptions = LabelledOptions()
    unlabelled: int = 0
    """further training images with hidden labels, labelled softly by the teacher"""
    temperature: float = 4.0
    """softmax temperature T of the KD loss"""
    alpha: float = 0.9
    """weight of the KD loss against the label loss"""
    hint_layer: str | None = None
    """student module for FitNets hints (e.g. stages.conv2.0); needs teacher_layer"""
    teacher_layer: str | None = None
    """teacher module the hint is matched to"""
    hint_weight: float = 1.0
    """weight of the hint loss"""
    baseline: bool = True
    """also train the labels-only student (the comparison)"""
    latency: bool = True
    """measure each model's CPU latency"""
    train: FitOptions = FitOptions(epochs=20, batch_size=128, lr=1e-3, patience=5)
    run: RunOptions = RunOptions(out="runs/distill")

    POSITIONAL: ClassVar[tuple[str, ...]] = ("teacher", "student", "data", "classes")
