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

import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_type_hints

from transferkit.config import FitOptions, OptimiserOptions, TrainOptions
from transferkit.errors import ConfigError
from transferkit.lazy import lazy_module

tyro = lazy_module("tyro")  # flags are made only when a command line is parsed

C = TypeVar("C", bound="JobConfig")


def parse_key_values(option: tuple[str, ...] = ()) -> dict[str, Any]:
    """``("bn=frozen", "reg_alpha=0.01")`` → ``{"bn": "frozen", "reg_alpha": 0.01}`` (values read as YAML scalars):
    the command line's repeatable ``--option KEY=VALUE``."""
    import yaml

    out: dict[str, Any] = {}
    for item in option:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError("option", "KEY=VALUE, e.g. regularizer=l2sp", item)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def parse_labels_per_class(value: int | str | None | Iterable[int | str | None]) -> list[int | None]:
    """``"1,5,10,all"`` / ``[1, 5, None]`` / ``5`` → ``[1, 5, 10, None]``: a grid's budgets, sorted, ``None`` ("all")
    last. ``None``, ``"all"`` and ``"none"`` mean every labelled training image (minus validation)."""
    items: Iterable[Any] = str(value).split(",") if isinstance(value, str) else \
        [value] if value is None or isinstance(value, int) else value
    out: list[int | None] = []
    for item in items:
        text = "all" if item is None else str(item).strip().lower()
        if not text:
            continue
        if text in ("all", "none", "null"):
            k: int | None = None
        else:
            try:
                k = int(text)
            except ValueError:
                raise ConfigError("labels_per_class", "budgets such as 1,5,10,50,all", item,
                                  f"'{item}' is neither a number nor 'all'") from None
            if k < 1:
                raise ConfigError("labels_per_class", "budgets of at least 1 (or 'all')", k)
        if k in out:
            raise ConfigError("labels_per_class", "each budget once", k or "all", "given twice")
        out.append(k)
    if not out:
        raise ConfigError("labels_per_class", "at least one budget, e.g. 1,5,10,all", value)
    return sorted(out, key=lambda k: (k is None, k or 0))


def parse_seeds(value: int | str | Iterable[int | str]) -> list[int]:
    """A grid's seeds: a count ``3`` / ``"3"`` (seeds 0, 1, 2), a list ``"0,3,7"``, or any iterable of whole numbers;
    at least one, no duplicates."""
    try:
        if isinstance(value, str) and "," not in value or isinstance(value, int) and not isinstance(value, bool):
            out = list(range(int(value)))
        else:
            out = [int(s) for s in (value.split(",") if isinstance(value, str) else value) if str(s).strip()]
    except (TypeError, ValueError):
        raise ConfigError("seeds", "a count N (seeds 0..N-1) or a list of whole numbers such as 0,3,7", value) from None
    if not out or len(set(out)) != len(out):
        raise ConfigError("seeds", "at least one seed and no duplicates", value)
    return out


def parse_specs(value: str | Iterable[str | Mapping[str, Any]]) -> list[str | dict[str, Any]]:
    """A grid's strategy variants: ``"scratch,finetune"`` or a list of specs (each may hold several, comma-separated)
    or mappings (:func:`transferkit.api.variants.parse_variant`)."""
    items = [value] if isinstance(value, str) else list(value)
    return [dict(item) if isinstance(item, Mapping) else part.strip() for item in items
            for part in ([item] if isinstance(item, Mapping) else str(item).split(",")) if part]


def _specs_flags(strategies: tuple[str, ...] = (), strategy: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The command line's ``--strategies a,b`` and/or ``--strategy SPEC`` (both repeatable)."""
    return tuple(str(s) for s in parse_specs([*strategies, *strategy]))


def parse_names(value: str | Iterable[Any] | None) -> list[str]:
    """``"a, b,c"`` or ``["a", "b"]`` → ``["a", "b", "c"]``: a list of names as the command line gives it (one
    comma-separated text) or as Python and ``--config`` files give it (a list); blanks dropped, order kept."""
    items = str(value).split(",") if isinstance(value, str) else [] if value is None else value
    return [text for text in (str(item).strip() for item in items) if text]


def _text_flag(flag: str, default: str | None | object = inspect.Parameter.empty) -> Any:
    """The tyro marker of a field the command line gives as one text value (``--methods a,b``, ``--seeds 3``,
    ``--space FILE``) while Python and ``--config`` files may give a list or a mapping: a constructor that keeps the
    text as given, for the job to read. tyro names a constructor-made flag after the constructor's parameter, so the
    function is made here with the flag's name as its one parameter (one factory instead of one identity function
    per flag)."""

    def keep(*args: Any, **kwargs: Any) -> Any:
        return (*args, *kwargs.values())[0]

    annotation = str if default is inspect.Parameter.empty or default is not None else str | None
    keep.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(flag, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)],
        return_annotation=annotation)
    keep.__annotations__ = {flag: annotation, "return": annotation}
    keep.__name__ = keep.__qualname__ = f"_{flag}_text"
    return tyro.conf.arg(constructor=keep)


