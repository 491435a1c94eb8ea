"""``auto``: choose the source and the strategy automatically, within a wall-clock budget.

Three stages, each with its share of the budget, then one test evaluation:

1. **rank sources** (≤ 15 % of the budget) — :func:`~transferkit.api.select_job.select` scores every candidate
   (default: every built-in backbone of the data's modality whose pretrained weights are installed) with
   transferability scores (LogME first) on the labelled training images, frozen; the top ``keep`` go on;
2. **cheap probes** (up to 35 % of the budget in all) — a linear probe on cached features for each kept candidate,
   scored on the validation split; the best ``finalists`` candidates go on;
3. **strategies** (the rest, minus a small reserve) — successive halving (Jamieson & Talwalkar, 2016, "Non-stochastic
   Best Arm Identification and Hyperparameter Optimization"; Li et al., 2018, "Hyperband") over the finalists ×
   the search space (fine-tuning and its toolbox variants, LoRA): every configuration trains at least
   ``first_steps`` optimiser steps (``first_epochs`` epochs: at 10 labels per class an epoch is one step, and two
   steps rank configurations by how fast they move, not where they end), the best third trains three times as long,
   and so on while the budget lasts. A run's cost is predicted from its seconds per epoch; a rung that does not fit
   is shortened to what does (fewer epochs, then fewer configurations, never shorter than the rung before), so the
   budget goes to the most promising configurations; the last one standing trains with early stopping (patience
   ``FINAL_PATIENCE`` epochs) and ends the search once its validation accuracy stops improving. A deadline
   callback stops any run at the stage's end (its best validation epoch is kept).

Labels (issue 26): with ``labels_per_class=k`` the ``k`` labels per class are the **whole budget**. Auto draws
them once and splits them (:func:`~transferkit.data.splits.inner_split`: about a fifth of each class, at least one,
never all) into a *fit* part that trains every probe and trial and a *selection* part that every stage-2/3 choice is
scored on; stage 1 scores the sources on all ``k``. The chosen configuration is then **refit on all ``k``** (same
source, strategy, options and epochs — the epoch its selection run kept), and that refit model is the bundle and the
one test evaluation. If the refit does not fit in what is left of the budget, the selection-run model is kept and
the report says so. ``k = 1`` leaves nothing to select on: auto then ranks the sources (stage 1) and trains the
default fine-tune of the top-ranked one on the ``k`` labels — fixed default, no selection, recorded as such.
``val_per_class=v`` instead keeps a separate validation set of ``v`` other images per class (a budget of ``k + v``,
stated; no refit). metrics.json's ``labels`` and report.md say which labels trained the final model.

Every choice uses the validation split only; the chosen model (best validation accuracy over probes and stage-3
runs) is evaluated **once** on the test split at the end. The best bundle so far is copied to ``<out>/bundle``
after every improvement, so an interrupted run (Ctrl-C) keeps it; ``report.md`` explains every decision: the
ranking with its scores, the probes, each configuration's rungs and why it stopped, time per stage.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from rich.console import Console

from transferkit import atomic
from transferkit.api.runs import RunResult, check_max_length, load_task, write_json, write_yaml
from transferkit.api.select_job import RANDOM_PREFIX, load_candidate, select
from transferkit.api.train import transfer
from transferkit.api.use import evaluate
from transferkit.backbones.features import predict_logits
from transferkit.backbones.registry import list_backbones
from transferkit.bundle import load_bundle
from transferkit.data.base import AnyDataset
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import inner_split, k_per_class, labels_record
from transferkit.errors import ConfigError
from transferkit.options import AutoConfig
from transferkit.report.auto import write_auto_report
from transferkit.report.metrics import did_not_learn, majority_rate, num
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.strategies.base import get_strategy
from transferkit.tuning.halving import Config, successive_halving

RANK_SHARE, PROBE_SHARE = 0.15, 0.35  # cumulative shares of the budget at the end of stages 1 and 2
DEFAULT_SPACE: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("finetune", "finetune", {}),
    ("finetune lr_decay=0.5", "finetune", {"lr_decay": 0.5}),
    ("finetune l2sp", "finetune", {"regularizer": "l2sp"}),
    ("finetune two_phase", "finetune", {"preset": "two_phase", "head_epochs": 1}),
    ("lora", "lora", {}),
)
SCORING_IMAGES = 1000  # stage 1 scores at most about this many labelled training examples
FINAL_PATIENCE = 10  # epochs without a better validation accuracy that end the last configuration standing


def parse_budget(value: str | float | int) -> float:
    """``"10m"``, ``"90s"``, ``"1.5h"`` or a number of seconds → seconds (> 0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", str(value))
        if not m:
            raise ConfigError("budget", "a duration such as 90s, 10m or 1.5h", value)
        seconds = float(m.group(1)) * {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if not seconds > 0:
        raise ConfigError("budget", "a positive duration", value)
    return seconds


def default_candidates(modality: str) -> list[str]:
    """Every registered backbone of ``modality`` whose pretrained weights are installed here."""
    out = []
    for info in list_backbones():
        if info.modality == modality and info.weights_available():
            out.append(info.name)
    return out


class Deadline(Callback):
    """Stop training at ``deadline`` (``time.monotonic()`` seconds); the best validation epoch so far is kept."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.hit = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if time.monotonic() >= self.deadline:
            self.hit = True
            trainer.should_stop = True


class _Clock:
    def __init__(self, budget: float) -> None:
        self.start = time.monotonic()
        self.budget = budget

    def at(self, share: float) -> float:
        return self.start + self.budget * share

    def left(self, until: float | None = None) -> float:
        return (self.start + self.budget if until is None else until) - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


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
    console = console or Console()
    d, s = c.data, c.search
    budget_s = parse_budget(c.budget)
    clock = _Clock(budget_s)
    _check_search(s.keep, s.finalists, s.first_epochs, s.first_steps, s.eta)
    full = load_task(d.data, "train", d.classes, d.strict)
    check_max_length(full, c.max_length)
    split, inner_note, val_per_class = _budget_split(full, c.labels_per_class, c.val_per_class, c.seed)
    no_selection = split is not None and len(split[1]) == 0  # K = 1: nothing to choose on
    n_test = len(load_task(d.data, "test", d.classes, d.strict)) if has_split(d.data, "test") else 0
    cands = _candidates(c.candidates, full.modality)
    out = _fresh_output(c.out, [*cands, d.data], c.overwrite)
    write_yaml(out / "config.yaml", {**c.record("auto"), "candidates": cands, "val_per_class": val_per_class,
                                     "out": str(out)})
    common = {"data": d.data, "classes": d.classes, "labels_per_class": c.labels_per_class,
              "val_per_class": val_per_class, "val_fraction": c.val_fraction, "seed": c.seed, "strict": d.strict,
              "progress": False, "evaluate_test": False, **({"split_indices": split} if split is not None else {})}
    search = _Search(out, clock, console, full.channels, common, {"image_size": c.image_size,
                                                                   "max_length": c.max_length})
    try:
        kept = search.rank(cands, full, s.keep)
        if no_selection:
            raise _NoSelection(kept[0])
        search.probe(kept)
        search.halve(s.finalists, s.first_epochs, s.first_steps, s.eta, full, n_test, split)
        if split is not None and search.state["best"] is not None:  # the chosen configuration, refit on all K
            _refit(search.state, out, clock, common, search.sizes, full.channels, c.labels_per_class, search.quiet,
                   search.say)
    except _NoSelection as top:  # K = 1: the top-ranked source's default fine-tune on the K labels, no selection
        search.default_finetune(top.candidate, c.labels_per_class)
    except KeyboardInterrupt:
        search.state["interrupted"] = True
        console.print("[yellow]interrupted[/]: keeping the best model so far")
    metrics = _final_metrics(search, c, full.num_classes, split, inner_note, val_per_class, no_selection, out)
    _print_summary(console, metrics, out)
    if search.state["interrupted"]:
        raise KeyboardInterrupt
    best = search.state["best"]
    model = load_bundle(out / "bundle")[0] if best is not None else None
    return RunResult(out, metrics, model, {"chosen": best})


def _candidates(candidates: str | tuple[str, ...] | list[str] | None, modality: str) -> list[str]:
    """The candidate sources: as given (comma-separated or a list), else every installed pretrained backbone of the
    data's modality."""
    cands = ([x.strip() for x in candidates.split(",") if x.strip()] if isinstance(candidates, str)
             else list(candidates or []) or default_candidates(modality))
    if not cands:
        raise ValueError(f"auto: no candidate sources: no pretrained {modality} backbone is installed here "
                         "('transferkit backbones' shows which) and --candidates was not given")
    return cands


def _fresh_output(out: str | Path, inputs: list[Any], overwrite: bool) -> Path:
    """``out``, empty and marked as an ``auto`` run (an earlier one replaced only with ``overwrite``)."""
    out = check_output_dir(out, inputs)  # a folder that is no transferkit output: never, even with overwrite
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    open_output_dir(out, "auto")
    return out


def _budget_split(full: AnyDataset, k: int | None, v: int | None, seed: int
                  ) -> tuple[tuple[np.ndarray, np.ndarray] | None, str, int | None]:
    """``(inner split, its note, V)``: with K and no V the K labels per class are the whole budget, split inside
    into a fit part and a selection part; else the validation set per class V (:func:`validation_per_class`)."""
    if k is not None and v is None:
        pool = k_per_class(full, k, seed)  # names a class holding fewer than K
        fit_rows, sel_rows, inner_note = inner_split(full.labels[pool], seed)
        return (pool[fit_rows], pool[sel_rows]), inner_note, None
    v = validation_per_class(k, v)
    _check_validation_possible(full, k, v)
    return None, "", v


def _final_metrics(search: _Search, c: AutoConfig, n_classes: int, split: tuple[np.ndarray, np.ndarray] | None,
                   inner_note: str, val_per_class: int | None, no_selection: bool, out: Path) -> dict[str, Any]:
    """The chosen model's one test evaluation, then metrics.json and report.md."""
    state, d = search.state, c.data
    t0 = time.monotonic()
    test = None
    if state["best"] is not None and not state["interrupted"] and has_split(d.data, "test"):
        test = evaluate(out / "bundle", d.data, d.classes, split="test", strict=d.strict, console=search.quiet)
    state["stages"]["test"] = time.monotonic() - t0
    metrics = _metrics(state, test, search.clock.budget, search.clock.elapsed())
    metrics["labels"] = _labels(c.labels_per_class, val_per_class, c.val_fraction, n_classes, split, inner_note,
                                state, no_selection)
    if test is not None and metrics["test"] is not None:
        metrics["test"]["did_not_learn"] = did_not_learn(test["accuracy"], test["n"],
                                                         majority_rate(test["confusion_matrix"]))
    write_json(out / "metrics.json", metrics)
    write_auto_report(out / "report.md", metrics)
    return metrics


def _check_search(keep: int, finalists: int, first_epochs: int | None, first_steps: int, eta: int) -> None:
    for name, value, low in (("keep", keep, 1), ("finalists", finalists, 1), ("first_epochs", first_epochs, 2),
                             ("first_steps", first_steps, 1), ("eta", eta, 2)):
        if value is None and name == "first_epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"a whole number ≥ {low}", value)


class _Search:
    """The three stages of one ``auto`` run and what they found so far (``state``: ranking, probes, configurations,
    the best model — whose bundle is kept at ``<out>/bundle`` as soon as it leads)."""

    def __init__(self, out: Path, clock: _Clock, console: Console, channels: int, common: dict[str, Any],
                 sizes: dict[str, int | None]) -> None:
        self.out, self.clock, self.console, self.channels = out, clock, console, channels
        self.common = common
        self.sizes = sizes  # image_size / max_length, for named backbones only (_named_only)
        self.seed = common["seed"]
        self.quiet = Console(quiet=True)
        self.state: dict[str, Any] = {"stages": {}, "probes": [], "configs": [], "best": None, "interrupted": False,
                                      "ranking": [], "refit": None}

    def say(self, stage: str, text: str) -> None:
        self.console.print(f"[bold]{stage}[/] {text}  [dim]({max(self.clock.left(), 0):.0f} s of "
                           f"{self.clock.budget:.0f} s left)[/]")

    def consider(self, name: str, run_dir: Path, val_acc: float, detail: dict[str, Any]) -> None:
        best = self.state["best"]
        if best is None or val_acc > best["val_accuracy"]:
            self.state["best"] = {"name": name, "run_dir": str(run_dir), "val_accuracy": val_acc, **detail}
            self.state["best_run"] = json.loads((run_dir / "metrics.json").read_text())  # read once: the refit's plan
            with atomic.staged_dir(self.out / "bundle") as tmp:
                shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)

    def rank(self, cands: list[str], full: Any, keep: int) -> list[str]:
        """Stage 1: rank the candidates by transferability; the ``keep`` best go on."""
        t0 = time.monotonic()
        c = self.common
        self.say("stage 1/3", f"ranking {len(cands)} candidate(s) by transferability scores")
        score_k = c["labels_per_class"] or max(1, min(SCORING_IMAGES // max(full.num_classes, 1),
                                                      int(full.class_counts().min()) // 2))
        sel = select(cands, c["data"], c["classes"], labels_per_class=score_k, val_per_class=c["val_per_class"],
                     val_fraction=c["val_fraction"], seed=self.seed, out=self.out / "stage1_rank",
                     image_size=self.sizes["image_size"], max_length=self.sizes["max_length"], strict=c["strict"],
                     console=self.quiet)
        ranked = sel.metrics["candidates"]
        self.state["ranking"] = [{"candidate": e["candidate"], "rank": e["rank"], "scores": e["scores"],
                                  "kept": i < keep} for i, e in enumerate(ranked)]
        self.state["skipped"] = sel.metrics["skipped"]
        kept = [e["candidate"] for e in ranked[:keep]]
        self.state["stages"]["rank"] = time.monotonic() - t0
        self.say("stage 1/3", f"kept {kept} (by {sel.metrics['ranked_by']})")
        return kept

    def probe(self, kept: list[str]) -> None:
        """Stage 2: a linear probe of every kept candidate, within the stage's share of the budget."""
        t0, clock, state = time.monotonic(), self.clock, self.state
        for cand in kept:
            if clock.left(clock.at(PROBE_SHARE)) <= 0 and state["probes"]:
                state["probes"].append({"candidate": cand, "stopped": "stage 2's share of the budget was spent"})
                continue
            run_dir = self.out / "stage2_probes" / _safe(cand)
            res = transfer(_source(cand, self.sizes["image_size"], self.seed, self.channels), strategy="linear_probe",
                           out=run_dir, **_named_only(cand, self.sizes),
                           callbacks=[Deadline(clock.at(PROBE_SHARE + 0.05))], console=self.quiet, **self.common)
            _drop_checkpoints(run_dir)
            val = res.metrics["validation"]["accuracy"]
            state["probes"].append({"candidate": cand, "val_accuracy": val, "time_s": res.metrics["total_time_s"],
                                    "n_train": res.metrics["n_train"], "run_dir": str(run_dir)})
            self.consider(f"{cand} · linear_probe", run_dir, val, {"source": cand, "strategy": "linear_probe",
                                                                     "options": {}, "stage": 2})
            self.say("stage 2/3", f"linear probe of {cand}: validation accuracy {val:.4f}")
        state["stages"]["probe"] = time.monotonic() - t0

    def halve(self, finalists: int, first_epochs: int | None, first_steps: int, eta: int, full: Any, n_test: int,
              split: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Stage 3: successive halving over the strategies of the ``finalists`` best-probed candidates, ending early
        enough for the test evaluation (and the refit on all K) of the best model so far."""
        t0, state, budget_s = time.monotonic(), self.state, self.clock.budget
        probed = sorted((p for p in state["probes"] if "val_accuracy" in p), key=lambda p: -p["val_accuracy"])
        finals = [p["candidate"] for p in probed[:finalists]]
        configs = [Config(c, label, strat, opts) for c in finals for label, strat, opts in DEFAULT_SPACE]
        state["configs"] = configs
        n_train = max((p["n_train"] for p in probed), default=0)
        state["first_rung"] = {**_first_rung(configs, n_train, first_epochs, first_steps), "eta": eta}
        speeds = _inference_cost(finals, full, self.sizes, self.seed) if n_test else {}

        def reserve() -> float:  # for the test evaluation of the best model so far (its speed, measured above)
            best = state["best"] or {}
            fixed, per_item = speeds.get(best.get("source"), max(speeds.values(), default=(0.0, 0.0)))
            # x1.5: adapters (LoRA) cost extra at inference; one factor for every strategy keeps the stage's end
            # still while the best configuration changes, so rungs fitted to it stay fitted
            state["test_predicted_s"] = 3.0 + 1.5 * (fixed + n_test * per_item)
            state["test_reserve_s"] = max(0.04 * budget_s, state["test_predicted_s"])
            return state["test_reserve_s"] + (_refit_cost(state, split) if split is not None else 0.0)

        _halving(configs, state["first_rung"]["epochs"], eta, lambda: self.clock.start + budget_s - reserve(),
                 self.out, self.common, self.sizes, self.channels, self.quiet, self.say, self.consider)
        state["stages"]["strategies"] = time.monotonic() - t0

    def default_finetune(self, candidate: str, labels_per_class: int | None) -> None:
        """K = 1: the top-ranked source's default fine-tune on the K labels, no selection."""
        run_dir = self.out / "final"
        self.say("no selection", f"{labels_per_class} label per class leaves nothing to choose on: the default "
                                 f"fine-tune of the top-ranked source {candidate}")
        transfer(_source(candidate, self.sizes["image_size"], self.seed, self.channels), strategy="finetune",
                 out=run_dir, console=self.quiet, **_named_only(candidate, self.sizes),
                 **{k: v for k, v in self.common.items() if k != "split_indices"})
        _drop_checkpoints(run_dir)
        self.state["best"] = {"name": f"{candidate} · finetune", "run_dir": str(run_dir), "val_accuracy": None,
                              "source": candidate, "strategy": "finetune", "options": {}, "stage": "default"}
        with atomic.staged_dir(self.out / "bundle") as tmp:
            shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)


class _NoSelection(Exception):
    """K = 1: stage 1 ranked the sources; nothing is left to choose on (carries the top-ranked candidate)."""

    def __init__(self, candidate: str) -> None:
        super().__init__(candidate)
        self.candidate = candidate


def _refit_cost(state: dict[str, Any], split: tuple[np.ndarray, np.ndarray]) -> float:
    """Predicted seconds to refit the best configuration so far on all K labels: its selection run's training time,
    scaled by the images (fit part → all K) and the epochs the refit trains (the kept epoch, not all that ran),
    plus that run's fixed cost (loading, extraction, writing) once."""
    m = state.get("best_run")
    if not m:
        return 0.0
    fit = m.get("fit", {})
    scale = (len(split[0]) + len(split[1])) / max(len(split[0]), 1)
    epochs = _refit_epochs(m)
    per_epoch = m.get("train_time_s", 0.0) / max(fit.get("epochs_run") or 1, 1)
    train = m.get("train_time_s", 0.0) if epochs is None else per_epoch * epochs
    return scale * train + max(m.get("total_time_s", 0.0) - m.get("train_time_s", 0.0), 0.0)


def _refit_epochs(m: dict[str, Any]) -> int | None:
    """Epochs the refit trains: the epoch the selection run kept (best validation epoch + 1); ``None`` for a solved
    probe (no epochs: the refit solves again, C by cross-validation on all K)."""
    fit = m.get("fit", {})
    if fit.get("solver") is not None or not fit.get("epochs_run"):
        return None
    return int(fit.get("best_epoch", fit["epochs_run"] - 1)) + 1


def _refit(state: dict[str, Any], out: Path, clock: _Clock, common: dict[str, Any], sizes: dict[str, int | None],
           channels: int, k: int, quiet: Console, say: Any) -> None:
    """Refit the chosen configuration on all ``k`` labels per class when the time left allows (issue 26), and make
    it the bundle; otherwise keep the selection-run model. ``state["refit"]`` records what happened."""
    best = state["best"]
    epochs = _refit_epochs(state["best_run"])
    split = common["split_indices"]
    need = _refit_cost(state, split)
    # the test evaluation's predicted cost, not its reserve: the reserve's floor (4 % of the budget) only keeps the
    # halving's deadline still, and a refit of seconds must not be skipped for it (seen: a 1-s probe refit skipped
    # with 28 s of the budget left)
    left = clock.left() - state.get("test_predicted_s", state.get("test_reserve_s", 0.0))
    record: dict[str, Any] = {"configuration": best["name"], "epochs": epochs, "predicted_s": need,
                              "n_train": len(split[0]) + len(split[1])}
    if need > left:
        state["refit"] = {**record, "done": False,
                          "why": f"the refit needs ≈{need:.0f} s and {max(left, 0):.0f} s were left: the model of its "
                                 f"selection run (trained on the fit part, {len(split[0])} images) is kept"}
        return
    run_dir = out / "final_refit"
    t0 = time.monotonic()
    args = {key: v for key, v in common.items() if key != "split_indices"}
    transfer(_source(best["source"], sizes["image_size"], common["seed"], channels), strategy=best["strategy"],
             options=dict(best.get("options") or {}), epochs=epochs, out=run_dir, console=quiet,
             **_named_only(best["source"], sizes), **args)
    _drop_checkpoints(run_dir)
    with atomic.staged_dir(out / "bundle") as tmp:
        shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)
    state["refit"] = {**record, "done": True, "run_dir": str(run_dir), "wall_s": time.monotonic() - t0}
    say("refit", f"{best['name']} refit on all {k} labels per class"
                 + (f" for {epochs} epochs" if epochs else "") + f" ({time.monotonic() - t0:.0f} s)")


def _labels(k: int | None, v: int | None, val_fraction: float, n_classes: int,
            split: tuple[np.ndarray, np.ndarray] | None, note: str, state: dict[str, Any],
            no_selection: bool) -> dict[str, Any]:
    """metrics.json's ``labels``: which labels trained the final model and how every choice was made."""
    if split is None:
        return {**labels_record(k, v, k * n_classes if k else None, v * n_classes if k and v else 0,
                                "validation split: every stage's choice by validation accuracy on the separate "
                                "validation images"), "words": budget_words(k, v, val_fraction)}
    n_all = len(split[0]) + len(split[1])
    indices = np.sort(np.concatenate(split))
    if no_selection:
        return {**labels_record(k, None, n_all, 0, "no selection: one label per class (K = 1) leaves nothing to "
                                "choose on; the top-ranked source's default fine-tune", None, indices),
                "words": f"{k} labelled image per class, the whole budget: the sources were ranked on it (stage 1) "
                         "and the top-ranked one's default fine-tune trained on it; no other choice was possible"}
    refit = state.get("refit") or {}
    done = bool(refit.get("done"))
    record = labels_record(k, None, n_all if done else len(split[0]), 0,
                           f"inner split of the K labels ({note}): every stage-2/3 choice by accuracy on the "
                           f"{len(split[1])} selection images, then " + (
                               "the chosen configuration refit on all K" if done else
                               "no refit (" + (refit.get("why") or "nothing was chosen") + ")"),
                           None, indices if done else np.sort(split[0]))
    record["inner_split"] = {"fit": [int(i) for i in np.sort(split[0])],
                             "selection": [int(i) for i in np.sort(split[1])]}
    words = (f"{k} labelled images per class, the whole budget: {len(split[0])} (fit) trained every probe and trial "
             f"and {len(split[1])} (selection) scored them ({note}); "
             + (f"the chosen configuration was then refit on all {n_all}" if done else
                "the chosen model was not refit: " + (refit.get("why") or "nothing was chosen")))
    return {**record, "words": words}


def validation_per_class(k: int | None, v: int | None) -> int | None:
    """The separate validation images per class auto chooses on when ``val_per_class`` is given (a labelled budget of
    ``k + v`` per class, which its config, metrics and report say); without it auto chooses inside the ``k`` labels
    (an inner split, then a refit on all of them — see the module docstring)."""
    if k is None:
        return v
    if v is not None and v < 1:
        raise ValueError(f"auto chooses on a validation split: --val-per-class must be ≥ 1 with --labels-per-class, "
                         f"got {v}")
    return k if v is None else v


def budget_words(k: int | None, v: int | None, val_fraction: float) -> str:
    """The labels auto uses, in words, for its report."""
    if k is None:
        return (f"the whole training split: a stratified {val_fraction:.0%} is the validation split every choice "
                "uses, the rest trains")
    return (f"{k} labelled training images per class train every candidate and {v} other labelled images per class "
            f"are the validation split every choice uses: a labelled budget of {k} + {v} = {k + v} per class. The "
            "chosen model was trained on the K training images only (not refit on the validation images)")


def _check_validation_possible(full: Any, k: int | None, v: int | None) -> None:
    """Refuse, before any work, data whose smallest class cannot give validation examples beside its training ones
    (``k`` + ``v`` per class with a labelled budget; 2 otherwise, one of each)."""
    counts = full.class_counts()
    need = k + (k if v is None else v) if k is not None else 2  # v: validation_per_class (k when not given)
    small = [(full.classes[i], int(n)) for i, n in enumerate(counts) if n < need]
    if small:
        shown = ", ".join(f"'{c}' has {n}" for c, n in small[:5])
        raise ValueError(f"auto chooses on a validation split, so every class needs at least {need} labelled "
                         f"training examples; {shown}. Use fewer --labels-per-class, or estimate by cross-validation "
                         "instead: 'transferkit transfer ... --cv 5'")


def _source(candidate: str, image_size: int | None, seed: int, channels: int) -> Any:
    """What :func:`transfer` takes for ``candidate``: its name or path, or for ``random:<backbone>`` that architecture
    built with random weights (seeded), as stage 1 scored it."""
    if candidate.startswith(RANDOM_PREFIX) and not Path(candidate).exists():
        return load_candidate(candidate, image_size, seed, channels)[0]
    return candidate


def _named_only(candidate: str, sizes: dict[str, int | None]) -> dict[str, int | None]:
    """``sizes`` (``image_size``, ``max_length``) for a named backbone; ``None`` each for a run/bundle directory (it
    has its own input size) or a ``random:`` one (built at its size by :func:`_source`)."""
    named = not Path(candidate).exists() and not candidate.startswith(RANDOM_PREFIX)
    return {k: v if named else None for k, v in sizes.items()}


def _drop_checkpoints(run_dir: Path) -> None:
    """Remove a finished trial's Lightning checkpoints (resume state, hundreds of MB for a large backbone over a
    search): auto never resumes a trial, and its bundle, metrics and report stay."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:] or "candidate"


def _inference_cost(candidates: list[str], full: Any, sizes: dict[str, int | None], seed: int,
                    n: int = 96) -> dict[str, tuple[float, float]]:
    """Preprocessing + inference cost of each candidate as ``(fixed seconds, seconds per example)``, timed warm on
    ``n // 4`` and ``n`` training examples (the fixed part, e.g. loading a tokenizer, would otherwise be spread over
    the few timed examples and inflate the per-example cost; the feature cache is bypassed: the final test
    evaluation will not have it)."""
    large = min(n, len(full))
    small = min(max(1, n // 4), large)
    costs = {}
    for cand in candidates:
        # load_candidate applies the sizes as stage 1 and the trials do: named backbones, random: at image_size
        model = load_candidate(cand, sizes["image_size"], seed, full.channels, sizes["max_length"])[0]
        times = []
        for size in (min(8, large), small, large):  # the first call warms up
            sample = full.subset(list(range(size)))
            t0 = time.perf_counter()
            predict_logits(model, to_batches(sample, model.input_spec))
            times.append(time.perf_counter() - t0)
        per_item = max(0.0, (times[2] - times[1]) / max(large - small, 1)) or times[2] / max(large, 1)
        costs[cand] = (max(0.0, times[2] - per_item * large), per_item)
    return costs


def _first_rung(configs: list[Config], n_train: int, first_epochs: int | None, first_steps: int) -> dict[str, Any]:
    """Epochs of the first halving rung: ``first_epochs`` when given, else enough epochs for every configuration to
    take ``first_steps`` optimiser steps on ``n_train`` examples at its strategy's batch size (at least 2 epochs)."""
    batch = max((get_strategy(c.strategy).default_batch_size for c in configs), default=1)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = first_epochs if first_epochs is not None else max(2, math.ceil(first_steps / steps_per_epoch))
    return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch, "n_train": n_train,
            "from": "--first-epochs" if first_epochs is not None else f"--first-steps {first_steps}"}


