"""The parts several jobs' configurations share: the data and the labelled task, the source, the strategy, the
run directory, a grid's variants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from transferkit.options.base import (
    _specs_flags,
    _text_flag,
    parse_key_values,
    tyro,
)


@dataclass(frozen=True)
class ReadOptions:
    """The data a job reads."""

    data: str = "fashion_mnist"
    """dataset name or name:PATH (see 'transferkit list datasets')"""
    classes: str | None = None
    """class indices to keep, e.g. 0,1,5 or 0-4 (default: all)"""
    strict: bool = False
    """fail on unreadable image files instead of skipping them"""
    workers: int | None = None
    """processes that read, resize and augment a streamed image folder (default: $TRANSFERKIT_WORKERS, else min(4,
    CPUs); 0 = in the job's own process)"""


@dataclass(frozen=True)
class DataOptions(ReadOptions):
    """The data a job reads, in the model's channels."""

    convert_channels: bool = False
    """allow converting colour images to greyscale"""


@dataclass(frozen=True)
class SplitOptions(DataOptions):
    """The data a job learns from, and how its validation part is drawn."""

    val_per_class: int | None = None
    """a separate validation set of V other labelled examples per class: a budget of K + V (default: none)"""
    val_fraction: float = 0.1
    """validation share when all labels are used"""


@dataclass(frozen=True)
class LabelledOptions(SplitOptions):
    """The data a job learns from and its labelled budget."""

    labels_per_class: int | None = None
    """K labelled examples per class in total: all train the final model; selection comes out of them (default: all)"""


@dataclass(frozen=True)
class TaskOptions(LabelledOptions):
    """The target task: its data, the labelled budget and the names of its classes."""

    class_map: str | None = None
    """YAML/JSON 'target class: new name' file that renames or merges target classes"""


@dataclass(frozen=True)
class SourceOptions:
    """Where the transferred model comes from."""

    source: str | None = None
    """run or bundle directory, or pretrained backbone name; fuse:[MODE[@WIDTH]:]A+B fuses several's features"""
    image_size: int | None = None
    """input size for a pretrained backbone source (e.g. 96 to save CPU time)"""
    weights: str | None = None
    """weights file for a timm:/torchvision: source"""
    max_length: int | None = None
    """token limit for a text backbone source (minilm, hf:…); longer texts are truncated"""


@dataclass(frozen=True)
class StrategyOptions:
    """How the source is transferred."""

    strategy: str = "finetune"
    """scratch, linear_probe, finetune or lora (see 'transferkit list strategies')"""
    freeze: int | None = None
    """finetune: freeze the first N parameter groups"""
    probe_layer: str | None = None
    """linear_probe: stage whose output is the feature"""
    options: Annotated[dict[str, Any] | None, tyro.conf.arg(constructor=parse_key_values)] = None
    """other strategy options KEY=VALUE, e.g. regularizer=l2sp or bn=frozen ('transferkit strategies')"""


@dataclass(frozen=True)
class RunOptions:
    """Where the run is written, and what happens to one already there."""

    out: str = "runs/transfer"
    """run directory to write"""
    resume: Annotated[bool, tyro.conf.Suppress] = False
    """continue the interrupted run at out (command line: --resume RUN_DIR, or 'transferkit resume RUN_DIR')"""
    overwrite: bool = False
    """discard an interrupted run in out instead of refusing, or run beside another run that holds out"""


@dataclass(frozen=True)
class GridOptions:
    """A grid of cells: strategy variants × labelled budgets × seeds, each cell trained and scored once."""

    strategies: Annotated[str | tuple[str | dict[str, Any], ...], tyro.conf.arg(constructor=_specs_flags)] = (
        "scratch", "linear_probe", "finetune")
    """strategy variants [LABEL=]STRATEGY[:KEY=VALUE...], repeatable or comma-separated (default: scratch,
    linear_probe, finetune)"""
    labels_per_class: Annotated[str | int | tuple[int | str | None, ...], _text_flag("labels_per_class")] = (
        5, 10, 50)
    """budgets K, e.g. 1,5,10,all: K labelled examples per class in total, all train each cell's final model
    (default: compare 5,10,50; curve 1,5,10,50,100,all)"""
    seeds: Annotated[str | int | tuple[int, ...], _text_flag("seeds")] = (0, 1, 2)
    """N (seeds 0..N-1) or a list such as 0,3,7 (default: 3)"""
    test_per_class: int | None = None
    """score on a fixed stratified test subset of this many images per class (default: the whole test split)"""
    title: str = ""
    """title of the plot and report"""
    restart: bool = False
    """delete the finished cells in out and start over (default: rerunning the same command resumes them)"""
