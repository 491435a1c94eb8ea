"""The ``transferkit`` command: parses flags (or ``--config FILE.yaml``), calls the Python API, prints.

Nothing here trains or evaluates anything itself; every command is one call into :mod:`transferkit.api`. The
parser is built from light modules only: PyTorch, the jobs and ``rich`` are imported once a command runs, so
``transferkit --help`` and ``transferkit <command> --help`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from transferkit.cli.config import parse_args, parse_generated
from transferkit.errors import ConfigError, DivergenceError, Interrupted

# commands whose flags are generated from their configuration (transferkit.options.CONFIGS) by tyro
GENERATED = {"pretrain": "train a source model on a source task",
             "transfer": "transfer a source model to a target task",
             "lr-find": "learning-rate range test for a strategy on a target task (plot + suggested --lr)",
             "compare": "compare strategies × labels per class × seeds (mean ± std)",
             "curve": "label-efficiency curves: accuracy vs labels per class per strategy (resumable)",
             "distill": "knowledge distillation: teacher bundle → small student, compared with a labels-only student",
             "fewshot": "few-shot transfer from K examples per class: SetFit-style contrastive fine-tuning, class "
                        "prototypes, or N-way K-shot episodic evaluation",
             "zeroshot": "zero-shot text classification by similarity to label names or descriptions (no labels)",
             "select": "rank candidate sources for a target task by transferability scores (LogME, H-score, LEEP, "
                       "NCE), optionally verified by fine-tuning",
             "fuse": "fuse trained models: averaging, fitted weights, stacking, gating, uniform/greedy soups",
             "adapt": "unsupervised domain adaptation: labelled source → unlabelled target (one method, or a "
                      "comparison of methods × seeds)",
             "tune": "hyper-parameter search (Optuna: TPE, median pruning) over a strategy's options, selected on "
                     "the validation split; resumable, several workers may share a study",
             "evaluate": "evaluate a trained model on a dataset split",
             "merge": "fold a LoRA bundle's adapters into the source weights: a plain, self-contained bundle",
             "export": "export a bundle to ONNX or TorchScript (classes and preprocessing in the metadata), verified "
                       "against PyTorch",
             "auto": "choose the source and the strategy automatically within a time budget: rank sources by "
                     "transferability, probe the best, then successive halving over fine-tuning variants and LoRA"}


SOURCE_HELP = ("run directory, bundle directory or pretrained backbone name; fuse:[MODE[@WIDTH]:]A+B fuses the "
               "features of several (MODE: concat, sum, product, max)")


def _resume_command(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``resume``: an interrupted run continued with its own options."""
    p = add("resume", "continue an interrupted pretrain/transfer/adapt/distill run from its newest good checkpoint")
    p.description = (f"{p.description}. Security: resume checkpoints are pickles, and loading one runs whatever "
                     "code it names, so resume only run directories you (or someone you trust) wrote; a warning is "
                     "printed when the run directory is owned by another user or was created on another machine. "
                     "Share bundles, never checkpoints.")
    p.add_argument("run_dir", nargs="?", help="the interrupted run's --out directory")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def _other_commands(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``multitask`` (whose ``--config`` is its task spec) and ``demo``."""
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

    p = add("demo", "the demo: Fashion-MNIST split task, scratch vs linear probe vs fine-tune over seeds")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seeds", type=int, default=3)
def _predict_command(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``predict``: a MODEL over files, folders and lists of inputs."""
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


def _serve_command(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """``serve``: a MODEL over HTTP, with the limits that keep a public service standing."""
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

    _resume_command(add)
    _predict_command(add)
    _serve_command(add)
    _other_commands(add)
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
        if argv[:1] == ["adapt"] and "--list-methods" in argv:
            from transferkit.cli import commands

            return commands.cmd_adapt_methods(console)
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
