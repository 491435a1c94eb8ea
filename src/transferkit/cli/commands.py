"""One function per CLI command: turn parsed flags into one API call and print the result."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from transferkit import api
from transferkit.api import listing
from transferkit.api.use import PREVIEW_ROWS, writes_to_stdout
from transferkit.cli.tables import predictions_table


def cmd_resume(a: argparse.Namespace, console: Console) -> None:
    _need(a.run_dir, "RUN_DIR")
    api.resume(a.run_dir, progress=a.progress, console=console)


def _need(value: object, flag: str) -> None:
    if value in (None, "", [], ()):
        raise ValueError(f"{flag} is required (give it as a flag or in --config)")


def cmd_list(a: argparse.Namespace, console: Console) -> None:
    """``transferkit list [FAMILY]``: the families, or one family's entries with their papers and files."""
    if not a.family:
        table = Table(title="families (transferkit list FAMILY)")
        table.add_column("family")
        table.add_column("entries", justify="right")
        for name, n in api.families().items():
            table.add_row(name, str(n))
        console.print(table)
        return
    table = Table(title=a.family)
    for col in ("name", "summary", "paper", "file"):
        table.add_column(col, overflow="fold")
    for row in api.list_family(a.family):
        name = row["name"] + (f" (alias {', '.join(row['aliases'])})" if row["aliases"] else "")
        table.add_row(name, row["summary"], row["paper"], row["file"])
    console.print(table)


def cmd_datasets(a: argparse.Namespace, console: Console) -> None:
    table = Table(title="datasets (use --data NAME)")
    for col in ("name", "splits", "description"):
        table.add_column(col)
    for row in listing.dataset_rows():
        table.add_row(row["usage"], ",".join(row["splits"]), row["description"])
    console.print(table)


def cmd_backbones(a: argparse.Namespace, console: Console) -> None:
    table = Table(title="backbones (use --backbone NAME)")
    for col in ("name", "parameters", "feature dim", "input size", "pretrained weights", "description"):
        table.add_column(col, justify="right" if col in ("parameters", "feature dim") else "left")
    for row in listing.backbone_rows():
        table.add_row(row["name"], f"{row['parameters']:,}", str(row["feature_dim"]), row["input"],
                      "available" if row["weights"] else "none (pretrain it)", row["description"])
    console.print(table)
    for family in listing.backbone_family_rows():
        console.print(f"  {family['prefix']}:<name>  {family['description']}")


def cmd_strategies(a: argparse.Namespace, console: Console) -> None:
    table = Table(title="strategies (use --strategy NAME)")
    for col in ("name", "aliases", "kind of transfer", "options"):
        table.add_column(col)
    for row in listing.strategy_rows():
        table.add_row(row["name"], ", ".join(row["aliases"]), row["kind"], ", ".join(row["options"]) or "-")
    console.print(table)


def cmd_pretrain(c: Any, console: Console) -> None:
    api.pretrain(config=c, console=console)


def cmd_transfer(c: Any, console: Console) -> None:
    _need(c.source.source, "--source")
    api.transfer(config=c, console=console)


