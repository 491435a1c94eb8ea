"""Successive halving under a wall-clock budget: the scheduler of ``transferkit auto``'s stage 3.

Jamieson & Talwalkar, 2016, "Non-stochastic Best Arm Identification and Hyperparameter Optimization"; Li et al.,
2018, "Hyperband": run every configuration for a short budget (a *rung*), keep the best ``1/eta`` by validation
accuracy, give the survivors ``eta`` times the budget, until one is left — which then trains on with early
stopping. Under a deadline a later rung is shortened to what fits (:func:`fit_rung`) instead of not being
started, and each run's cost is predicted from the seconds per epoch of its last rung, or of a configuration with
the same source and strategy (:func:`similar_rate`).

The scheduler knows nothing of training: the caller passes ``run(cfg, rung, epochs, final, stage_end)``, which
trains one configuration and returns its rung record (``epochs_run``, ``val_accuracy``, ``val_loss``,
``train_time_s``, ``wall_s``, ``cut_by_deadline``), or ``None`` when the run failed (having said why in
``cfg.stopped``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RunTrial = Callable[["Config", int, int, bool, float], "dict[str, Any] | None"]


@dataclass
class Config:
    """One point of the stage-3 search: a candidate source with a strategy and its options, and its rungs."""

    source: str
    label: str
    strategy: str
    options: dict[str, Any]
    rungs: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""

    @property
    def name(self) -> str:
        return f"{self.source} · {self.label}"

    @property
    def score(self) -> float:
        return self.rungs[-1]["val_accuracy"] if self.rungs else -1.0

    @property
    def seconds_per_epoch(self) -> float | None:
        done = [r for r in self.rungs if r["epochs_run"] > 0]
        return done[-1]["train_time_s"] / done[-1]["epochs_run"] if done else None

    @property
    def overhead_s(self) -> float:
        """Seconds of its last run outside the training epochs (building the model, preparing the data, writing
        the bundle): paid again by every rung."""
        last = self.rungs[-1] if self.rungs else {}
        return max(0.0, last.get("wall_s", 0.0) - last.get("train_time_s", 0.0))

    def cost_s(self, epochs: int, per_epoch: float | None = None) -> float:
        """Predicted seconds of a run of ``epochs`` epochs: its overhead plus ``per_epoch`` (default: its own
        seconds per epoch; 0 when unknown) per epoch."""
        rate = per_epoch if per_epoch is not None else self.seconds_per_epoch or 0.0
        return self.overhead_s + rate * epochs


def fit_rung(alive: list[Config], epochs: int, before: int, left: float) -> tuple[list[Config], int]:
    """The configurations (best first) and epochs of a rung that fits in ``left`` seconds: every one at ``epochs``
    if it fits, else as many epochs as fit, dropping the lowest-ranked configurations while that is no longer than
    the ``before`` epochs they already had. ``([], 0)`` when not even the best one can train longer."""
    for n in range(len(alive), 0, -1):
        rate = sum(c.seconds_per_epoch or 0.0 for c in alive[:n])
        room = left - sum(c.overhead_s for c in alive[:n])
        afford = epochs if rate * epochs <= room else int(max(room, 0.0) / rate) if rate else 0
        if afford > before:
            return alive[:n], afford
    return [], 0


def successive_halving(configs: list[Config], first_epochs: int, eta: int, end: Callable[[], float], run: RunTrial,
                       final_patience: int) -> None:
    """Successive halving of ``configs`` until one is left or the stage's time is spent (``end()``: when it ends,
    which may move while the search runs). ``run`` trains one configuration for one rung (module docstring);
    ``final_patience`` is the early-stopping patience of the last configuration standing (for its record)."""
    alive = list(configs)
    epochs, before = first_epochs, 0
    rung = 0
    while alive:
        if rung:
            planned = epochs
            alive_fit, epochs = fit_rung(alive, epochs, before, end() - time.monotonic())
            for cfg in alive[len(alive_fit):]:
                cfg.stopped = (f"budget: rung {rung + 1} ({planned} epochs) did not fit beside the better-ranked "
                               "configurations" if alive_fit else
                               f"budget: too little time left for more than the {before} epochs it had")
            alive = alive_fit
        final = rung > 0 and len(alive) == 1
        ran = []
        for cfg in alive:
            stage_end = end()
            left = stage_end - time.monotonic()
            per_epoch = cfg.seconds_per_epoch or similar_rate(configs, cfg)
            run_epochs = epochs
            if per_epoch is not None and cfg.cost_s(epochs, per_epoch) > left:
                fits = int((left - cfg.overhead_s) / per_epoch)
                if not rung or fits <= before:  # rung 1 compares equal runs; later, only a longer run is news
                    cfg.stopped = (f"budget: rung {rung + 1} ({epochs} epochs) needs "
                                   f"≈{cfg.cost_s(epochs, per_epoch):.0f} s, {max(left, 0):.0f} s were left")
                    continue
                run_epochs = fits  # what fits of this rung (the configurations before it took more than planned)
            if left <= 0:
                cfg.stopped = "budget: stage 3's time was spent"
                continue
            record = run(cfg, rung, run_epochs, final, stage_end)
            if record is None:
                continue
            cfg.rungs.append(record)
            ran.append(cfg)
            if record["cut_by_deadline"]:
                cfg.stopped = "budget: stopped by the deadline inside its run (best validation epoch kept)"
            elif final:
                cfg.stopped = "last one standing; " + (
                    f"early stopping after {record['epochs_run']} of {run_epochs} epochs (no better validation "
                    f"accuracy for {final_patience} epochs)" if record["epochs_run"] < run_epochs else
                    f"trained all {run_epochs} epochs that fitted")
        if not ran or final or time.monotonic() >= end():
            for cfg in ran:
                if not cfg.stopped:
                    cfg.stopped = "budget: stage 3's time was spent"
            return
        alive = halve(ran, eta, rung) if len(ran) > 1 else ran  # one left (others did not fit): it trains on
        before, epochs = epochs, epochs * eta
        rung += 1


def halve(ran: list[Config], eta: int, rung: int) -> list[Config]:
    """The best ``1/eta`` of the configurations that ran rung ``rung`` (by validation accuracy, ties broken by the
    lower validation loss); the others get the reason they stopped."""
    ranked = sorted(ran, key=lambda c: (-c.score, c.rungs[-1]["val_loss"]))
    n_keep = max(1, math.ceil(len(ranked) / eta))
    cut = ranked[n_keep - 1].score
    for i, cfg in enumerate(ranked[n_keep:], n_keep + 1):
        why = "below" if cfg.score < cut else "tied with (higher validation loss than)"
        cfg.stopped = (f"halved out after rung {rung + 1}: validation accuracy {cfg.score:.4f} (rank {i} of "
                       f"{len(ranked)}) {why} the kept {cut:.4f}")
    for cfg in ranked[:n_keep]:
        cfg.stopped = ""
    return ranked[:n_keep]


def similar_rate(configs: list[Config], cfg: Config) -> float | None:
    """Seconds per epoch of another configuration with the same source and strategy (a first estimate)."""
    rates = [c.seconds_per_epoch for c in configs if c is not cfg and c.source == cfg.source
             and c.strategy == cfg.strategy and c.seconds_per_epoch]
    return max(rates) if rates else None
