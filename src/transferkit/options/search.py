"""The configurations of the jobs that choose: select (sources), fuse (how to combine models), auto (source and
strategy within a budget) and tune (hyper-parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from transferkit.config import Accelerator
from transferkit.options.base import JobConfig, _text_flag, parse_key_values, tyro
from transferkit.options.parts import (
    LabelledOptions,
    ReadOptions,
    TaskOptions,
)


@dataclass(frozen=True)
class SimilarityOptions:
    """``select``: the domain similarity of a source dataset to the target, in each candidate's feature space."""

    similarity_data: str | None = None
    """a source dataset: report its domain similarity to the target (mean-feature cosine, MMD², proxy A-distance)"""
    similarity_classes: str | None = None
    """classes of similarity_data (default: all)"""
    similarity_samples: int = 500
    """source images drawn for the similarity"""


@dataclass(frozen=True)
class VerifyOptions:
    """``select``: fine-tune the top candidates and correlate the scores with their test accuracy."""

    verify: int = 0
    """fine-tune the top K candidates and correlate scores with their test accuracy"""
    verify_all: bool = False
    """fine-tune every usable candidate (for analysis)"""
    epochs: int = 30
    """verification: maximum epochs"""
    patience: int | None = 10
    """verification: early-stopping patience"""
    batch_size: int | None = None
    """verification: batch size (default: the strategy's)"""
    lr: float | None = None
    """verification: learning rate (default: the strategy's)"""


