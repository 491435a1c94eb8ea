"""The configurations of few-shot and zero-shot transfer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from transferkit.options.base import JobConfig, _text_flag, tyro
from transferkit.options.parts import (
    DataOptions,
    SourceOptions,
)


@dataclass(frozen=True)
class SetFitOptions:
    """``fewshot --method setfit``: contrastive pairs, then a logistic-regression head (fixed in advance, as in the
    paper: nothing is selected on the evaluation data)."""

    iterations: int = 20
    """setfit: pair-generation iterations (each example gets one positive and one negative pair per iteration)"""
    max_pairs: int | None = None
    """setfit: at most this many pairs"""
    epochs: int = 1
    """setfit: passes over the pairs"""
    batch_size: int = 16
    """setfit: pairs per step"""
    lr: float = 2e-5
    """setfit: encoder learning rate (AdamW, linear warm-up and decay)"""
    head_c: float = 1.0
    """setfit: inverse L2 strength of the logistic-regression head"""


@dataclass(frozen=True)
class EpisodeOptions:
    """``fewshot --method episodes``: N-way K-shot episodic evaluation of frozen features (K = labels_per_class)."""

    n_way: int = 5
    """episodes: classes per episode"""
    n_query: int = 15
    """episodes: query examples per class"""
    episodes: int = 600
    """episodes: how many (the usual protocol uses at least 100)"""
    episode_classifier: str = "prototypes"
    """episodes: classifier fitted on each support set, prototypes or logistic"""


@dataclass(frozen=True)
class FewshotConfig(JobConfig):
    """few-shot transfer from K examples per class: SetFit-style contrastive fine-tuning, class prototypes, or N-way
    K-shot episodic evaluation"""

    source: SourceOptions = SourceOptions(source="minilm")
    data: DataOptions = DataOptions(data="ag_news")
    method: str = "setfit"
    """setfit (contrastive pairs + logistic head), prototypes (nearest class mean) or episodes (episodic evaluation)"""
    labels_per_class: int = 8
    """K: labelled examples per class in total, all of them fit the model"""
    evaluate_on: str = "auto"
    """test (the test split), rest (the training examples not among the K per class) or auto (test if there is one)"""
    seed: int = 0
    """seed of the K examples' draw, the pairs and the episodes"""
    setfit: SetFitOptions = SetFitOptions()
    episode: EpisodeOptions = EpisodeOptions()
    out: str = "runs/fewshot"
    """run directory to write"""
    overwrite: bool = False
    """replace a run directory another run holds"""
    progress: bool = True
    """show the progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data")


def _templates_flags(template: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """``--template TEXT``, repeatable: the prompts (none given: the default template)."""
    return tuple(template) or None


@dataclass(frozen=True)
class ZeroshotConfig(JobConfig):
    """zero-shot text classification by similarity to label names or descriptions (no labels)"""

    source: str = "minilm"
    """a text backbone, or a text run/bundle"""
    max_length: int | None = None
    """token limit for a text backbone source"""
    data: str | None = None
    """labelled text data to score (optional; see 'transferkit list datasets')"""
    classes: str | None = None
    """class indices of data to keep (default: all)"""
    split: str = "test"
    """split of data to score (the train split when it has none)"""
    labels: Annotated[str | tuple[str, ...] | None, _text_flag("labels", None)] = None
    """label names, comma-separated (default: the data's class names)"""
    templates: Annotated[str | tuple[str, ...] | None, tyro.conf.arg(constructor=_templates_flags)] = None
    """prompts with {label}, --template TEXT repeatable (averaged) (default: 'This text is about {label}.')"""
    descriptions: Annotated[str | dict[str, str] | None, _text_flag("descriptions", None)] = None
    """YAML/JSON file 'label: description' that replaces the templates for those labels"""
    strict: bool = False
    """fail on rows with an empty text or label"""
    out: str = "runs/zeroshot"
    """run directory to write"""
    overwrite: bool = False
    """replace a run directory another run holds"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data")
