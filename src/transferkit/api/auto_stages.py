"""The stages of one ``transferkit auto`` run that train (:func:`transferkit.api.auto`): each calls another job —
:func:`~transferkit.api.select_job.select` (stage 1), :func:`~transferkit.api.train.transfer` (the probes of stage 2,
the rungs of stage 3, the refit on all K, the default fine-tune at K = 1) — which is why they live in ``api/``.

What they plan with (the budget's shares, the stage-3 configurations, the first rung, the costs of the refit and
of the test evaluation) is pure bookkeeping in :mod:`transferkit.tuning.auto_plan`, the scheduler of stage 3 is
:func:`transferkit.tuning.halving.successive_halving`, and their record is the ``state`` of :class:`Search`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit import atomic, terminal
from transferkit.api.select_job import RANDOM_PREFIX, load_candidate, select
from transferkit.api.train import transfer
from transferkit.backbones.features import predict_logits
from transferkit.data.base import AnyDataset
from transferkit.data.prepare import to_batches
from transferkit.terminal import Console
from transferkit.tuning.auto_plan import (
    FINAL_PATIENCE,
    PROBE_SHARE,
    Clock,
    Deadline,
    Split,
    final_reserve,
    finalists,
    first_rung,
    refit_cost,
    refit_epochs,
    safe_name,
    scoring_labels_per_class,
    stage3_configs,
)
from transferkit.tuning.halving import Config, successive_halving

Sizes = dict[str, int | None]  # image_size / max_length, for named backbones only (named_only)
Say = Callable[[str, str], None]


class NoSelection(Exception):
    """K = 1: stage 1 ranked the sources; nothing is left to choose on (carries the top-ranked candidate)."""

    def __init__(self, candidate: str) -> None:
        super().__init__(candidate)
        self.candidate = candidate


class Search:
    """The three stages of one ``auto`` run and what they found so far (``state``: ranking, probes, configurations,
    the best model — whose bundle is kept at ``<out>/bundle`` as soon as it leads)."""

    def __init__(self, out: Path, clock: Clock, console: Console, channels: int, common: dict[str, Any],
                 sizes: Sizes) -> None:
        self.out, self.clock, self.console, self.channels = out, clock, console, channels
        self.common = common
        self.sizes = sizes
        self.seed = common["seed"]
        self.quiet = terminal.silent()
        self.state: dict[str, Any] = {"stages": {}, "probes": [], "configs": [], "best": None, "interrupted": False,
                                      "ranking": [], "refit": None}

    def say(self, stage: str, text: str) -> None:
        """One progress line: the stage, what happened, and the budget left."""
        self.console.print(f"[bold]{stage}[/] {text}  [dim]({max(self.clock.left(), 0):.0f} s of "
                           f"{self.clock.budget:.0f} s left)[/]")

    def consider(self, name: str, run_dir: Path, val_acc: float, detail: dict[str, Any]) -> None:
        """Make the run in ``run_dir`` the best so far (its bundle copied to ``<out>/bundle``) when it leads."""
        best = self.state["best"]
        if best is None or val_acc > best["val_accuracy"]:
            self.state["best"] = {"name": name, "run_dir": str(run_dir), "val_accuracy": val_acc, **detail}
            self.state["best_run"] = json.loads((run_dir / "metrics.json").read_text())  # read once: the refit's plan
            keep_bundle(run_dir, self.out)

    def rank(self, cands: list[str], full: AnyDataset, keep: int) -> list[str]:
        """Stage 1: rank the candidates by transferability; the ``keep`` best go on."""
        t0 = time.monotonic()
        c = self.common
        self.say("stage 1/3", f"ranking {len(cands)} candidate(s) by transferability scores")
        score_k = scoring_labels_per_class(c["labels_per_class"], full)
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
            run_dir = self.out / "stage2_probes" / safe_name(cand)
            res = transfer(source_arg(cand, self.sizes["image_size"], self.seed, self.channels),
                           strategy="linear_probe", out=run_dir, **named_only(cand, self.sizes),
                           callbacks=[Deadline(clock.at(PROBE_SHARE + 0.05))], console=self.quiet, **self.common)
            drop_checkpoints(run_dir)
            val = res.metrics["validation"]["accuracy"]
            state["probes"].append({"candidate": cand, "val_accuracy": val, "time_s": res.metrics["total_time_s"],
                                    "n_train": res.metrics["n_train"], "run_dir": str(run_dir)})
            self.consider(f"{cand} · linear_probe", run_dir, val, {"source": cand, "strategy": "linear_probe",
                                                                     "options": {}, "stage": 2})
            self.say("stage 2/3", f"linear probe of {cand}: validation accuracy {val:.4f}")
        state["stages"]["probe"] = time.monotonic() - t0

    def halve(self, n_finalists: int, first_epochs: int | None, first_steps: int, eta: int, full: AnyDataset,
              n_test: int, split: Split | None) -> None:
        """Stage 3: successive halving over the strategies of the ``n_finalists`` best-probed candidates, ending early
        enough for the test evaluation (and the refit on all K) of the best model so far."""
        t0, state, budget_s = time.monotonic(), self.state, self.clock.budget
        finals, n_train = finalists(state["probes"], n_finalists)
        configs = stage3_configs(finals)
        state["configs"] = configs
        state["first_rung"] = {**first_rung(configs, n_train, first_epochs, first_steps), "eta": eta}
        speeds = inference_cost(finals, full, self.sizes, self.seed) if n_test else {}
        run_halving(configs, state["first_rung"]["epochs"], eta,
                    lambda: self.clock.start + budget_s - final_reserve(state, speeds, n_test, budget_s, split),
                    self.out, self.common, self.sizes, self.channels, self.quiet, self.say, self.consider)
        state["stages"]["strategies"] = time.monotonic() - t0

    def default_finetune(self, candidate: str, labels_per_class: int | None) -> None:
        """K = 1: the top-ranked source's default fine-tune on the K labels, no selection."""
        run_dir = self.out / "final"
        self.say("no selection", f"{labels_per_class} label per class leaves nothing to choose on: the default "
                                 f"fine-tune of the top-ranked source {candidate}")
        transfer(source_arg(candidate, self.sizes["image_size"], self.seed, self.channels), strategy="finetune",
                 out=run_dir, console=self.quiet, **named_only(candidate, self.sizes),
                 **{k: v for k, v in self.common.items() if k != "split_indices"})
        drop_checkpoints(run_dir)
        self.state["best"] = {"name": f"{candidate} · finetune", "run_dir": str(run_dir), "val_accuracy": None,
                              "source": candidate, "strategy": "finetune", "options": {}, "stage": "default"}
        keep_bundle(run_dir, self.out)


