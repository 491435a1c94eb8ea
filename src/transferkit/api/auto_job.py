"""``auto``: choose the source and the strategy automatically, within a wall-clock budget.

Three stages, each with its share of the budget, then one test evaluation: **rank sources** by transferability
(≤ 15 %), **cheap probes** of the kept ones (up to 35 % in all), then **strategies** by successive halving
(Jamieson & Talwalkar, 2016; Li et al., 2018, "Hyperband") over the finalists × fine-tuning variants and LoRA. The
plan — budget shares, stage sizes, the labels (with ``labels_per_class=k`` the ``k`` labels per class are the whole
budget: an inner split chooses, the winner is refit on all ``k``; ``k = 1`` means no selection; ``val_per_class``
keeps a separate validation set instead) — is described stage by stage in :mod:`transferkit.tuning.auto_plan`; the
stages that train are :mod:`transferkit.api.auto_stages`.

Every choice uses the validation split only; the chosen model (best validation accuracy over probes and stage-3
runs) is evaluated **once** on the test split at the end. The best bundle so far is copied to ``<out>/bundle``
after every improvement, so an interrupted run (Ctrl-C) keeps it; ``report.md`` explains every decision: the
ranking with its scores, the probes, each configuration's rungs and why it stopped, time per stage.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.auto_stages import NoSelection, Search
from transferkit.api.auto_trials import refit
from transferkit.api.runs import RunResult, write_json, write_yaml
from transferkit.api.use import evaluate
from transferkit.bundle import load_bundle
from transferkit.data.job_task import check_max_length, load_task
from transferkit.data.registry import has_split
from transferkit.options import AutoConfig
from transferkit.report.auto import auto_labels, auto_metrics, print_auto_summary, write_auto_report
from transferkit.report.metrics import did_not_learn, majority_rate
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.terminal import Console
from transferkit.tuning.auto_plan import (
    DEFAULT_SPACE,
    Clock,
    Split,
    budget_split,
    candidate_sources,
    check_search,
    default_candidates,
    parse_budget,
)

__all__ = ["DEFAULT_SPACE", "auto", "default_candidates", "parse_budget"]  # the last three: for benchmarks/


def auto(*args: Any, config: AutoConfig | None = None, console: Console | None = None, **options: Any) -> RunResult:
    """Pick the source and strategy for ``data`` within ``budget`` (``"10m"``, ``"90s"``, seconds) and write ``out``.

    ``auto(data, **options)`` or ``auto(config=AutoConfig(...))``: the options are the flat names of
    :class:`~transferkit.options.AutoConfig`.

    ``candidates`` (comma-separated or a list: pretrained backbone names, run/bundle directories, ``random:…``)
    default to every installed pretrained backbone of the data's modality. ``labels_per_class`` /
    ``val_per_class`` / ``val_fraction`` / ``seed`` define the training and validation images as for
    :func:`~transferkit.api.train.transfer`; ``image_size`` sets the input size of named backbones (e.g. 96 px on a
    CPU), ``max_length`` the token limit of named text backbones. ``keep`` candidates survive stage 1, ``finalists``
    stage 2; stage 3 starts at ``first_epochs`` epochs (default: enough for ``first_steps`` optimiser steps, at least
    2) and keeps the best ``1/eta`` per rung. Returns the run
    (``metrics`` as in ``<out>/metrics.json``; ``model`` the chosen one, or ``None`` when nothing finished).
    """
    c = AutoConfig.given(config, args, options)
    console = terminal.resolve(console)
    d, s = c.data, c.search
    clock = Clock(parse_budget(c.budget))
    check_search(s.keep, s.finalists, s.first_epochs, s.first_steps, s.eta)
    full = load_task(d.data, "train", d.classes, d.strict, workers=d.workers)
    check_max_length(full, c.max_length)
    split, inner_note, val_per_class = budget_split(full, c.labels_per_class, c.val_per_class, c.seed)
    no_selection = split is not None and len(split[1]) == 0  # K = 1: nothing to choose on
    n_test = len(load_task(d.data, "test", d.classes, d.strict, workers=d.workers)) if has_split(d.data, "test") else 0
    cands = candidate_sources(c.candidates, full.modality)
    out = _fresh_output(c.out, [*cands, d.data], c.overwrite)
    write_yaml(out / "config.yaml", {**c.record("auto"), "candidates": cands, "val_per_class": val_per_class,
                                     "out": str(out)})
    common = {"data": d.data, "classes": d.classes, "labels_per_class": c.labels_per_class,
              "val_per_class": val_per_class, "val_fraction": c.val_fraction, "seed": c.seed, "strict": d.strict,
              "progress": False, "evaluate_test": False, **({"split_indices": split} if split is not None else {})}
    search = Search(out, clock, console, full.channels, common, {"image_size": c.image_size,
                                                                  "max_length": c.max_length})
    try:
        kept = search.rank(cands, full, s.keep)
        if no_selection:
            raise NoSelection(kept[0])
        search.probe(kept)
        search.halve(s.finalists, s.first_epochs, s.first_steps, s.eta, full, n_test, split)
        if split is not None and search.state["best"] is not None:  # the chosen configuration, refit on all K
            refit(search.state, out, clock, common, search.sizes, full.channels, c.labels_per_class, search.quiet,
                  search.say)
    except NoSelection as top:  # K = 1: the top-ranked source's default fine-tune on the K labels, no selection
        search.default_finetune(top.candidate, c.labels_per_class)
    except KeyboardInterrupt:
        search.state["interrupted"] = True
        console.print("[yellow]interrupted[/]: keeping the best model so far")
    metrics = _final_metrics(search, c, full.num_classes, split, inner_note, val_per_class, no_selection, out)
    print_auto_summary(console, metrics, out)
    if search.state["interrupted"]:
        raise KeyboardInterrupt
    best = search.state["best"]
    model = load_bundle(out / "bundle")[0] if best is not None else None
    return RunResult(out, metrics, model, {"chosen": best})


def _fresh_output(out: str | Path, inputs: list[Any], overwrite: bool) -> Path:
    """``out``, empty and marked as an ``auto`` run (an earlier one replaced only with ``overwrite``)."""
    out = check_output_dir(out, inputs)  # a folder that is no transferkit output: never, even with overwrite
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"out={out} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(out)
    open_output_dir(out, "auto")
    return out


def _final_metrics(search: Search, c: AutoConfig, n_classes: int, split: Split | None,
                   inner_note: str, val_per_class: int | None, no_selection: bool, out: Path) -> dict[str, Any]:
    """The chosen model's one test evaluation, then metrics.json and report.md."""
    state, d = search.state, c.data
    t0 = time.monotonic()
    test = None
    if state["best"] is not None and not state["interrupted"] and has_split(d.data, "test"):
        test = evaluate(out / "bundle", d.data, d.classes, split="test", strict=d.strict, console=search.quiet)
    state["stages"]["test"] = time.monotonic() - t0
    metrics = auto_metrics(state, test, search.clock.budget, search.clock.elapsed())
    metrics["labels"] = auto_labels(c.labels_per_class, val_per_class, c.val_fraction, n_classes, split, inner_note,
                                    state, no_selection)
    if test is not None and metrics["test"] is not None:
        metrics["test"]["did_not_learn"] = did_not_learn(test["accuracy"], test["n"],
                                                         majority_rate(test["confusion_matrix"]))
    write_json(out / "metrics.json", metrics)
    write_auto_report(out / "report.md", metrics)
    return metrics