def cmd_evaluate(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (run or bundle directory)")
    _need(c.data, "--data")
    api.evaluate(config=c, console=console)


def cmd_predict(a: argparse.Namespace, console: Console) -> None:
    _need(a.model, "MODEL (run directory, bundle directory or backbone name)")
    _need(a.inputs, "IMAGE_OR_FOLDER (or text files for a text model)")
    to_stdout = writes_to_stdout(a.output)
    # progress and messages on standard error, always: standard output holds only results (the rows with --output -)
    info = Console(stderr=True)
    result = api.predict(a.model, a.inputs, output=a.output, top_k=a.top_k, batch_size=a.batch_size,
                         strict=a.strict, convert_channels=a.convert_channels, format=a.format,
                         backend=a.backend, progress=a.progress, console=info, text_column=a.text_column,
                         overwrite=a.overwrite)
    if isinstance(result, dict):  # streamed to --output: a summary with the first rows
        rows, n, errors = result["preview"], result["images"], result["errors"]
    else:
        rows, n, errors = result, len(result), sum(r["error"] is not None for r in result)
    summary = f"{n - errors} input(s) predicted, {errors} error(s)"
    if to_stdout:
        info.print(f"{summary}; wrote them to standard output as {result['format'].upper()}", highlight=False)
        return
    console.print(predictions_table(rows[:PREVIEW_ROWS], width=console.width, top_k=a.top_k,
                                    title=f"predictions ({n} inputs)"))
    if n > PREVIEW_ROWS:
        console.print(f"… {n - PREVIEW_ROWS} more" + ("" if a.output else "; --output FILE.csv (or -) has every row"),
                      highlight=False)
    console.print(summary + (f"; wrote {a.output}" if a.output else ""), highlight=False, markup=False)


def cmd_compare(c: Any, console: Console) -> None:
    _need(c.source.source, "--source")
    api.compare(config=c, console=console)


def cmd_adapt_methods(console: Console) -> int:
    """``transferkit adapt --list-methods``: the adaptation methods with their options and papers."""
    table = Table(title="adaptation methods (use --method NAME, combine with '+')")
    for col in ("name", "what it does", "options", "paper"):
        table.add_column(col)
    for row in listing.adaptation_method_rows():
        table.add_row(row["name"], row["summary"], ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-",
                      row["paper"] or "-")
    console.print(table)
    return 0


def cmd_adapt(c: Any, console: Console) -> int:
    if "," in c.method or c.comparison.seeds is not None:  # a comparison of methods × seeds
        result = api.adapt_compare(config=c, console=console)
        diverged = any(cell.get("diverged") for cell in result.metrics["cells"])
    else:
        diverged = bool(api.adapt(config=c, console=console).metrics.get("diverged"))
    return 3 if diverged else 0  # a run that diverged is written (last good epoch kept) but signalled


def cmd_distill(c: Any, console: Console) -> None:
    _need(c.teacher, "--teacher")
    api.distill(config=c, console=console)


def cmd_fuse(c: Any, console: Console) -> None:
    api.fuse(config=c, console=console)


def cmd_select(c: Any, console: Console) -> None:
    _need(c.candidates, "CANDIDATE (one or more sources)")
    api.select(config=c, console=console)


def cmd_curve(c: Any, console: Console) -> None:
    _need(c.source.source, "--source")
    api.curve(config=c, console=console)


def cmd_lr_find(c: Any, console: Console) -> None:
    _need(c.source.source, "--source")
    api.lr_find(config=c, console=console)


def cmd_fewshot(c: Any, console: Console) -> None:
    api.fewshot(config=c, console=console)


def cmd_zeroshot(c: Any, console: Console) -> None:
    if c.data is None and c.labels is None:
        raise ValueError("zeroshot needs --labels A,B,… or --data (whose class names become the labels)")
    api.zeroshot(config=c, console=console)


def cmd_multitask(a: argparse.Namespace, console: Console) -> None:
    _need(a.config, "--config (the task spec, tasks.yaml)")
    api.multitask(a.config, source=a.source, out=a.out, seed=a.seed, epochs=a.epochs, strategy=a.strategy,
                  weighting=a.weighting, sampling=a.sampling, baselines=a.baselines, strict=a.strict, resume=a.resume,
                  overwrite=a.overwrite, progress=a.progress, console=console)


def cmd_auto(c: Any, console: Console) -> None:
    api.auto(config=c, console=console)


def cmd_merge(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (LoRA run or bundle directory)")
    _need(c.out, "--out")
    res = api.merge(config=c)
    console.print(f"merged bundle: {res.run_dir}")


def cmd_export(c: Any, console: Console) -> None:
    _need(c.model, "MODEL (run or bundle directory)")
    api.export(config=c, console=console)


def cmd_serve(a: argparse.Namespace, console: Console) -> None:
    _need(a.model, "MODEL (run directory, bundle directory or model.onnx)")
    api.serve(a.model, host=a.host, port=a.port, backend=a.backend, max_upload_mb=a.max_upload_mb,
              max_images=a.max_images, decode_timeout_s=a.decode_timeout, api_key=a.api_key, threads=a.threads,
              log_level=a.log_level, console=console, max_request_mp=a.max_request_mp,
              max_inflight_mp=a.max_inflight_mp, decode_workers=a.decode_workers, body_timeout_s=a.body_timeout,
              expose_lineage=a.expose_lineage, docs=a.docs, max_texts=a.max_texts, max_text_chars=a.max_text_chars,
              long_texts=a.long_texts)


def cmd_demo(a: argparse.Namespace, console: Console) -> None:
    api.demo(out=a.out, seeds=a.seeds, console=console)


def cmd_tune(c: Any, console: Console) -> None:
    _need(c.source, "--source")
    api.tune(config=c, console=console)