@dataclass(frozen=True)
class SelectConfig(JobConfig):
    """rank candidate sources for a target task by transferability scores (LogME, H-score, LEEP, NCE), optionally
    verified by fine-tuning"""

    candidates: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="CANDIDATE...")] = ()
    """pretrained backbone names, run/bundle directories, timm:/torchvision:/fuse: sources, or random:<backbone>
    (random initialisation, a baseline); unloadable ones are skipped"""
    task: LabelledOptions = LabelledOptions()
    scores: Annotated[str | tuple[str, ...], _text_flag("scores", "logme,h_score,h_score_shrunk,leep,nce")] = \
        "logme,h_score,h_score_shrunk,leep,nce"
    """comma-separated scores, the first ranks (see 'transferkit list transferability-scores')"""
    similarity: SimilarityOptions = SimilarityOptions()
    verification: VerifyOptions = VerifyOptions()
    image_size: int | None = None
    """input size for named pretrained / random: backbones"""
    max_length: int | None = None
    """token limit for named text backbones (minilm, hf:…); longer texts are truncated"""
    seed: int = 0
    """seed of the scoring set's draw (as transfer's) and of the verification runs"""
    out: str = "runs/select"
    """directory to write"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("candidates", "data", "classes")


@dataclass(frozen=True)
class FuseConfig(JobConfig):
    """fuse trained models: averaging, fitted weights, stacking, gating, uniform/greedy soups"""

    members: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="MEMBER...")] = ()
    """run or bundle directories of the members (two or more)"""
    data: ReadOptions = ReadOptions()
    methods: Annotated[str | tuple[str, ...] | None, _text_flag("methods", None)] = None
    """fusion methods, comma-separated (default: all; see 'transferkit list fusion-methods')"""
    fit_per_class: int = 100
    """held-out training-split images per class the fusion is fitted on"""
    fit_on: str = "held_out"
    """held_out: fit on fit_per_class further held-out images; validation: on the members' shared validation split
    (no labels beyond their budget)"""
    gate_epochs: int = 200
    """training epochs of the gating network"""
    seed: int = 0
    """seed of the fit set's draw, the stacker and the gate"""
    out: str = "runs/fuse"
    """directory to write"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("members", "data", "classes")


@dataclass(frozen=True)
class SearchOptions:
    """``auto``: how many candidates survive each stage, and the successive halving of stage 3."""

    keep: int = 4
    """candidates kept after stage 1 (the transferability ranking)"""
    finalists: int = 2
    """candidates kept after the probes (stage 2)"""
    first_epochs: int | None = None
    """epochs of the first halving rung (default: enough for first_steps optimiser steps, at least 2)"""
    first_steps: int = 10
    """optimiser steps every configuration takes in the first halving rung"""
    eta: int = 3
    """halving factor: keep the best 1/eta per rung"""


@dataclass(frozen=True)
class AutoConfig(JobConfig):
    """choose the source and the strategy automatically within a time budget: rank sources by transferability, probe
    the best, then successive halving over fine-tuning variants and LoRA"""

    data: ReadOptions = ReadOptions()
    candidates: Annotated[str | tuple[str, ...] | None, _text_flag("candidates", None)] = None
    """comma-separated sources (backbone names, run/bundle directories, random:NAME); default: every installed
    pretrained backbone of the data's modality"""
    budget: str | float = "10m"
    """wall-clock budget: 90s, 10m, 1.5h (or seconds)"""
    labels_per_class: int | None = None
    """K labelled training examples per class in total: auto chooses on an inner split of them and refits the winner
    on all K (default: the whole training split)"""
    val_per_class: int | None = None
    """choose on a separate validation set of V other labelled examples per class instead (a budget of K + V)"""
    val_fraction: float = 0.1
    """validation share without a labelled budget"""
    image_size: int | None = None
    """input size of named pretrained backbones"""
    max_length: int | None = None
    """token limit for named text backbones (minilm, hf:…); longer texts are truncated"""
    search: SearchOptions = SearchOptions()
    seed: int = 0
    """seed of the label draw, the inner split and every run"""
    out: str = "runs/auto"
    """run directory to write"""
    overwrite: bool = False
    """replace an existing out"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("data",)



def _param_flags(param: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """``--param NAME=SPEC``, repeatable: kept as text, read by the job (a ``--config`` file may give a mapping)."""
    return tuple(param) or None


def _fixed_flags(fixed: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """``--fixed NAME=VALUE``, repeatable: kept as text, read by the job (values as YAML scalars)."""
    return tuple(fixed) or None


@dataclass(frozen=True)
class SearchSpaceOptions:
    """``tune``: what is searched, and what every trial keeps fixed."""

    param: Annotated[tuple[str, ...] | dict[str, Any] | None, tyro.conf.arg(constructor=_param_flags)] = None
    """a searched argument NAME=SPEC, repeatable: SPEC is loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or
    choice:A,B,C; NAME a training argument (lr, weight_decay, batch_size, freeze, augment, …) or option.KEY (default:
    lr, weight_decay, and freeze for finetune)"""
    space: Annotated[str | dict[str, Any] | None, _text_flag("space", None)] = None
    """search space file 'NAME: SPEC' (a list means choice); param adds to it and wins"""
    fixed: Annotated[tuple[str, ...] | dict[str, Any] | None, tyro.conf.arg(constructor=_fixed_flags)] = None
    """a fixed training argument NAME=VALUE for every trial, repeatable (e.g. schedule=cosine, batch_size=32)"""


@dataclass(frozen=True)
class StudyOptions:
    """``tune``: the Optuna study — how many trials, judged how, stored where, pruned when."""

    trials: int = 20
    """trials this run adds to the study"""
    timeout: float | None = None
    """stop starting trials after this many seconds"""
    metric: Literal["val_acc", "val_loss"] = "val_acc"
    """objective on the validation split: val_acc (maximised) or val_loss (minimised)"""
    storage: str | None = None
    """Optuna storage URL (default sqlite:///OUT/study.db); rerunning resumes the study"""
    study_name: str | None = None
    """study name in the storage (default: the name of out)"""
    pruning: bool = True
    """prune unpromising trials (the median pruner)"""
    pruner_startup_trials: int = 5
    """prune nothing until this many trials have finished"""
    pruner_warmup_epochs: int = 2
    """judge a trial only after this many epochs"""
    pruner: Annotated[Any, tyro.conf.Suppress] = None
    """Python only: an optuna pruner that replaces the median pruner ('none': no pruning)"""


@dataclass(frozen=True)
class TuneConfig(JobConfig):
    """hyper-parameter search (Optuna: TPE, median pruning) over a strategy's options, selected on the validation
    split; resumable, several workers may share a study"""

    source: str | None = None
    """run directory, bundle directory or pretrained backbone name"""
    image_size: int | None = None
    """input size for a pretrained backbone source"""
    weights: str | None = None
    """weights file for a timm:/torchvision: source"""
    task: TaskOptions = TaskOptions()
    strategy: str = "finetune"
    """scratch, linear_probe, finetune or lora (see 'transferkit list strategies')"""
    options: Annotated[dict[str, Any] | None, tyro.conf.arg(constructor=parse_key_values)] = None
    """fixed strategy options KEY=VALUE, repeatable (as for transfer)"""
    search: SearchSpaceOptions = SearchSpaceOptions()
    study: StudyOptions = StudyOptions()
    epochs: int = 30
    """maximum epochs per trial"""
    seed: int = 0
    """seed of the data split, the training and the sampler"""
    accelerator: Accelerator = "auto"
    """auto: a CUDA GPU when one is visible, else the CPU; or cpu, gpu (= cuda), mps"""
    out: str = "runs/tune"
    """search directory: study.db, trials/, best_config.yaml, report"""
    progress: bool = True
    """show the progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data", "classes")
    ALIASES: ClassVar[dict[str, str]] = {"n_trials": "trials"}  # the Python keyword before the configuration
