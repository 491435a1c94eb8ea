"""The ``transferkit`` command: parses flags (or ``--config FILE.yaml``), calls the Python API, prints.

Nothing here trains or evaluates anything itself; every command is one call into :mod:`transferkit.api`. The
parser is built from light modules only: PyTorch, the jobs and ``rich`` are imported once a command runs, so
``transferkit --help`` and ``transferkit <command> --help`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from transferkit.cli.config import parse_args, parse_generated
from transferkit.errors import ConfigError, DivergenceError, Interrupted


class _SpecList(argparse.Action):
    """A repeatable flag whose values *replace* a default (e.g. a list from ``--config``) instead of extending it,
    so that flags given on the command line win over the file, as they do for every other option."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, [*items, values])


# commands whose flags are generated from their configuration (transferkit.options.CONFIGS) by tyro
GENERATED = {"pretrain": "train a source model on a source task",
             "transfer": "transfer a source model to a target task",
             "lr-find": "learning-rate range test for a strategy on a target task (plot + suggested --lr)",
             "compare": "compare strategies × labels per class × seeds (mean ± std)",
             "curve": "label-efficiency curves: accuracy vs labels per class per strategy (resumable)",
             "distill": "knowledge distillation: teacher bundle → small student, compared with a labels-only student",
             "fewshot": "few-shot transfer from K examples per class: SetFit-style contrastive fine-tuning, class "
                        "prototypes, or N-way K-shot episodic evaluation",
             "zeroshot": "zero-shot text classification by similarity to label names or descriptions (no labels)"}

STEPS_HELP = ("optimiser steps of training, whatever the dataset size (default: the strategy's recipe — finetune "
              "100, scratch 300, with warm-up + cosine); not with --epochs")


def _fault_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("checkpoints and resume")
    g.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                   help="write a resume checkpoint every STEPS optimiser steps, besides every epoch end "
                        "(default %(default)s)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the interrupted run RUN_DIR from its newest good checkpoint, with the options "
                        "recorded in its config.yaml (other options are ignored); same as 'transferkit resume'")
    g.add_argument("--overwrite", action="store_true",
                   help="discard an interrupted run in --out instead of refusing, or run even though another run "
                        "holds --out (this one then stages separately)")
    return g


SOURCE_HELP = ("run directory, bundle directory or pretrained backbone name; fuse:[MODE[@WIDTH]:]A+B fuses the "
               "features of several (MODE: concat, sum, product, max)")


def _target_task(p: argparse.ArgumentParser, val_note: str = "") -> None:
    """--source, the data options, --strategy and the labelled budget: what transfer and tune share."""
    p.add_argument("--source", required=False, help=SOURCE_HELP)
    _data_options(p)
    p.add_argument("--strategy", default="finetune",
                   help="scratch (structure), linear_probe (feature), finetune (parameter) or lora")
    p.add_argument("--labels-per-class", type=int, default=None, metavar="K",
                   help="K labelled examples per class in total, drawn from the training split: all K train the final "
                        "model and any selection comes out of them (a probe's C by cross-validation); stepped "
                        "strategies run a fixed recipe (default: the whole training split)")
    p.add_argument("--val-per-class", type=int, default=None, metavar="V",
                   help="a separate fixed validation set of V other labelled images per class (the budget is then "
                        f"K + V); {val_note or 'default: none, the K labels are the whole budget'}")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share when all labels are used")


