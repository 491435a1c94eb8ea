"""The plan of a ``transferkit auto`` run: its budget, its stages' shares and sizes, and its labels — pure
bookkeeping, no training (the stages that train are :mod:`transferkit.api.auto_stages`).

Three stages, each with its share of the budget, then one test evaluation:

1. **rank sources** (≤ 15 % of the budget, :data:`RANK_SHARE`) — :func:`~transferkit.api.select_job.select` scores
   every candidate (default: every built-in backbone of the data's modality whose pretrained weights are installed,
   :func:`default_candidates`) with transferability scores (LogME first) on the labelled training images, frozen;
   the top ``keep`` go on;
2. **cheap probes** (up to 35 % of the budget in all, :data:`PROBE_SHARE`) — a linear probe on cached features for
   each kept candidate, scored on the validation split; the best ``finalists`` candidates go on (:func:`finalists`);
3. **strategies** (the rest, minus a small reserve: :func:`final_reserve`) — successive halving (Jamieson &
   Talwalkar, 2016, "Non-stochastic Best Arm Identification and Hyperparameter Optimization"; Li et al., 2018,
   "Hyperband"; :mod:`transferkit.tuning.halving`) over the finalists × the search space (:data:`DEFAULT_SPACE`:
   fine-tuning and its toolbox variants, LoRA): every configuration trains at least ``first_steps`` optimiser
   steps (``first_epochs`` epochs: at 10 labels per class an epoch is one step, and two steps rank configurations
   by how fast they move, not where they end; :func:`first_rung`), the best third trains three times as long, and
   so on while the budget lasts. A run's cost is predicted from its seconds per epoch; a rung that does not fit is
   shortened to what does (fewer epochs, then fewer configurations, never shorter than the rung before), so the
   budget goes to the most promising configurations; the last one standing trains with early stopping (patience
   :data:`FINAL_PATIENCE` epochs) and ends the search once its validation accuracy stops improving. A deadline
   callback (:class:`Deadline`) stops any run at the stage's end (its best validation epoch is kept).

Labels (issue 26): with ``labels_per_class=k`` the ``k`` labels per class are the **whole budget**. Auto draws
them once and splits them (:func:`budget_split`, :func:`~transferkit.data.splits.inner_split`: about a fifth of each
class, at least one, never all) into a *fit* part that trains every probe and trial and a *selection* part that
every stage-2/3 choice is scored on; stage 1 scores the sources on all ``k``. The chosen configuration is then
**refit on all ``k``** (same source, strategy, options and epochs — the epoch its selection run kept,
:func:`refit_epochs`), and that refit model is the bundle and the one test evaluation. If the refit does not fit in
what is left of the budget (:func:`refit_cost`), the selection-run model is kept and the report says so. ``k = 1``
leaves nothing to select on: auto then ranks the sources (stage 1) and trains the default fine-tune of the
top-ranked one on the ``k`` labels — fixed default, no selection, recorded as such. ``val_per_class=v`` instead
keeps a separate validation set of ``v`` other images per class (a budget of ``k + v``, stated; no refit;
:func:`validation_per_class`). metrics.json's ``labels`` and report.md say which labels trained the final model.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

from transferkit.backbones.registry import list_backbones
from transferkit.data.base import AnyDataset
from transferkit.data.splits import inner_split, k_per_class
from transferkit.errors import ConfigError
from transferkit.options import parse_names
from transferkit.strategies.base import get_strategy
from transferkit.tuning.halving import Config

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

Split = tuple[np.ndarray, np.ndarray]  # (fit rows, selection rows) of the training split


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


def candidate_sources(candidates: str | tuple[str, ...] | list[str] | None, modality: str) -> list[str]:
    """The candidate sources: as given (comma-separated or a list), else every installed pretrained backbone of the
    data's modality (:func:`default_candidates`); none at all is refused before anything is written."""
    cands = parse_names(candidates) if candidates else default_candidates(modality)
    if not cands:
        raise ConfigError("candidates", "one or more candidate sources (backbone names, run/bundle directories, "
                          "random:NAME)", candidates, f"none was given and no pretrained {modality} backbone is "
                          "installed here ('transferkit backbones' shows which)")
    return cands


