"""One function per CLI command: turn parsed flags into one API call and print the result."""

from __future__ import annotations

import argparse
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from transferkit import api
from transferkit.api import listing
from transferkit.api.use import PREVIEW_ROWS, writes_to_stdout
from transferkit.cli.tables import predictions_table
from transferkit.options import parse_seeds


def _devices(value: str | int) -> int | str:
    return int(value) if str(value).isdigit() else value


def _fault_kwargs(a: argparse.Namespace) -> dict:
    return {"checkpoint_every": a.checkpoint_every, "overwrite": a.overwrite}


def _resumed(a: argparse.Namespace, console: Console) -> bool:
    """``--resume RUN_DIR``: continue that run with its recorded options (and nothing else)."""
    if not getattr(a, "resume", None):
        return False
    api.resume(a.resume, progress=a.progress, console=console)
    return True


def cmd_resume(a: argparse.Namespace, console: Console) -> None:
    _need(a.run_dir, "RUN_DIR")
    api.resume(a.run_dir, progress=a.progress, console=console)


def parse_options(values: list[str] | dict | None) -> dict:
    """``["bn=frozen", "reg_alpha=0.01"]`` (flags) or a mapping (YAML) → typed options (YAML scalars)."""
    from transferkit.options import parse_key_values

    if values is None or isinstance(values, dict):
        return dict(values or {})
    return parse_key_values(tuple(values))


def _need(value: object, flag: str) -> None:
    if value in (None, "", []):
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


def cmd_evaluate(a: argparse.Namespace, console: Console) -> None:
    _need(a.model, "MODEL (run or bundle directory)")
    api.evaluate(a.model, a.data, a.classes, a.split, out=a.out, strict=a.strict,
                 convert_channels=a.convert_channels, console=console)


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


def cmd_adapt(a: argparse.Namespace, console: Console) -> int:
    if a.list_methods:
        table = Table(title="adaptation methods (use --method NAME, combine with '+')")
        for col in ("name", "what it does", "options", "paper"):
            table.add_column(col)
        for row in listing.adaptation_method_rows():
            table.add_row(row["name"], row["summary"], ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-",
                          row["paper"] or "-")
        console.print(table)
        return 0
    if _resumed(a, console):
        return 0
    methods = a.method if isinstance(a.method, list) else [m.strip() for m in str(a.method).split(",") if m.strip()]
    kwargs = {"source": a.source, "target": a.target, "backbone": a.backbone, "pretrained": a.pretrained,
              "frozen": a.frozen, "bottleneck": a.bottleneck, "classes": a.classes,
              "source_per_class": a.source_per_class, "target_limit": a.target_limit, "target_val": a.target_val,
              "test_limit": a.test_limit, "val_fraction": a.val_fraction, "selection": a.selection,
              "oracle_selection": a.oracle_selection, "options": parse_options(a.options), "epochs": a.epochs,
              "batch_size": a.batch_size, "lr": a.lr, "backbone_lr_mult": a.backbone_lr_mult,
              "weight_decay": a.weight_decay, "optimizer": a.optimizer, "image_size": a.image_size,
              "resize": a.resize, "strict": a.strict, "diagnostics": a.diagnostics, "accelerator": a.accelerator,
              "devices": _devices(a.devices)}
    if len(methods) > 1 or a.seeds is not None:
        seeds = parse_seeds(a.seeds) if a.seeds is not None else [a.seed]
        result = api.adapt_compare(methods, seeds, out=a.out, title=a.title, restart=a.restart,
                                   cell_plots=a.plots, console=console, **kwargs)
        diverged = any(c.get("diverged") for c in result.metrics["cells"])
    else:
        result = api.adapt(method=methods[0], seed=a.seed, out=a.out, plots=a.plots, progress=a.progress,
                           console=console, **_fault_kwargs(a), **kwargs)
        diverged = bool(result.metrics.get("diverged"))
    return 3 if diverged else 0  # a run that diverged is written (last good epoch kept) but signalled


def cmd_distill(c: Any, console: Console) -> None:
    _need(c.teacher, "--teacher")
    api.distill(config=c, console=console)


