"""The stages of one ``transferkit auto`` run that train (:func:`transferkit.api.auto`): each calls another job —
:func:`~transferkit.api.select_job.select` (stage 1), :func:`~transferkit.api.train.transfer` (the probes of stage 2,
the default fine-tune at K = 1; the rungs of stage 3 and the refit on all K in :mod:`transferkit.api.auto_trials`)
— which is why they live in ``api/``.

What they plan with (the budget's shares, the stage-3 configurations, the first rung, the costs of the refit and
of the test evaluation) is pure bookkeeping in :mod:`transferkit.tuning.auto_plan`, the scheduler of stage 3 is
:func:`transferkit.tuning.halving.successive_halving`, and their record is the ``state`` of :class:`Search`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.auto_trials import Sizes, inference_cost, named_only, run_halving, source_arg
from transferkit.api.select_job import select
from transferkit.api.train import transfer
from transferkit.data.base import AnyDataset
from transferkit.rundir import drop_checkpoints, keep_bundle
from transferkit.terminal import Console
from transferkit.tuning.auto_plan import (
    PROBE_SHARE,
    Clock,
    Deadline,
    Split,
    final_reserve,
    finalists,
    first_rung,
    safe_name,
    scoring_labels_per_class,
    stage3_configs,
)


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
