"""``adapt`` in comparison mode: several methods × seeds on one source → target pair, one table and bar chart.

Every cell is a complete :func:`transferkit.api.adapt_job.adapt` run written to ``out/cells/<method>-seed<k>/``
(its own report and bundle), so an interrupted comparison resumes: a cell whose ``metrics.json`` exists with
the same settings is read back instead of retrained (``restart=True`` discards them). The summary gives,
per method, the target-test accuracy of the checkpoint chosen by the (label-free) selection criterion and of
the last epoch as mean ± sample std over seeds, the **gap closed** ``(method − source_only) / (target_oracle −
source_only)`` when both references ran, and the domain distances after training. ``target_oracle`` is an
upper reference (it trains on target labels) and is marked so in the table, chart and findings.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.adaptation.methods import parse_method
from transferkit.api.adapt_job import adapt
from transferkit.api.runs import RunResult, write_json, write_yaml
from transferkit.errors import ConfigError
from transferkit.options import AdaptConfig, parse_names, parse_seeds
from transferkit.report.adapt import (
    BASELINE,
    REFERENCE,
    adapt_findings,
    summarise_methods,
    write_comparison_plot,
    write_comparison_report,
)
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.terminal import Console

_NOT_SETTINGS = ("out", "progress", "console", "plots", "seed")  # what may differ between a cell and a rerun


def _cell_settings(kwargs: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    return json.loads(json.dumps({**{k: v for k, v in kwargs.items() if k not in _NOT_SETTINGS}, "method": method,
                                  "seed": seed}, default=str))


def _read_cell(cell_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        metrics = json.loads((cell_dir / "metrics.json").read_text())
        stored = json.loads((cell_dir / "settings.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if stored == settings else None


# the options every cell of a comparison shares (each cell sets its method, seed, output and plots itself)
SHARED = ("source", "target", "backbone", "pretrained", "frozen", "bottleneck", "classes", "source_per_class",
          "target_limit", "target_val", "test_limit", "val_fraction", "selection", "oracle_selection", "options",
          "epochs", "batch_size", "lr", "backbone_lr_mult", "weight_decay", "optimizer", "image_size", "resize",
          "strict", "diagnostics", "accelerator", "devices")


def _run_cells(methods: Sequence[str], seeds: Sequence[int], cells_dir: Path, adapt_kwargs: dict[str, Any],
               cell_plots: bool, console: Console) -> tuple[list[dict[str, Any]], int]:
    """Every method × seed cell, in that order: a finished cell whose settings match is read back (resume), the
    others run :func:`adapt` into their own directory. Returns the cells' metrics and how many were reused."""
    cells: list[dict[str, Any]] = []
    reused = 0
    for method in methods:
        for seed in seeds:
            cell_dir = cells_dir / f"{method.replace('+', '_')}-seed{seed}"
            settings = _cell_settings(adapt_kwargs, method, seed)
            metrics = _read_cell(cell_dir, settings)
            if metrics is None:
                console.print(f"[bold]{method}[/bold] · seed {seed}")
                run = adapt(method=method, seed=seed, out=cell_dir, plots=cell_plots, progress=False, overwrite=True,
                            console=console, **adapt_kwargs)
                write_json(cell_dir / "settings.json", settings)
                metrics = run.metrics
            else:
                reused += 1
            cells.append(metrics)
    return cells, reused


def adapt_compare(methods: Sequence[str] = (BASELINE, "dann", "dan", "coral", REFERENCE), seeds: Sequence[int] = (0,),
                  out: str | Path = "runs/adapt-compare", title: str = "", restart: bool = False,
                  cell_plots: bool = False, console: Console | None = None, config: AdaptConfig | None = None,
                  **adapt_kwargs: Any) -> RunResult:
    """Run :func:`~transferkit.api.adapt_job.adapt` for every method × seed; write ``out/report.md``,
    ``out/metrics.json`` (cells + summary) and ``out/adaptation.png``. ``adapt_kwargs`` are ``adapt``'s
    (source, target, backbone, epochs, selection, …), shared by every cell.

    ``config`` (an :class:`~transferkit.options.AdaptConfig`, what ``transferkit adapt`` builds) gives everything
    instead: its comma-separated ``method`` the methods, its ``seeds`` (default: its ``seed``), ``title``,
    ``restart``, ``out``, ``plots`` for every cell, and the shared options."""
    if config is not None:
        c, flat = config, config.flat()
        shared = {k: flat[k] for k in SHARED} | {"options": flat["options"] or {}}
        return adapt_compare(parse_names(c.method),
                             parse_seeds(c.comparison.seeds) if c.comparison.seeds is not None else [c.train.seed],
                             c.run.out, c.comparison.title, c.comparison.restart, c.plots, console, **shared)
    console = terminal.resolve(console)
    adapt_kwargs = {k: v for k, v in adapt_kwargs.items() if k not in ("progress", "plots")}  # set per cell here
    for m in methods:
        parse_method(m)  # fail before any training
    if not seeds:
        raise ConfigError("seeds", "at least one seed", list(seeds))
    out = check_output_dir(out, [adapt_kwargs.get(k) for k in ("source", "target", "backbone")],
                           kind="adapt-compare")  # it writes into out (finished cells are reused)
    open_output_dir(out, "adapt-compare")
    # the configuration before any work, so an error later cannot lose it (each cell is its own run directory)
    write_yaml(out / "config.yaml", {"command": "adapt-compare", "methods": list(methods), "seeds": list(seeds),
                                     **adapt_kwargs})
    cells_dir = out / "cells"
    if restart and cells_dir.exists():
        shutil.rmtree(cells_dir)
    start = time.perf_counter()
    cells, reused = _run_cells(methods, seeds, cells_dir, adapt_kwargs, cell_plots, console)
    summary = summarise_methods(cells)
    notes = adapt_findings(summary)
    title = write_comparison_plot(out, cells, summary, title)
    wall = time.perf_counter() - start
    write_json(out / "metrics.json", {"cells": cells, "summary": summary, "findings": notes, "wall_time_s": wall,
                                      "cells_reused": reused})
    write_comparison_report(out, cells, summary, notes, list(seeds), title, console)
    return RunResult(out, {"cells": cells, "summary": summary, "findings": notes, "wall_time_s": wall})
