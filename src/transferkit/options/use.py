"""The configurations of the commands that use a trained model or list what is installed: evaluate, merge,
export, predict, serve, resume, multitask, demo and the listings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from transferkit.options.base import JobConfig, _text_flag, tyro


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
    max_pixels: int = 40_000_000
    """an image larger than this many pixels gets an error row instead of being decoded (a possible decompression
    bomb)"""
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

    spec: Annotated[str | None, tyro.conf.arg(name="config", metavar="TASKS.yaml")] = None
    """the task spec, tasks.yaml (tasks, data, source, strategy, weighting, sampling, training settings); from
    Python also the same mapping"""
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

    POSITIONAL: ClassVar[tuple[str, ...]] = ("spec", "source")
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
    labels_per_class: Annotated[str | int | tuple[int, ...], _text_flag("labels_per_class")] = (5, 10, 50)
    """the split task's labelled budgets per class, e.g. 5,10,50"""
    source_epochs: int = 3
    """epochs of the seed_cnn source model's pretraining"""
    steps: int | None = None
    """optimiser steps per split-task run (default: each strategy's recipe); the ImageNet part trains at most 30"""
    imagenet: bool = True
    """run the ImageNet MobileNetV2 part too (when its weights are installed)"""
    imagenet_labels_per_class: Annotated[str | int | tuple[int, ...], _text_flag("imagenet_labels_per_class")] = (
        5, 10)
    """the ImageNet part's labelled budgets per class"""


@dataclass(frozen=True)
class CacheConfig(JobConfig):
    """show or empty the frozen-feature cache and the prepared-data cache of streamed image folders (size cap of each:
    $TRANSFERKIT_CACHE_MAX, default 10G)"""

    action: Annotated[Literal["list", "clear"], tyro.conf.Positional, tyro.conf.arg(metavar="list|clear")] = "list"
    """list the entries (least recently used first) or remove them"""
    older_than_days: float | None = None
    """clear: only the entries not used for this many days (default: all)"""
    cache_dir: str | None = None
    """the cache folder (default: $TRANSFERKIT_CACHE, else ~/.cache/transferkit/features)"""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("action",)


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
