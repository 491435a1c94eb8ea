"""The jobs' options, declared once: frozen dataclasses composed per job, from which everything else is made.

A job's configuration is a tree of small parts — the task (data, classes, the labelled budget, a class map), the
source (weights, image size, token limit), the strategy, the training options
(:class:`~transferkit.config.TrainOptions`) and the run (output directory, resume, overwrite) — each field
declared here once, with its type (choices as ``Literal`` types), default and a docstring that is its help text.
From the same fields come:

* the Python API: ``tk.transfer(source, **options)`` builds a :class:`TransferConfig` at the top
  (:meth:`JobConfig.build`: flat keyword names, each part's defaults, unknown names refused with the valid ones);
* the command line: ``transferkit transfer`` is generated from :class:`TransferConfig` by tyro (flat flags —
  ``--labels-per-class`` for ``task.labels_per_class`` —, help from the docstrings, choices from the types);
* ``--config FILE.yaml``: the file's keys are the same flat names (:meth:`JobConfig.from_mapping`);
* the run's ``config.yaml``: :meth:`JobConfig.flat`, which ``transferkit resume`` hands back to the job.

Values are checked where they are used (a :class:`~transferkit.errors.ConfigError` naming the field); the command
line alone rewrites a field as its ``--flag``.
"""

from __future__ import annotations

from collections.abc import Sequence

from transferkit.config import FitOptions, OptimiserOptions
from transferkit.options.adapt import AdaptCompareOptions, AdaptConfig, AdaptTrainOptions, DomainOptions, NetworkOptions
from transferkit.options.base import (
    JobConfig,
    parse_key_values,
    parse_labels_per_class,
    parse_names,
    parse_seeds,
    parse_specs,
)
from transferkit.options.parts import (
    DataOptions,
    GridOptions,
    LabelledOptions,
    ReadOptions,
    RunOptions,
    SourceOptions,
    SplitOptions,
    StrategyOptions,
    TaskOptions,
)
from transferkit.options.search import (
    AutoConfig,
    FuseConfig,
    SearchOptions,
    SearchSpaceOptions,
    SelectConfig,
    SimilarityOptions,
    StudyOptions,
    TuneConfig,
    VerifyOptions,
)
from transferkit.options.text import EpisodeOptions, FewshotConfig, SetFitOptions, ZeroshotConfig
from transferkit.options.training import (
    CompareConfig,
    CurveConfig,
    DistillConfig,
    GridConfig,
    LrFindConfig,
    PretrainConfig,
    TargetJobConfig,
    TransferConfig,
)
from transferkit.options.use import (
    BackbonesConfig,
    CacheConfig,
    DatasetsConfig,
    DemoConfig,
    EvaluateConfig,
    ExportConfig,
    ListConfig,
    MergeConfig,
    MultitaskConfig,
    PredictConfig,
    ResumeConfig,
    ServeConfig,
    StrategiesConfig,
)

# every command's configuration: its flags, --config keys and help are generated from it (cli/config.py)
CONFIGS: dict[str, type[JobConfig]] = {"transfer": TransferConfig, "pretrain": PretrainConfig,
                                       "lr-find": LrFindConfig, "compare": CompareConfig, "curve": CurveConfig,
                                       "distill": DistillConfig, "fewshot": FewshotConfig,
                                       "zeroshot": ZeroshotConfig, "select": SelectConfig,
                                       "fuse": FuseConfig, "auto": AutoConfig,
                                       "adapt": AdaptConfig, "tune": TuneConfig,
                                       "evaluate": EvaluateConfig, "merge": MergeConfig, "export": ExportConfig,
                                       "predict": PredictConfig, "serve": ServeConfig, "resume": ResumeConfig,
                                       "multitask": MultitaskConfig, "demo": DemoConfig, "list": ListConfig,
                                       "datasets": DatasetsConfig, "backbones": BackbonesConfig,
                                       "strategies": StrategiesConfig, "cache": CacheConfig}


def _check_unique(configs: Sequence[type[JobConfig]]) -> None:
    for cls in configs:
        names = cls.names()
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:  # a flat name must mean one field, or keywords, YAML keys and flags would be ambiguous
            raise TypeError(f"{cls.__name__}: flat names used twice: {dup}")


_check_unique(list(CONFIGS.values()))
__all__ = ["AdaptCompareOptions", "AdaptConfig", "AdaptTrainOptions", "AutoConfig", "CONFIGS", "CompareConfig",
           "CurveConfig", "DataOptions", "DistillConfig", "DomainOptions", "EpisodeOptions", "EvaluateConfig",
           "ExportConfig", "FewshotConfig", "FitOptions", "FuseConfig", "GridConfig", "GridOptions", "JobConfig",
           "LabelledOptions", "LrFindConfig", "MergeConfig",
           "CacheConfig", "NetworkOptions", "OptimiserOptions", "PretrainConfig",
           "ReadOptions", "RunOptions", "SearchOptions", "SearchSpaceOptions", "SelectConfig", "SetFitOptions",
           "SimilarityOptions", "SourceOptions", "SplitOptions", "StrategyOptions", "StudyOptions", "TargetJobConfig",
           "TaskOptions", "TransferConfig", "TuneConfig", "VerifyOptions", "ZeroshotConfig", "parse_key_values",
           "parse_labels_per_class", "parse_names", "parse_seeds", "parse_specs", "PredictConfig", "ServeConfig",
           "ResumeConfig", "MultitaskConfig", "DemoConfig", "ListConfig", "DatasetsConfig", "BackbonesConfig",
           "StrategiesConfig"]