def _halving(configs: list[Config], first_epochs: int, eta: int, end: Any, out: Path,
             common: dict[str, Any], sizes: dict[str, int | None], channels: int, quiet: Console, say: Any,
             consider: Any) -> None:
    """Stage 3: :func:`~transferkit.tuning.halving.successive_halving` of ``configs``, each rung one
    :func:`~transferkit.api.train.transfer` run that stops early enough for its bundle to be written by the
    stage's end."""

    def run(cfg: Config, rung: int, run_epochs: int, final: bool, stage_end: float) -> dict[str, Any] | None:
        run_dir = out / "stage3_trials" / f"{_safe(cfg.source)}__{_safe(cfg.label)}__r{rung + 1}"
        # training stops early enough for what follows it (final validation, the bundle) to end by stage_end
        deadline = Deadline(stage_end - cfg.overhead_s)
        t0 = time.monotonic()
        try:
            res = transfer(_source(cfg.source, sizes["image_size"], common["seed"], channels),
                           strategy=cfg.strategy, options=dict(cfg.options), epochs=run_epochs,
                           patience=FINAL_PATIENCE if final else None, out=run_dir,
                           **_named_only(cfg.source, sizes), callbacks=[deadline], console=quiet, **common)
        except (ValueError, RuntimeError) as exc:  # e.g. a strategy that does not apply to this source
            cfg.stopped = f"failed: {type(exc).__name__}: {exc}"
            return None
        _drop_checkpoints(run_dir)
        m = res.metrics
        record = {"rung": rung + 1, "epochs": run_epochs, "epochs_run": m["fit"]["epochs_run"],
                  "val_accuracy": m["validation"]["accuracy"], "val_loss": m["validation"]["loss"],
                  "train_time_s": m["train_time_s"], "wall_s": time.monotonic() - t0,
                  "cut_by_deadline": deadline.hit, "early_stopping": final, "run_dir": str(run_dir)}
        consider(cfg.name, run_dir, m["validation"]["accuracy"],
                 {"source": cfg.source, "strategy": cfg.strategy, "options": cfg.options, "stage": 3,
                  "rung": rung + 1, "epochs": run_epochs})
        say("stage 3/3", f"{cfg.name}: rung {rung + 1}, {run_epochs} epochs → validation accuracy "
                         f"{m['validation']['accuracy']:.4f}")
        return record

    successive_halving(configs, first_epochs, eta, end, run, FINAL_PATIENCE)