def _data_options(p: argparse.ArgumentParser, default_data: str | None = "fashion_mnist") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default=default_data, required=default_data is None,
                   help="dataset name or name:PATH (see 'transferkit datasets')")
    g.add_argument("--classes", default=None, help="class indices to keep, e.g. 0,1,5 or 0-4 (default: all)")
    g.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    g.add_argument("--convert-channels", action="store_true", help="allow converting colour images to greyscale")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from transferkit import __version__

    parser = argparse.ArgumentParser(prog="transferkit", description="Deep transfer learning on PyTorch.")
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subs: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="FILE.yaml", help="options from a YAML file (keys mirror the flags)")
        subs[name] = p
        return p

    p = add("list", "list a pluggable family (datasets, backbones, strategies, regularizers, methods, scores, …) with "
                    "papers and files; without FAMILY, the families")
    p.add_argument("family", nargs="?", metavar="FAMILY", help="e.g. strategies, fusion-methods, "
                   "transferability-scores ('transferkit list' shows them all)")
    add("datasets", "list the datasets transferkit knows")
    add("backbones", "list the backbones with size, feature width and weight availability")
    add("strategies", "list the transfer strategies")

    for name in GENERATED:  # listed here; their flags come from their configuration (parse_generated)
        add(name, GENERATED[name])

    p = add("resume", "continue an interrupted pretrain/transfer/adapt/distill run from its newest good checkpoint")
    p.description = (f"{p.description}. Security: resume checkpoints are pickles, and loading one runs whatever "
                     "code it names, so resume only run directories you (or someone you trust) wrote; a warning is "
                     "printed when the run directory is owned by another user or was created on another machine. "
                     "Share bundles, never checkpoints.")
    p.add_argument("run_dir", nargs="?", help="the interrupted run's --out directory")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")

    p = add("evaluate", "evaluate a trained model on a dataset split")
    p.add_argument("model", nargs="?", help="run directory or bundle directory")
    _data_options(p, default_data=None)
    p.add_argument("--split", default=None,
                   help="split to evaluate (default: test, or all of the data when it has no test split, e.g. a "
                        "folder of class sub-folders)")
    p.add_argument("--out", default=None, help="also write metrics.json and confusion_matrix.png here")

    p = add("predict", "predict the class of image files, folders (recursively) and CSV lists of images")
    p.add_argument("model", nargs="?", help="run directory, bundle directory or pretrained backbone name "
                   "(--backend onnx: a model.onnx or a folder holding one)")
    p.add_argument("inputs", nargs="*", help="image files, folders, or .csv files listing image paths "
                   "(column 'path', else the first column)")
    p.add_argument("--output", default=None, help="write every prediction here as it is made, .csv or .jsonl; "
                   "'-' writes them to standard output (progress and messages go to standard error) (default: "
                   "print a table of the first rows)")
    p.add_argument("--format", choices=["csv", "jsonl"], default=None, help="output format (default: from the "
                   "--output extension; csv for --output -)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file that is not an "
                   "earlier predictions file (never one of the inputs)")
    p.add_argument("--top-k", type=int, default=1, help="also list the k most probable classes (a 'top k' column "
                   "in the table; top{i}_class/_index/_probability columns in --output)")
    p.add_argument("--text-column", default="text", help="text models: the column of .csv/.tsv/.jsonl inputs holding "
                   "the text; a+b joins two (default %(default)s); .txt inputs hold one text per line")
    p.add_argument("--batch-size", type=int, default=64, help="images decoded and predicted at a time")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="run the model with PyTorch or "
                   "an exported ONNX model with ONNX Runtime")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of "
                   "reporting it in the error column")
    p.add_argument("--convert-channels", action="store_true", help="allow converting colour images to greyscale")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")

    p = add("adapt", "unsupervised domain adaptation: labelled source → unlabelled target (one method, or a "
                     "comparison of methods × seeds)")
    p.add_argument("--source", default="fashion_mnist", help="labelled source dataset (default %(default)s)")
    p.add_argument("--target", default="fashion_mnist_m", help="target dataset; its labels are not used "
                   "(default %(default)s)")
    p.add_argument("--method", default="dann",
                   help="method, '+' combines (dann+self_training); comma-separated methods run a comparison "
                        "(--list-methods shows them; default %(default)s)")
    p.add_argument("--list-methods", action="store_true", help="list the adaptation methods and exit")
    p.add_argument("--seeds", default=None,
                   help="comparison mode: N (seeds 0..N-1) or a list such as 0,3,7 (default: --seed only)")
    p.add_argument("--backbone", default="seed_cnn", help="backbone name or bundle/run directory (default %(default)s)")
    p.add_argument("--pretrained", action="store_true", help="start from the backbone's shipped weights")
    p.add_argument("--frozen", action="store_true",
                   help="adapt only the head on frozen (cached) features of a pretrained backbone")
    p.add_argument("--bottleneck", type=int, default=256, help="width of the bottleneck the methods align (0: none)")
    p.add_argument("--classes", default=None, help="class indices to keep in both domains, e.g. 0-4")
    p.add_argument("--source-per-class", type=int, default=None, help="cap on source training images per class")
    p.add_argument("--target-limit", type=int, default=None, help="cap on unlabelled target training images")
    p.add_argument("--target-val", type=int, default=1000,
                   help="target images held out (unlabelled) for label-free selection (default %(default)s)")
    p.add_argument("--test-limit", type=int, default=None, help="score on a fixed random subset of the target test")
    p.add_argument("--val-fraction", type=float, default=0.1, help="source validation share (default %(default)s)")
    p.add_argument("--selection", default="source_val", choices=["source_val", "target_entropy", "dev"],
                   help="label-free checkpoint selection (default %(default)s)")
    p.add_argument("--oracle-selection", action="store_true",
                   help="select on target-validation LABELS instead (analysis only; reports say so)")
    p.add_argument("--option", dest="options", action="append", default=None, metavar="KEY=VALUE",
                   help="method option, repeatable (trade_off=0.5, threshold=0.95, dann.hidden=512)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--backbone-lr-mult", type=float, default=None,
                   help="backbone rate = lr × this (default 0.1 for pretrained weights, 1 from scratch)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "adam", "sgd"])
    p.add_argument("--image-size", type=int, default=None, help="input size of the backbone")
    p.add_argument("--resize", action="store_true", help="allow source and target images of different sizes "
                   "(both are resized to the model's input size)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    p.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                   help="skip proxy A-distance / MMD before and after")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the t-SNE and learning-curve plots")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/adapt")
    p.add_argument("--restart", action="store_true", help="comparison mode: discard finished cells in --out")
    p.add_argument("--title", default="", help="comparison mode: title of the table and chart")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", default=1)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    _fault_options(p)

    p = add("fuse", "fuse trained models: averaging, fitted weights, stacking, gating, uniform/greedy soups")
    p.add_argument("members", nargs="*", help="run or bundle directories of the members (two or more)")
    _data_options(p)
    p.add_argument("--methods", default=",".join(("average", "weighted", "stacking", "gating", "soup_uniform",
                                                   "soup_greedy")), help="comma-separated (default: all)")
    p.add_argument("--fit-per-class", type=int, default=100,
                   help="held-out training-split images per class the fusion is fitted on (default %(default)s)")
    p.add_argument("--fit-on", choices=["held_out", "validation"], default="held_out",
                   help="fit on --fit-per-class further held-out images (default) or on the members' shared "
                        "validation split (no labels beyond their budget)")
    p.add_argument("--gate-epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/fuse")

    p = add("select", "rank candidate sources for a target task by transferability scores (LogME, H-score, LEEP, "
                      "NCE), optionally verified by fine-tuning")
    p.add_argument("candidates", nargs="*", metavar="CANDIDATE",
                   help="pretrained backbone name, run/bundle directory, timm:/torchvision:/fuse: source, or "
                        "random:<backbone> (random initialisation, a baseline); unloadable ones are skipped")
    _data_options(p)
    p.add_argument("--labels-per-class", type=int, default=None, metavar="K",
                   help="score on the K labelled images per class a 'transfer --labels-per-class K' run trains on "
                        "(default: the whole training split)")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="as for transfer: a separate validation set of V images per class set aside first (default: "
                        "none; --verify runs train on all K)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="as for transfer (verification without K)")
    p.add_argument("--scores", default="logme,h_score,h_score_shrunk,leep,nce",
                   help="comma-separated scores, the first ranks (default %(default)s)")
    p.add_argument("--similarity-data", default=None, metavar="DATA",
                   help="a source dataset: report its domain similarity to the target (mean-feature cosine, MMD², "
                        "proxy A-distance) in each candidate's feature space")
    p.add_argument("--similarity-classes", default=None, help="classes of --similarity-data (default: all)")
    p.add_argument("--similarity-samples", type=int, default=500,
                   help="source images drawn for the similarity (default %(default)s)")
    p.add_argument("--verify", type=int, default=0, metavar="K",
                   help="fine-tune the top K candidates and correlate scores with their test accuracy (default 0)")
    p.add_argument("--verify-all", action="store_true", help="fine-tune every usable candidate (for analysis)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input size for named pretrained / random: backbones")
    p.add_argument("--max-length", type=int, default=None,
                   help="token limit for named text backbones (minilm, hf:…); longer texts are truncated")
    p.add_argument("--epochs", type=int, default=30, help="verification: maximum epochs (default %(default)s)")
    p.add_argument("--patience", type=int, default=10,
                   help="verification: early-stopping patience (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="verification: batch size (default: the strategy's)")
    p.add_argument("--lr", type=float, default=None, help="verification: learning rate (default: the strategy's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/select")

    p = add("tune", "hyper-parameter search (Optuna: TPE, median pruning) over a strategy's options, selected on "
                    "the validation split; resumable, several workers may share a study")
    _target_task(p, "tune keeps one: default V = K, every trial is judged on them")
    p.add_argument("--param", action=_SpecList, default=None, metavar="NAME=SPEC",
                   help="a searched argument, repeatable: SPEC is loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH "
                        "or choice:A,B,C; NAME a training argument (lr, weight_decay, batch_size, freeze, augment, …) "
                        "or option.KEY for a strategy option (default: lr, weight_decay, and freeze for finetune)")
    p.add_argument("--space", default=None, metavar="FILE.yaml",
                   help="search space file 'NAME: SPEC' (a list means choice); --param adds to it and wins")
    p.add_argument("--trials", type=int, default=20, help="trials this run adds to the study (default %(default)s)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--metric", default="val_acc", choices=["val_acc", "val_loss"],
                   help="objective on the validation split: val_acc (maximised, default) or val_loss (minimised)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default sqlite:///OUT/study.db); rerunning resumes the study")
    p.add_argument("--study-name", default=None, help="study name in the storage (default: the name of --out)")
    p.add_argument("--option", dest="options", action="append", default=None, metavar="KEY=VALUE",
                   help="a fixed strategy option, repeatable (as for transfer)")
    p.add_argument("--fixed", action="append", default=None, metavar="NAME=VALUE",
                   help="a fixed training argument for every trial, repeatable (e.g. --fixed schedule=cosine "
                        "--fixed batch_size=32)")
    p.add_argument("--image-size", type=int, default=None, help="input size for a pretrained backbone --source")
    p.add_argument("--weights", default=None, help="weights file for a timm:/torchvision: --source")
    p.add_argument("--class-map", default=None, metavar="FILE", help="as for transfer")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs per trial (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, the training and the sampler")
    p.add_argument("--pruner-startup-trials", type=int, default=5,
                   help="prune nothing until this many trials have finished (default %(default)s)")
    p.add_argument("--pruner-warmup-epochs", type=int, default=2,
                   help="judge a trial only after this many epochs (default %(default)s)")
    p.add_argument("--no-pruning", dest="pruning", action="store_false", help="let every trial run to its end")
    p.add_argument("--accelerator", default="cpu", help="passed to Lightning: cpu, gpu, auto, … (default cpu)")
    p.add_argument("--out", default="runs/tune",
                   help="search directory: study.db, trials/, best_config.yaml, report (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")

    p = add("multitask", "train several tasks on one transferred backbone (one head per task) and compare each with "
                         "its single-task model")
    p.set_defaults(config_is_spec=True)  # --config is the task spec (tasks.yaml), read by the job itself
    p.add_argument("--source", default=None, help=SOURCE_HELP + " (overrides the spec's 'source')")
    p.add_argument("--strategy", default=None, help="transfer strategy (overrides the spec's; default finetune)")
    p.add_argument("--weighting", default=None, metavar="{fixed,uncertainty,gradnorm,dwa}",
                   help="loss weighting (overrides the spec's; default fixed)")
    p.add_argument("--sampling", default=None, metavar="{proportional,uniform,temperature}",
                   help="task sampling (overrides the spec's; default proportional)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (overrides the spec's; default 30)")
    p.add_argument("--seed", type=int, default=None, help="seed of the label draws and the training (default 0)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=None,
                   help="skip the single-task models (no comparison)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable files or rows with an empty text")
    p.add_argument("--out", default=None, help="run directory to write (overrides the spec's; default runs/multitask)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run at --out")
    p.add_argument("--overwrite", action="store_true", help="replace a run directory another run holds")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar")

    p = add("auto", "choose the source and the strategy automatically within a time budget: rank sources by "
                    "transferability, probe the best, then successive halving over fine-tuning variants and LoRA")
    _data_options(p)
    p.add_argument("--candidates", default=None,
                   help="comma-separated sources (backbone names, run/bundle directories, random:NAME); default: "
                        "every installed pretrained backbone of the data's modality")
    p.add_argument("--budget", default="10m", help="wall-clock budget: 90s, 10m, 1.5h (default %(default)s)")
    p.add_argument("--labels-per-class", type=int, default=None,
                   help="K labelled training examples per class the candidates train on")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="auto chooses on a separate validation set of V other labelled examples per class (default: "
                        "V = K, a labelled budget of 2K per class)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share without a labelled budget")
    p.add_argument("--image-size", type=int, default=None, help="input size of named pretrained backbones")
    p.add_argument("--max-length", type=int, default=None,
                   help="token limit for named text backbones (minilm, hf:…); longer texts are truncated")
    p.add_argument("--keep", type=int, default=4, help="candidates kept after stage 1 (default %(default)s)")
    p.add_argument("--finalists", type=int, default=2, help="candidates kept after the probes (default %(default)s)")
    p.add_argument("--first-epochs", type=int, default=None,
                   help="epochs of the first halving rung (default: enough for --first-steps optimiser steps, ≥ 2)")
    p.add_argument("--first-steps", type=int, default=10,
                   help="optimiser steps every configuration takes in the first halving rung (default %(default)s)")
    p.add_argument("--eta", type=int, default=3, help="halving factor: keep the best 1/eta (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/auto", help="run directory to write (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")

    p = add("merge", "fold a LoRA bundle's adapters into the source weights: a plain, self-contained bundle")
    p.add_argument("model", nargs="?", help="LoRA run directory or bundle directory")
    p.add_argument("--out", default=None, help="bundle directory to write")

    p = add("export", "export a bundle to ONNX or TorchScript (classes and preprocessing in the metadata), verified "
                      "against PyTorch")
    p.add_argument("model", nargs="?", help="run directory or bundle directory (LoRA bundles are merged first)")
    p.add_argument("--format", default="onnx", metavar="{onnx,torchscript}",
                   help="onnx (model.onnx, ONNX Runtime) or torchscript (model.pt, torch.jit) (default %(default)s)")
    p.add_argument("--out", default=None,
                   help="file (or folder) to write (default: RUN_DIR/export/model.onnx|model.pt, or "
                        "NAME.export/ beside a bare bundle directory NAME)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file that is not an earlier "
                   "export (never inside the bundle)")

    p = add("serve", "serve a model (images or texts, single- or multi-task) over HTTP (FastAPI + uvicorn): "
                     "POST /predict, GET /health, GET /model")
    p.add_argument("model", nargs="?", help="run or bundle directory (torch), or model.onnx / its folder (onnx)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s: this machine only; 0.0.0.0 exposes it — use an API key)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="torch: a bundle; onnx: an exported model.onnx run with ONNX Runtime (default %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=20,
                   help="largest request body in MB, else 413 (default %(default)s)")
    p.add_argument("--max-images", type=int, default=32, help="most images per request, else 413 (default %(default)s)")
    p.add_argument("--decode-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="time allowed to decode a request's images, else 408 (default %(default)s)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require header X-API-Key: KEY on /predict and /model (default: env TRANSFERKIT_API_KEY, "
                        "else none)")
    p.add_argument("--max-request-mp", type=float, default=128, metavar="MP",
                   help="megapixels one request may hold in all, as the image headers claim them (checked before "
                        "decoding), else 413 (default %(default)s: 32 images of 4 MP)")
    p.add_argument("--max-inflight-mp", type=float, default=None, metavar="MP",
                   help="megapixels waiting for or being decoded across all requests; beyond it requests get 503 "
                        "and Retry-After (default: twice --max-request-mp)")
    p.add_argument("--decode-workers", type=int, default=2, help="threads decoding and resizing images "
                   "(default %(default)s)")
    p.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="time allowed to receive a request body, else 408 and the connection is closed "
                        "(default %(default)s)")
    p.add_argument("--max-texts", type=int, default=64, help="text models: most texts per request, else 413 "
                   "(default %(default)s)")
    p.add_argument("--max-text-chars", type=int, default=20_000, help="text models: most characters per text, else "
                   "413 (default %(default)s)")
    p.add_argument("--long-texts", choices=["truncate", "refuse"], default="truncate",
                   help="text models: a text over the model's max_length tokens is truncated (flagged 'truncated' in "
                        "the answer) or refused with 422 (default %(default)s)")
    p.add_argument("--expose-lineage", action="store_true",
                   help="GET /model also shows the lineage (local paths) and the test metrics (default: hidden)")
    p.add_argument("--docs", action="store_true",
                   help="serve the /docs and /redoc pages (they load JavaScript and CSS from a CDN; default: only "
                        "/openapi.json)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of the backend (default: its own)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level; info also logs every request (default %(default)s)")

    p = add("demo", "the demo: Fashion-MNIST split task, scratch vs linear probe vs fine-tune over seeds")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seeds", type=int, default=3)
    return parser, subs


def _out_of(checkpoint: object) -> str:
    """``runs/x`` from ``runs/.x.partial/checkpoints/resume-….ckpt``."""
    from pathlib import Path

    if checkpoint is None:
        return "RUN_DIR"
    partial = Path(str(checkpoint)).parent.parent
    name = partial.name
    return str(partial.with_name(name[1:-len(".partial")])) if name.startswith(".") and name.endswith(".partial") \
        else "RUN_DIR"


def _silence_stdout() -> None:
    """Point standard output at the null device, so Python's final flush at exit cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured by a test): nothing to do
        pass


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("transferkit").setLevel(logging.INFO)
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in GENERATED:
            args = parse_generated(argv[0], argv[1:])
        else:
            parser, subs = build_parser()
            args = parse_args(parser, subs, argv)
        from transferkit.cli import commands  # the jobs (and PyTorch) load only once a command runs

        command = getattr(args, "command", None) or argv[0]  # a generated command's configuration names none
        return getattr(commands, f"cmd_{command.replace('-', '_')}")(args, console) or 0
    except Interrupted as exc:
        where = f"; checkpoint {exc.checkpoint}" if exc.checkpoint else ""
        console.print(f"[red]interrupted[/] ({escape(str(exc))}){escape(where)}: continue with 'transferkit resume "
                      f"{_out_of(exc.checkpoint)}'; earlier run directories and bundles were left intact",
                      highlight=False)
        return 130
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: earlier run directories and bundles were left intact")
        return 130
    except DivergenceError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 3
    except BrokenPipeError:
        # the reader of standard output went away (`… --output - | head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
    except ConfigError as exc:  # the library names the parameter; here it is a flag
        console.print(f"[red]error:[/] {escape(exc.as_flag())}", highlight=False)
        return 2
    except (ValueError, FileNotFoundError, OSError) as exc:
        # the message may quote user input ("[bold]" in a class name): printed as text, never as markup
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