@dataclass(frozen=True)
class ReadOptions:
    """The data a job reads."""

    data: str = "fashion_mnist"
    """dataset name or name:PATH (see 'transferkit list datasets')"""
    classes: str | None = None
    """class indices to keep, e.g. 0,1,5 or 0-4 (default: all)"""
    strict: bool = False
    """fail on unreadable image files instead of skipping them"""


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


class JobConfig:
    """What every job's configuration shares: building from flat keyword names, and flattening back.

    A configuration is a frozen dataclass whose fields are either values or parts (dataclasses whose fields are
    values); every value has one flat name across the tree (``labels_per_class``, ``lr``), which is what Python
    keyword arguments, YAML keys and ``config.yaml`` use. ``POSITIONAL`` names the fields a job also takes by
    position (``transfer(source, data, classes)``).
    """

    POSITIONAL: ClassVar[tuple[str, ...]] = ()
    ALIASES: ClassVar[dict[str, str]] = {}  # older names of fields, read from files (a saved run's config.yaml)
    SPEC_FILE: ClassVar[bool] = False  # its field ``config`` is the job's own spec file (not --config FILE.yaml)

    @classmethod
    def names(cls) -> list[str]:
        """Every flat name, in declaration order."""
        out = []
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            if part is None:
                out.append(f.name)
            else:
                out.extend(g.name for g in fields(part))
        return out

    @classmethod
    def build(cls: type[C], *args: Any, **options: Any) -> C:
        """The configuration from positional values (``POSITIONAL``) and flat keyword names; an unknown name is a
        ``ValueError`` listing the valid ones, a value given twice a ``TypeError``."""
        if len(args) > len(cls.POSITIONAL):
            raise TypeError(f"{cls.__name__}: at most {len(cls.POSITIONAL)} positional values "
                            f"({', '.join(cls.POSITIONAL)}), got {len(args)}")
        for name, value in zip(cls.POSITIONAL, args, strict=False):
            if name in options:
                raise TypeError(f"{cls.__name__}: {name} given twice (by position and by name)")
            options[name] = value
        return cls.from_mapping(options)

    @classmethod
    def given(cls: type[C], config: C | None, args: tuple[Any, ...], options: dict[str, Any]) -> C:
        """A job's configuration: ``config`` as given, or built (:meth:`build`) from its positional values and flat
        keyword names — not both."""
        if config is None:
            return cls.build(*args, **options)
        if args or options:
            got = ", ".join(options) or "positional values"
            raise TypeError(f"give either config= or options, not both (got {got})")
        return config

    def record(self, command: str) -> dict[str, Any]:
        """What a run's ``config.yaml`` records: the command and every flat value (paths as text)."""
        return {"command": command, **{k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                                       for k, v in self.flat().items()}}

    @classmethod
    def from_mapping(cls: type[C], values: Mapping[str, Any], default: C | None = None, where: str = "") -> C:
        """The configuration with ``values`` (flat names; ``-`` read as ``_``) over ``default`` (else the declared
        defaults). Unknown names are a ``ValueError`` listing the valid ones (``where`` prefixes it: the file)."""
        tuples = cls._tuple_names()
        values = {cls.ALIASES.get(k, k): tuple(v) if isinstance(v, list) and cls.ALIASES.get(k, k) in tuples else v
                  for k, v in ((str(k).replace("-", "_"), v) for k, v in values.items())}
        valid = cls.names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"{where or cls.__name__ + ': '}unknown option(s) {unknown}; valid: "
                             f"{', '.join(sorted(valid))}")
        base = default if default is not None else cls()  # type: ignore[call-arg]
        top: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            if part is None:
                if f.name in values:
                    top[f.name] = values[f.name]
                continue
            mine = {g.name: values[g.name] for g in fields(part) if g.name in values}
            if mine:
                top[f.name] = dataclasses.replace(getattr(base, f.name), **mine)
        return dataclasses.replace(base, **top)  # type: ignore[type-var]

    @classmethod
    def check_types(cls, values: Mapping[str, Any]) -> None:
        """Refuse a value whose type its field does not take (a YAML file's ``labels_per_class: ten``): a
        :class:`~transferkit.errors.ConfigError` naming the field and the type. The Python API does not call this:
        it also takes paths, mappings and model objects where the command line takes text."""
        import typeguard

        hints = cls._hints()
        for name, value in values.items():
            name = cls.ALIASES.get(str(name).replace("-", "_"), str(name).replace("-", "_"))
            value = tuple(value) if isinstance(value, list) else value  # YAML has lists where fields take tuples
            hint = hints.get(name)
            if hint is None:
                continue
            try:
                typeguard.check_type(value, hint)
            except typeguard.TypeCheckError:
                shown = (hint.__name__ if isinstance(hint, type) else str(hint)).replace("typing.", "").replace(
                    "NoneType", "None")
                raise ConfigError(name, f"a value of type {shown}", value) from None

    @classmethod
    def _tuple_names(cls) -> set[str]:
        """The flat names whose type takes a tuple (YAML and JSON give lists there). Read from the annotations' text
        (``from __future__ import annotations``), so building a configuration never evaluates the command-line
        markers in them (nor imports tyro)."""
        out: set[str] = set()
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            for g in fields(part) if part is not None else [f]:
                if "tuple[" in str(g.type):
                    out.add(g.name)
        return out

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        """Every flat name's type (``Annotated`` unwrapped)."""
        hints: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            part = _part_type(cls, f)
            hints.update(get_type_hints(part) if part is not None else {f.name: get_type_hints(cls)[f.name]})
        return hints

    def flat(self) -> dict[str, Any]:
        """Every value under its flat name (what ``config.yaml`` records and :meth:`from_mapping` reads back)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if is_dataclass(value) and not isinstance(value, type):
                out.update({g.name: getattr(value, g.name) for g in fields(value)})
            else:
                out[f.name] = value
        return out


def _part_type(cls: type, f: dataclasses.Field) -> type | None:
    """The dataclass a field holds when it is a part (read from its default), else ``None``."""
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
    return type(default) if is_dataclass(default) and not isinstance(default, type) else None


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
    accelerator: str = "cpu"
    """passed to Lightning: cpu, gpu, auto, …"""
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
    accelerator: str = "cpu"
    """passed to Lightning: cpu, gpu, auto, …"""
    out: str = "runs/tune"
    """search directory: study.db, trials/, best_config.yaml, report"""
    progress: bool = True
    """show the progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "data", "classes")
    ALIASES: ClassVar[dict[str, str]] = {"n_trials": "trials"}  # the Python keyword before the configuration