def refit(state: dict[str, Any], out: Path, clock: Clock, common: dict[str, Any], sizes: Sizes, channels: int,
          k: int, quiet: Console, say: Say) -> None:
    """Refit the chosen configuration on all ``k`` labels per class when the time left allows (issue 26), and make
    it the bundle; otherwise keep the selection-run model. ``state["refit"]`` records what happened."""
    best = state["best"]
    epochs = refit_epochs(state["best_run"])
    split = common["split_indices"]
    need = refit_cost(state, split)
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
    transfer(source_arg(best["source"], sizes["image_size"], common["seed"], channels), strategy=best["strategy"],
             options=dict(best.get("options") or {}), epochs=epochs, out=run_dir, console=quiet,
             **named_only(best["source"], sizes), **args)
    drop_checkpoints(run_dir)
    keep_bundle(run_dir, out)
    state["refit"] = {**record, "done": True, "run_dir": str(run_dir), "wall_s": time.monotonic() - t0}
    say("refit", f"{best['name']} refit on all {k} labels per class"
                 + (f" for {epochs} epochs" if epochs else "") + f" ({time.monotonic() - t0:.0f} s)")


def run_halving(configs: list[Config], first_epochs: int, eta: int, end: Callable[[], float], out: Path,
                common: dict[str, Any], sizes: Sizes, channels: int, quiet: Console, say: Say,
                consider: Callable[[str, Path, float, dict[str, Any]], None]) -> None:
    """Stage 3: :func:`~transferkit.tuning.halving.successive_halving` of ``configs`` (Jamieson & Talwalkar, 2016;
    Li et al., 2018), each rung one :func:`~transferkit.api.train.transfer` run that stops early enough for its
    bundle to be written by the stage's end (``end()``)."""

    def run(cfg: Config, rung: int, run_epochs: int, final: bool, stage_end: float) -> dict[str, Any] | None:
        run_dir = out / "stage3_trials" / f"{safe_name(cfg.source)}__{safe_name(cfg.label)}__r{rung + 1}"
        # training stops early enough for what follows it (final validation, the bundle) to end by stage_end
        deadline = Deadline(stage_end - cfg.overhead_s)
        t0 = time.monotonic()
        try:
            res = transfer(source_arg(cfg.source, sizes["image_size"], common["seed"], channels),
                           strategy=cfg.strategy, options=dict(cfg.options), epochs=run_epochs,
                           patience=FINAL_PATIENCE if final else None, out=run_dir,
                           **named_only(cfg.source, sizes), callbacks=[deadline], console=quiet, **common)
        except (ValueError, RuntimeError) as exc:  # e.g. a strategy that does not apply to this source
            cfg.stopped = f"failed: {type(exc).__name__}: {exc}"
            return None
        drop_checkpoints(run_dir)
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


def inference_cost(candidates: list[str], full: AnyDataset, sizes: Sizes, seed: int,
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


def source_arg(candidate: str, image_size: int | None, seed: int, channels: int) -> Any:
    """What :func:`transfer` takes for ``candidate``: its name or path, or for ``random:<backbone>`` that architecture
    built with random weights (seeded), as stage 1 scored it."""
    if candidate.startswith(RANDOM_PREFIX) and not Path(candidate).exists():
        return load_candidate(candidate, image_size, seed, channels)[0]
    return candidate


def named_only(candidate: str, sizes: Sizes) -> Sizes:
    """``sizes`` (``image_size``, ``max_length``) for a named backbone; ``None`` each for a run/bundle directory (it
    has its own input size) or a ``random:`` one (built at its size by :func:`source_arg`)."""
    named = not Path(candidate).exists() and not candidate.startswith(RANDOM_PREFIX)
    return {k: v if named else None for k, v in sizes.items()}


def drop_checkpoints(run_dir: Path) -> None:
    """Remove a finished trial's Lightning checkpoints (resume state, hundreds of MB for a large backbone over a
    search): auto never resumes a trial, and its bundle, metrics and report stay."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def keep_bundle(run_dir: Path, out: Path) -> None:
    """Copy ``run_dir``'s bundle to ``<out>/bundle``, replacing it atomically: an interrupted run keeps the best."""
    with atomic.staged_dir(out / "bundle") as tmp:
        shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)