class Deadline(Callback):
    """Stop training at ``deadline`` (``time.monotonic()`` seconds); the best validation epoch so far is kept."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.hit = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if time.monotonic() >= self.deadline:
            self.hit = True
            trainer.should_stop = True


class Clock:
    """The run's wall-clock budget, started at construction: the moment a cumulative share of it ends (:meth:`at`),
    the seconds left until then (:meth:`left`) and the seconds spent (:meth:`elapsed`), all on ``time.monotonic``."""

    def __init__(self, budget: float) -> None:
        self.start = time.monotonic()
        self.budget = budget

    def at(self, share: float) -> float:
        """The ``time.monotonic()`` moment at which ``share`` of the budget is spent."""
        return self.start + self.budget * share

    def left(self, until: float | None = None) -> float:
        """Seconds from now until ``until`` (default: the end of the budget); negative once past it."""
        return (self.start + self.budget if until is None else until) - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start


def check_search(keep: int, finalists: int, first_epochs: int | None, first_steps: int, eta: int) -> None:
    """Refuse (:class:`~transferkit.errors.ConfigError`, naming the parameter) search sizes the stages cannot use:
    ``keep``, ``finalists`` and ``first_steps`` ≥ 1, ``first_epochs`` ≥ 2 when given (two epochs rank by how fast a
    configuration moves), ``eta`` ≥ 2 (successive halving must keep fewer than it ran)."""
    for name, value, low in (("keep", keep, 1), ("finalists", finalists, 1), ("first_epochs", first_epochs, 2),
                             ("first_steps", first_steps, 1), ("eta", eta, 2)):
        if value is None and name == "first_epochs":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"a whole number ≥ {low}", value)


def budget_split(full: AnyDataset, k: int | None, v: int | None, seed: int) -> tuple[Split | None, str, int | None]:
    """``(inner split, its note, V)``: with K and no V the K labels per class are the whole budget, drawn with
    ``seed`` and split inside into a fit part and a selection part; else the validation set per class V
    (:func:`validation_per_class`), checked against the smallest class (:func:`check_validation_possible`)."""
    if k is not None and v is None:
        pool = k_per_class(full, k, seed)  # names a class holding fewer than K
        fit_rows, sel_rows, inner_note = inner_split(full.labels[pool], seed)
        return (pool[fit_rows], pool[sel_rows]), inner_note, None
    v = validation_per_class(k, v)
    check_validation_possible(full, k, v)
    return None, "", v


def validation_per_class(k: int | None, v: int | None) -> int | None:
    """The separate validation images per class auto chooses on when ``val_per_class`` is given (a labelled budget of
    ``k + v``, which its config, metrics and report say); without it auto chooses inside the ``k`` labels (an inner
    split, then a refit on all of them — see the module docstring)."""
    if k is None:
        return v
    if v is not None and v < 1:
        raise ConfigError("val_per_class", "≥ 1", v, "auto chooses on a separate validation set of that many images "
                          "per class beside the K training labels; leave it unset to choose inside the K labels")
    return k if v is None else v


def check_validation_possible(full: AnyDataset, k: int | None, v: int | None) -> None:
    """Refuse, before any work, data whose smallest class cannot give validation examples beside its training ones
    (``k`` + ``v`` per class with a labelled budget; 2 otherwise, one of each)."""
    counts = full.class_counts()
    need = k + (k if v is None else v) if k is not None else 2  # v: validation_per_class (k when not given)
    small = [(full.classes[i], int(n)) for i, n in enumerate(counts) if n < need]
    if small:
        shown = ", ".join(f"'{c}' has {n}" for c, n in small[:5])
        raise ValueError(f"auto chooses on a validation split, so every class needs at least {need} labelled "
                         f"training examples; {shown}. Use fewer labels_per_class=…, or estimate by cross-validation "
                         "instead: transfer with cv=5")


def scoring_labels_per_class(k: int | None, full: AnyDataset) -> int:
    """Labels per class stage 1 scores the sources on: all ``k`` with a labelled budget, else about
    :data:`SCORING_IMAGES` examples in all, at most half of the smallest class (transferability scores need no more,
    and the rest stays unseen by the frozen features)."""
    return k or max(1, min(SCORING_IMAGES // max(full.num_classes, 1), int(full.class_counts().min()) // 2))


def finalists(probes: list[dict[str, Any]], n: int) -> tuple[list[str], int]:
    """``(the n best-probed candidates, best first; the most training examples a probe had)``: stage 3's sources
    and the training-set size its first rung is sized on (probes stopped by the budget have no accuracy: left out)."""
    probed = sorted((p for p in probes if "val_accuracy" in p), key=lambda p: -p["val_accuracy"])
    return [p["candidate"] for p in probed[:n]], max((p["n_train"] for p in probed), default=0)


def stage3_configs(sources: list[str]) -> list[Config]:
    """Every finalist source × every strategy of :data:`DEFAULT_SPACE`, source by source (the halving's order)."""
    return [Config(c, label, strat, opts) for c in sources for label, strat, opts in DEFAULT_SPACE]


def first_rung(configs: list[Config], n_train: int, first_epochs: int | None, first_steps: int) -> dict[str, Any]:
    """Epochs of the first halving rung: ``first_epochs`` when given, else enough epochs for every configuration to
    take ``first_steps`` optimiser steps on ``n_train`` examples at its strategy's batch size (at least 2 epochs)."""
    batch = max((get_strategy(c.strategy).default_batch_size for c in configs), default=1)
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = first_epochs if first_epochs is not None else max(2, math.ceil(first_steps / steps_per_epoch))
    return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch, "n_train": n_train,
            "from": "first_epochs" if first_epochs is not None else f"first_steps={first_steps}"}


