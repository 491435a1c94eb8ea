"""What ``compare`` and ``curve`` share: from a :class:`~transferkit.options.GridConfig` to the finished cells.

Both jobs are the same paired grid (:mod:`transferkit.api.grid`) — strategy variants × labelled budgets × seeds on
one source → target task, every cell scored once on the test split — and differ only in their report (a bar chart
of mean ± std, or a label-efficiency curve). :func:`run_grid_job` checks the configuration, loads the source and the
task, fixes the settings a resume must match and trains the missing cells; the jobs turn its :class:`GridRun` into
their report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.api.grid import run_grid
from transferkit.api.runs import make_strategy, require_one_process, set_threads
from transferkit.api.variants import Variant, parse_variants
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig, TrainOptions, check_budget
from transferkit.data.grid_budgets import check_budgets
from transferkit.data.job_task import head_init_mapping, load_task
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class
from transferkit.errors import ConfigError
from transferkit.options import GridConfig, parse_labels_per_class, parse_seeds, parse_specs
from transferkit.report.grid import grid_intro
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.source_loading import check_channels, load_source
from transferkit.terminal import Console
from transferkit.tuning.grid_plan import Grid, GridResult, grid_settings, train_options


@dataclass
class GridRun:
    """A finished grid: its configuration (budgets and seeds parsed), what was loaded, and the cells."""

    config: GridConfig
    variants: list[Variant]
    budgets: list[int | None]
    seeds: list[int]
    model: Backbone
    meta: dict[str, Any]
    full: Any
    test_set: Any
    settings: dict[str, Any]
    out: Path
    done: GridResult
    start: float

    @property
    def title(self) -> str:
        """The report's title: the configured one, else "source → data classes"."""
        task, source = self.config.task, self.meta.get("source", "source")
        return self.config.grid.title or f"{source} → {task.data} {task.classes or ''}".strip()

    def intro(self, design: str, axis_note: str = "") -> list[str]:
        """The report's first paragraph (source, target, seeds, budget rule, scoring) and its cell count."""
        return grid_intro(self.config, self.meta.get("source"), self.model.input_spec, self.full.classes, self.seeds,
                          self.done, design, axis_note)


def run_grid_job(kind: str, cfg: GridConfig, console: Console, artefacts: tuple[str, ...]) -> GridRun:
    """Check ``cfg`` (before anything loads), load the source and the task, and train every cell of the grid not yet
    finished in ``cfg.out`` (resumable; see :func:`transferkit.api.grid.run_grid`)."""
    start = time.perf_counter()
    src, task, grid, train = cfg.source, cfg.task, cfg.grid, cfg.train
    specs = parse_specs(grid.strategies)
    variants = parse_variants(specs)  # validates every variant before anything is loaded
    budgets, seeds = parse_labels_per_class(grid.labels_per_class), parse_seeds(grid.seeds)
    if train.seed != TrainOptions.seed:
        raise ConfigError("seed", f"unset in {kind}: every cell takes its seed from seeds", train.seed,
                          f"use seeds={[train.seed]}")
    check_budget(train.epochs, train.steps)  # --steps or --epochs (neither: each strategy's recipe)
    shared = train_options(cfg)
    require_one_process(TrainConfig(**shared), kind)  # fail fast (and every value checked)
    record = cfg.record(kind)
    del record["restart"]  # a rerun with --config out/config.yaml resumes: it must not delete the cells
    record.update(labels_per_class=budgets, seeds=seeds, strategies=specs)
    if isinstance(src.source, Backbone):
        record["source"] = src.source.arch
    built = {v.label: make_strategy(v.strategy, options=v.options) for v in variants}
    check_output_dir(cfg.out, [src.source, task.data], kind=kind)  # before anything loads; it writes into out
    set_threads()
    model, meta = load_source(src.source, src.image_size, src.weights, src.max_length)
    full = load_task(task.data, "train", task.classes, task.strict, workers=task.workers)
    check_channels(full, model, task.convert_channels, f"data={task.data}")
    if not has_split(task.data, "test"):
        raise ValueError(f"{kind} needs a test split for the final scores; {task.data} has none")
    test_set = load_task(task.data, "test", task.classes, task.strict, workers=task.workers)
    check_budgets(full, budgets, task.val_per_class)  # every budget fits, before the first cell trains
    if grid.test_per_class:
        test_set = test_set.subset(k_per_class(test_set, grid.test_per_class, seed=0, option="test_per_class"),
                                   test_set.name + "[subset]")
    settings = grid_settings(kind, cfg, model, full, test_set, shared)
    mapping, source_classes = head_init_mapping(full.classes, meta, cfg.head_init)
    plan = Grid(variants, built, budgets, seeds, model, full, test_set, shared, task.val_per_class,
                task.val_fraction, mapping, source_classes)
    out = open_output_dir(cfg.out, kind)
    done = run_grid(plan, out, kind, settings, record, artefacts, grid.restart, console,
                    source=str(meta.get("source")), data=task.data, classes=task.classes, progress=train.progress)
    return GridRun(cfg, variants, budgets, seeds, model, meta, full, test_set, settings, out, done, start)