def cmd_fuse(a: argparse.Namespace, console: Console) -> None:
    members = a.members if isinstance(a.members, list) else [a.members]
    methods = a.methods if isinstance(a.methods, list) else [m.strip() for m in str(a.methods).split(",") if m.strip()]
    api.fuse(members, a.data, a.classes, methods=methods, fit_per_class=a.fit_per_class, fit_on=a.fit_on,
             seed=a.seed, out=a.out, gate_epochs=a.gate_epochs, strict=a.strict, console=console)


def cmd_select(a: argparse.Namespace, console: Console) -> None:
    candidates = a.candidates if isinstance(a.candidates, list) else [a.candidates]
    _need(candidates, "CANDIDATE (one or more sources)")
    scores = a.scores if isinstance(a.scores, list) else [s.strip() for s in str(a.scores).split(",") if s.strip()]
    api.select(candidates, a.data, a.classes, labels_per_class=a.labels_per_class, scores=scores, verify=a.verify,
               verify_all=a.verify_all, seed=a.seed, out=a.out, image_size=a.image_size, epochs=a.epochs,
               patience=a.patience, batch_size=a.batch_size, lr=a.lr, val_per_class=a.val_per_class,
               val_fraction=a.val_fraction, similarity_data=a.similarity_data,
               similarity_classes=a.similarity_classes, similarity_samples=a.similarity_samples, strict=a.strict,
               convert_channels=a.convert_channels, max_length=a.max_length, console=console)


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


def cmd_auto(a: argparse.Namespace, console: Console) -> None:
    api.auto(a.data, candidates=a.candidates, budget=a.budget, classes=a.classes, labels_per_class=a.labels_per_class,
             val_per_class=a.val_per_class, val_fraction=a.val_fraction, seed=a.seed, out=a.out,
             image_size=a.image_size, max_length=a.max_length, keep=a.keep, finalists=a.finalists,
             first_epochs=a.first_epochs, first_steps=a.first_steps, eta=a.eta,
             strict=a.strict, overwrite=a.overwrite, console=console)


def cmd_merge(a: argparse.Namespace, console: Console) -> None:
    _need(a.model, "MODEL (LoRA run or bundle directory)")
    _need(a.out, "--out")
    res = api.merge(a.model, a.out)
    console.print(f"merged bundle: {res.run_dir}")


def cmd_export(a: argparse.Namespace, console: Console) -> None:
    _need(a.model, "MODEL (run or bundle directory)")
    api.export(a.model, format=a.format, out=a.out, opset=a.opset, console=console, overwrite=a.overwrite)


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


def _name_values(values: list[str] | str | dict | None, flag: str, example: str, typed: bool) -> dict:
    """``["NAME=VALUE", …]`` (flags) or a mapping (YAML) → ``{name: value}``; ``typed`` reads values as YAML."""
    if values is None or isinstance(values, dict):
        return dict(values or {})
    out: dict = {}
    for item in [values] if isinstance(values, str) else values:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{flag} '{item}': expected NAME=VALUE, e.g. {flag} {example}")
        if name.strip() in out:
            raise ValueError(f"{flag} {name.strip()} is given twice")
        out[name.strip()] = yaml.safe_load(value) if typed else value.strip()
    return out


def cmd_tune(a: argparse.Namespace, console: Console) -> None:
    from transferkit.api.tune_job import load_space_file

    _need(a.source, "--source")
    space = {**(load_space_file(a.space) if a.space else {}),
             **_name_values(a.param, "--param", "lr=loguniform:1e-4:1e-1", typed=False)}
    pruner = None if a.pruning else "none"
    api.tune(a.source, a.data, a.classes, labels_per_class=a.labels_per_class, strategy=a.strategy,
             space=space or None, metric=a.metric, n_trials=a.trials, timeout=a.timeout, storage=a.storage,
             study_name=a.study_name, out=a.out, epochs=a.epochs, seed=a.seed, options=parse_options(a.options),
             fixed=_name_values(a.fixed, "--fixed", "schedule=cosine", typed=True), val_per_class=a.val_per_class,
             val_fraction=a.val_fraction, image_size=a.image_size, weights=a.weights, strict=a.strict,
             convert_channels=a.convert_channels, class_map=a.class_map, accelerator=a.accelerator,
             pruner_startup_trials=a.pruner_startup_trials, pruner_warmup_epochs=a.pruner_warmup_epochs,
             pruner=pruner, progress=a.progress, console=console)