def final_reserve(state: dict[str, Any], speeds: dict[str, tuple[float, float]], n_test: int, budget_s: float,
                 split: Split | None) -> float:
    """Seconds stage 3 leaves at the end of the budget: the test evaluation of the best model so far (predicted from
    its source's inference ``speeds``: fixed seconds, seconds per example; floored at 4 % of the budget) plus, with an
    inner split, its refit on all K (:func:`refit_cost`). Records ``test_predicted_s`` and ``test_reserve_s`` in
    ``state``; called again whenever stage 3 asks for its end, so the end follows the best configuration."""
    best = state["best"] or {}
    fixed, per_item = speeds.get(best.get("source"), max(speeds.values(), default=(0.0, 0.0)))
    # x1.5: adapters (LoRA) cost extra at inference; one factor for every strategy keeps the stage's end
    # still while the best configuration changes, so rungs fitted to it stay fitted
    state["test_predicted_s"] = 3.0 + 1.5 * (fixed + n_test * per_item)
    state["test_reserve_s"] = max(0.04 * budget_s, state["test_predicted_s"])
    return state["test_reserve_s"] + (refit_cost(state, split) if split is not None else 0.0)


def refit_cost(state: dict[str, Any], split: Split) -> float:
    """Predicted seconds to refit the best configuration so far on all K labels: its selection run's training time,
    scaled by the images (fit part → all K) and the epochs the refit trains (the kept epoch, not all that ran),
    plus that run's fixed cost (loading, extraction, writing) once."""
    m = state.get("best_run")
    if not m:
        return 0.0
    fit = m.get("fit", {})
    scale = (len(split[0]) + len(split[1])) / max(len(split[0]), 1)
    epochs = refit_epochs(m)
    per_epoch = m.get("train_time_s", 0.0) / max(fit.get("epochs_run") or 1, 1)
    train = m.get("train_time_s", 0.0) if epochs is None else per_epoch * epochs
    return scale * train + max(m.get("total_time_s", 0.0) - m.get("train_time_s", 0.0), 0.0)


def refit_epochs(m: dict[str, Any]) -> int | None:
    """Epochs the refit trains: the epoch the selection run kept (best validation epoch + 1); ``None`` for a solved
    probe (no epochs: the refit solves again, C by cross-validation on all K)."""
    fit = m.get("fit", {})
    if fit.get("solver") is not None or not fit.get("epochs_run"):
        return None
    return int(fit.get("best_epoch", fit["epochs_run"] - 1)) + 1


def safe_name(name: str) -> str:
    """``name`` (a source or a strategy label) as a short folder name: other characters become ``_``, at most the
    last 60 kept (a long run-directory path keeps its distinctive end)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:] or "candidate"
