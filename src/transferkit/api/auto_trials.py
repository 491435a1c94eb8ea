"""The trainings of one ``transferkit auto`` run that follow the search's choices
(:class:`~transferkit.api.auto_stages.Search`): stage 3's rungs of successive halving and their inference-cost
estimate, the refit of the chosen configuration on all K labels, and what each
:func:`~transferkit.api.train.transfer` run is given for a candidate. Each calls another job, which is why they
live in ``api/``; what they plan with is :mod:`transferkit.tuning.auto_plan`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit.api.train import transfer
from transferkit.backbones.features import predict_logits
from transferkit.data.base import AnyDataset
from transferkit.data.prepare import to_batches
from transferkit.rundir import drop_checkpoints, keep_bundle
from transferkit.terminal import Console
from transferkit.transferability.ranking import RANDOM_PREFIX
from transferkit.transferability.select_candidates import load_candidate
from transferkit.tuning.auto_plan import FINAL_PATIENCE, Clock, Deadline, refit_cost, refit_epochs, safe_name
from transferkit.tuning.halving import Config, successive_halving

Sizes = dict[str, int | None]  # image_size / max_length, for named backbones only (named_only)
Say = Callable[[str, str], None]


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