@dataclass(frozen=True)
class EvaluateConfig(JobConfig):
    """evaluate a trained model on a dataset split"""

    model: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = None
    """run directory or bundle directory"""
    data: str | None = None
    """dataset name or name:PATH (see 'transferkit list datasets')"""
    classes: str | None = None
    """class indices to keep, e.g. 0,1,5 or 0-4 (default: all)"""
    split: str | None = None
    """split to evaluate (default: test, or all of the data when it has no test split, e.g. a folder of classes)"""
    out: str | None = None
    """also write config.yaml, metrics.json and confusion_matrix.png here"""
    strict: bool = False
    """fail on unreadable image files instead of skipping them"""
    convert_channels: bool = False
    """allow converting colour images to greyscale"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("model", "data", "classes", "split")


@dataclass(frozen=True)
class MergeConfig(JobConfig):
    """fold a LoRA bundle's adapters into the source weights: a plain, self-contained bundle"""

    model: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = None
    """LoRA run directory or bundle directory"""
    out: str | None = None
    """bundle directory to write"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("model", "out")
    ALIASES: ClassVar[dict[str, str]] = {"bundle": "model"}  # the Python keyword before the configuration


@dataclass(frozen=True)
class ExportConfig(JobConfig):
    """export a bundle to ONNX or TorchScript (classes and preprocessing in the metadata), verified against PyTorch"""

    model: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = None
    """run directory or bundle directory (LoRA bundles are merged first)"""
    format: str = "onnx"
    """onnx (model.onnx, ONNX Runtime) or torchscript (model.pt, torch.jit)"""
    out: str | None = None
    """file (or folder) to write (default: RUN_DIR/export/model.onnx|model.pt, or NAME.export/ beside a bundle NAME)"""
    opset: int = 17
    """ONNX opset version"""
    overwrite: bool = False
    """replace an existing out file that is not an earlier export (never inside the bundle)"""
    verify_inputs: Annotated[Any, tyro.conf.Suppress] = None
    """Python only: the inputs the export is verified on (preprocessed images (N, C, H, W) or token ids (N, L))"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("model", "format", "out", "opset")
    ALIASES: ClassVar[dict[str, str]] = {"bundle": "model"}  # the Python keyword before the configuration