def _metrics(state: dict[str, Any], test: dict[str, Any] | None, budget_s: float, wall_s: float) -> dict[str, Any]:
    configs = [{"name": c.name, "source": c.source, "strategy": c.strategy, "options": c.options, "rungs": c.rungs,
                "best_val_accuracy": max((r["val_accuracy"] for r in c.rungs), default=None),
                "stopped": c.stopped or "not reached"} for c in state["configs"]]
    best = dict(state["best"]) if state["best"] else None
    return {
        "task": "auto", "budget_s": budget_s, "wall_s": wall_s, "over_budget": wall_s / budget_s - 1,
        "interrupted": state["interrupted"], "stages_s": state["stages"], "ranking": state["ranking"],
        "test_reserve_s": state.get("test_reserve_s"), "first_rung": state.get("first_rung"),
        "skipped": state.get("skipped", []), "probes": state["probes"], "configs": configs, "chosen": best,
        "validation_accuracy": best["val_accuracy"] if best else None, "refit": state.get("refit"),
        "test": {k: test[k] for k in ("accuracy", "macro_f1", "n")} if test else None,
    }


def _print_summary(console: Console, m: dict[str, Any], out: Path) -> None:
    rows = [(c["name"], num(c["best_val_accuracy"]), c["stopped"][:60]) for c in m["configs"]]
    rows = [(f"{p['candidate']} · linear_probe", num(p.get("val_accuracy")), "stage 2") for p in m["probes"]] + rows
    console.print(comparison_table(["configuration", "val acc", "stopped"], rows, f"auto → {out}"))
    best = m["chosen"]
    if best:
        test = f", test {m['test']['accuracy']:.4f}" if m["test"] else ""
        console.print(f"chosen: {best['name']} (validation {num(best['val_accuracy'])}{test}"
                      + ("; refit on all labels" if (m.get("refit") or {}).get("done") else "") + "); wall "
                      f"{m['wall_s']:.0f} s of {m['budget_s']:.0f} s; report: {out / 'report.md'}")
