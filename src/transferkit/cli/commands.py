"""The commands: each is one API call with its configuration (:func:`run`); a ``cmd_`` function only where a command
prints something of its own or needs more than its configuration."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from transferkit import api
from transferkit.api import listing
from transferkit.api.use import PREVIEW_ROWS, writes_to_stdout

# the commands that are one API call with their configuration (no cmd_ function below), and what each needs, as the
# command line names it
REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "transfer": (("source", "--source"),), "compare": (("source", "--source"),), "curve": (("source", "--source"),),
    "lr_find": (("source", "--source"),), "tune": (("source", "--source"),), "distill": (("teacher", "--teacher"),),
    "select": (("candidates", "CANDIDATE (one or more sources)"),),
    "evaluate": (("model", "MODEL (run or bundle directory)"), ("data", "--data")),
    "export": (("model", "MODEL (run or bundle directory)"),), "resume": (("out", "RUN_DIR"),),
    "multitask": (("spec", "--config (the task spec, tasks.yaml)"),)}


def run(command: str, c: Any, console: Console) -> int | None:
    """Run ``command`` (``lr_find``) with its configuration: its ``cmd_`` function when it has one, else one API
    call (after checking what it needs)."""
    handler = globals().get(f"cmd_{command}")
    if handler is not None:
        return handler(c, console)
    flat = c.flat()
    for name, shown in REQUIRED.get(command, ()):
        _need(flat[name], shown)
    getattr(api, command)(config=c, console=console)
    return None


def _need(value: object, flag: str) -> None:
    if value in (None, "", [], ()):
        in_file = flag.startswith("--") and not flag.startswith("--config")  # multitask's --config is the spec
        raise ValueError(f"{flag} is required" + (" (give it as a flag or in --config)" if in_file else ""))


def cmd_list(c: Any, console: Console) -> None:
    """``transferkit list [FAMILY]``: the families, or one family's entries with their papers and files."""
    listing.show("list", console, c.family)


def cmd_datasets(c: Any, console: Console) -> None:
    listing.show("datasets", console)


def cmd_backbones(c: Any, console: Console) -> None:
    listing.show("backbones", console)


def cmd_strategies(c: Any, console: Console) -> None:
    listing.show("strategies", console)


def cmd_predict(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (run directory, bundle directory or backbone name)")
    _need(c.inputs, "IMAGE_OR_FOLDER (or text files for a text model)")
    # progress and messages on standard error, always: standard output holds only results (the rows with --output -)
    info = Console(stderr=True)
    result = api.predict(config=c, console=info)
    api.show_predictions(result, c.output, c.top_k, console, info, writes_to_stdout(c.output), PREVIEW_ROWS)


def cmd_adapt_methods(console: Console) -> int:
    """``transferkit adapt --list-methods``: the adaptation methods with their options and papers."""
    listing.show("adaptation-methods", console)
    return 0


def cmd_adapt(c: Any, console: Console) -> int:
    if c.is_comparison:
        result = api.adapt_compare(config=c, console=console)
        diverged = any(cell.get("diverged") for cell in result.metrics["cells"])
    else:
        diverged = bool(api.adapt(config=c, console=console).metrics.get("diverged"))
    return 3 if diverged else 0  # a run that diverged is written (last good epoch kept) but signalled


def cmd_zeroshot(c: Any, console: Console) -> None:
    if c.data is None and c.labels is None:
        raise ValueError("zeroshot needs --labels A,B,… or --data (whose class names become the labels)")
    api.zeroshot(config=c, console=console)


def cmd_merge(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (LoRA run or bundle directory)")
    _need(c.out, "--out")
    res = api.merge(config=c)
    console.print(f"merged bundle: {res.run_dir}")


def cmd_serve(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (run directory, bundle directory or model.onnx)")
    api.serve(config=c, console=console)


def cmd_demo(c: Any, console: Console) -> None:
    api.demo(**c.flat(), console=console)