@dataclass(frozen=True)
class PredictConfig(JobConfig):
    """predict the class of image files, folders (recursively) and CSV lists of images"""

    model: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = None
    """run directory, bundle directory or pretrained backbone name (backend onnx: a model.onnx or a folder holding
    one)"""
    inputs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="INPUT...")] = ()
    """image files, folders, or .csv files listing image paths (column 'path', else the first column)"""
    output: str | None = None
    """write every prediction here as it is made, .csv or .jsonl; '-' writes them to standard output (progress and
    messages go to standard error) (default: print a table of the first rows)"""
    format: Literal["csv", "jsonl"] | None = None
    """output format (default: from the output extension; csv for -)"""
    overwrite: bool = False
    """replace an existing output file that is not an earlier predictions file (never one of the inputs)"""
    top_k: int = 1
    """also list the k most probable classes (a 'top k' column in the table; top{i}_class/_index/_probability columns in
    the output file)"""
    text_column: str = "text"
    """text models: the column of .csv/.tsv/.jsonl inputs holding the text; a+b joins two; .txt inputs hold one text per
    line"""
    batch_size: int = 64
    """images decoded and predicted at a time"""
    backend: Literal["torch", "onnx"] = "torch"
    """run the model with PyTorch or an exported ONNX model with ONNX Runtime"""
    strict: bool = False
    """stop at the first unreadable image instead of reporting it in the error column"""
    convert_channels: bool = False
    """allow converting colour images to greyscale"""
    progress: bool = True
    """show the progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("model", "inputs")


@dataclass(frozen=True)
class ServeConfig(JobConfig):
    """serve a model (images or texts, single- or multi-task) over HTTP (FastAPI + uvicorn): POST /predict, GET /health,
    GET /model"""

    model: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = None
    """run or bundle directory (torch), or model.onnx / its folder (onnx)"""
    host: str = "127.0.0.1"
    """address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it — use an API key)"""
    port: int = 8000
    """TCP port"""
    backend: Literal["torch", "onnx"] = "torch"
    """torch: a bundle; onnx: an exported model.onnx run with ONNX Runtime"""
    max_upload_mb: float = 20
    """largest request body in MB, else 413"""
    max_images: int = 32
    """most images per request, else 413"""
    decode_timeout_s: Annotated[float, tyro.conf.arg(name="decode_timeout", metavar="SECONDS")] = 5.0
    """time allowed to decode a request's images, else 408"""
    api_key: Annotated[str | None, tyro.conf.arg(metavar="KEY")] = None
    """require header X-API-Key: KEY on /predict and /model (default: env TRANSFERKIT_API_KEY, else none)"""
    max_request_mp: Annotated[float | None, tyro.conf.arg(metavar="MP")] = 128
    """megapixels one request may hold in all, as the image headers claim them (checked before decoding), else 413
    (default 128: 32 images of 4 MP)"""
    max_inflight_mp: Annotated[float | None, tyro.conf.arg(metavar="MP")] = None
    """megapixels waiting for or being decoded across all requests; beyond it requests get 503 and Retry-After (default:
    twice max-request-mp)"""
    decode_workers: int = 2
    """threads decoding and resizing images"""
    body_timeout_s: Annotated[float, tyro.conf.arg(name="body_timeout", metavar="SECONDS")] = 30.0
    """time allowed to receive a request body, else 408 and the connection is closed"""
    max_texts: int = 64
    """text models: most texts per request, else 413"""
    max_text_chars: int = 20_000
    """text models: most characters per text, else 413"""
    long_texts: Literal["truncate", "refuse"] = "truncate"
    """text models: a text over the model's max_length tokens is truncated (flagged 'truncated' in the answer) or
    refused with 422"""
    expose_lineage: bool = False
    """GET /model also shows the lineage (local paths) and the test metrics (default: hidden)"""
    docs: bool = False
    """serve the /docs and /redoc pages (they load JavaScript and CSS from a CDN; default: only /openapi.json)"""
    threads: int | None = None
    """intra-op threads of the backend (default: its own)"""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"
    """uvicorn log level; info also logs every request"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("model",)


def _no_baselines(no_baselines: bool = False) -> bool | None:
    """``--no-baselines``: skip the single-task models; absent, the spec decides (``None``)."""
    return False if no_baselines else None


@dataclass(frozen=True)
class MultitaskConfig(JobConfig):
    """train several tasks on one transferred backbone (one head per task) and compare each with its single-task
    model"""

    config: Annotated[str | None, tyro.conf.arg(metavar="TASKS.yaml")] = None
    """the task spec, tasks.yaml (tasks, data, source, strategy, weighting, sampling, training settings)"""
    source: str | None = None
    """run directory, bundle directory or pretrained backbone name (overrides the spec's 'source')"""
    strategy: str | None = None
    """transfer strategy (overrides the spec's; default finetune)"""
    weighting: Literal["fixed", "uncertainty", "gradnorm", "dwa"] | None = None
    """loss weighting (overrides the spec's; default fixed)"""
    sampling: Literal["proportional", "uniform", "temperature"] | None = None
    """task sampling (overrides the spec's; default proportional)"""
    epochs: int | None = None
    """maximum epochs (overrides the spec's; default 30)"""
    seed: int | None = None
    """seed of the label draws and the training (default 0)"""
    baselines: Annotated[bool | None, tyro.conf.arg(constructor=_no_baselines)] = None
    """train the single-task models for the comparison (default: the spec's, else yes)"""
    strict: bool = False
    """fail on unreadable files or rows with an empty text"""
    out: str | None = None
    """run directory to write (overrides the spec's; default runs/multitask)"""
    resume: bool = False
    """continue an interrupted run at out"""
    overwrite: bool = False
    """replace a run directory another run holds"""
    progress: bool = False
    """show Lightning's progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("config",)
    SPEC_FILE: ClassVar[bool] = True


@dataclass(frozen=True)
class ResumeConfig(JobConfig):
    """continue an interrupted pretrain/transfer/adapt/distill run from its newest good checkpoint

    Security: resume checkpoints are pickles, and loading one runs whatever code it names, so resume only run
    directories you (or someone you trust) wrote; a warning is printed when the run directory is owned by another
    user or was created on another machine. Share bundles, never checkpoints.
    """

    out: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")] = None
    """the interrupted run's out directory"""
    progress: bool = True
    """show the progress bar"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("out",)


@dataclass(frozen=True)
class DemoConfig(JobConfig):
    """the demo: Fashion-MNIST split task, scratch vs linear probe vs fine-tune over seeds"""

    out: str = "runs/demo"
    """directory to write (rerunning reuses its finished parts)"""
    seeds: int = 3
    """seeds 0..N-1 of every comparison"""


@dataclass(frozen=True)
class ListConfig(JobConfig):
    """list a pluggable family (datasets, backbones, strategies, regularizers, methods, scores, …) with papers and
    files; without FAMILY, the families"""

    family: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="FAMILY")] = None
    """e.g. strategies, fusion-methods, transferability-scores ('transferkit list' shows them all)"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("family",)


@dataclass(frozen=True)
class DatasetsConfig(JobConfig):
    """list the datasets transferkit knows"""


@dataclass(frozen=True)
class BackbonesConfig(JobConfig):
    """list the backbones with size, feature width and weight availability"""


@dataclass(frozen=True)
class StrategiesConfig(JobConfig):
    """list the transfer strategies"""


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
                                       "strategies": StrategiesConfig}


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
           "LabelledOptions", "LrFindConfig", "MergeConfig", "NetworkOptions", "OptimiserOptions", "PretrainConfig",
           "ReadOptions", "RunOptions", "SearchOptions", "SearchSpaceOptions", "SelectConfig", "SetFitOptions",
           "SimilarityOptions", "SourceOptions", "SplitOptions", "StrategyOptions", "StudyOptions", "TargetJobConfig",
           "TaskOptions", "TransferConfig", "TuneConfig", "VerifyOptions", "ZeroshotConfig", "parse_key_values",
           "parse_labels_per_class", "parse_seeds", "parse_specs"]
