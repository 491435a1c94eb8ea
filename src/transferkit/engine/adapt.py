"""The loop of unsupervised domain adaptation: labelled source and unlabelled target batches drawn together.

It knows no particular method. It trains a network with two calls, ``embed(x) -> features`` and
``classify(features) -> logits`` (:class:`transferkit.adaptation.net.AdaptNet`), and a *method* module that maps
``(f_s, logits_s, f_t, logits_t, progress)`` to named loss terms added to the source cross-entropy
(:mod:`transferkit.adaptation.methods`). Each epoch is one pass over the longer of the two loaders (Lightning's
``CombinedLoader`` in ``max_size_cycle`` mode cycles the shorter one).

Model selection is the caller's: after every epoch the validation loaders' features, logits and labels
(``None`` for unlabelled data) go to a ``scorer`` that returns named numbers; for each ``criteria`` entry
(name → ``"min"``/``"max"``) the weights of its best epoch are kept in memory, as are the last epoch's.

A non-finite loss or gradient stops the run: the step is skipped, the message names it, and the weights kept
are those of the epochs that ended before it (no later validation counts).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import CombinedLoader
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches, make_loader
from transferkit.engine.module import DivergenceError, TransferModule
from transferkit.engine.trainer import build_trainer, guarded_fit, keep_log_before_resume, resume_callback


@dataclass
class ValOutput:
    """What one validation loader produced in an epoch: features ``(N, D)``, logits ``(N, C)``, labels or None."""

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor | None


Scorer = Callable[[list[ValOutput]], dict[str, float]]


class AdaptModule(TransferModule):
    """Source cross-entropy + a method's terms over joint source/target batches; label-free validation."""

    extra_name = "adapt_loss"

    def __init__(self, net: nn.Module, method: nn.Module, param_groups: Sequence[dict[str, Any]], cfg: TrainConfig,
                 scorer: Scorer, eval_modules: Sequence[nn.Module] = ()) -> None:
        super().__init__(net, param_groups, cfg, eval_modules)
        self.method = method
        self.scorer = scorer
        self._total_steps = 1
        self._outs: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]] = {}

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._total_steps = max(int(self.trainer.estimated_stepping_batches), 1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.diverged is not None:
            return None
        xs, ys = batch["source"]
        progress = min(self.global_step / self._total_steps, 1.0)
        net = self.model
        if getattr(self.method, "uses_target", True):
            xt = batch["target"]
            xt = xt[0] if isinstance(xt, tuple | list) else xt
            f = net.embed(torch.cat([xs, xt]))
            logits = net.classify(f)
            n = len(xs)
            f_s, f_t, l_s, l_t = f[:n], f[n:], logits[:n], logits[n:]
        else:
            f_s = net.embed(xs)
            l_s = net.classify(f_s)
            f_t = l_t = None
        ce = F.cross_entropy(l_s, ys)
        terms = self.method(f_s, l_s, f_t, l_t, progress)
        extra = sum(terms.values(), torch.zeros((), device=ce.device))
        loss = ce + extra
        if not self.finite_or_stop(loss, {"cross_entropy": ce, **terms}):
            return None
        with torch.no_grad():
            n = ys.shape[0]
            self.train_sums.update(torch.stack([loss.detach().double() * n, (l_s.argmax(1) == ys).sum().double(),
                                                torch.tensor(float(n), dtype=torch.float64, device=loss.device),
                                                extra.detach().double() * n]))
        return loss

    # -- validation: collect, then let the caller score ------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._outs = {}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = (batch[0], batch[1]) if isinstance(batch, tuple | list) else (batch, None)
        f = self.model.embed(x)
        logits = self.model.classify(f)
        self._outs.setdefault(dataloader_idx, []).append((f.float().cpu(), logits.float().cpu(),
                                                          None if y is None else y.cpu()))

    def on_validation_epoch_end(self) -> None:
        outputs = []
        for i in sorted(self._outs):
            fs, ls, ys = zip(*self._outs[i], strict=True)
            outputs.append(ValOutput(torch.cat(fs), torch.cat(ls), None if ys[0] is None else torch.cat(ys)))
        if not outputs:
            return
        self._val_row = {k: float(v) for k, v in self.scorer(outputs).items()}
        finite = {k: v for k, v in self._val_row.items() if math.isfinite(v)}
        self.log_dict(finite, on_epoch=True, add_dataloader_idx=False)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        for name, obj in (("domain_acc", "last_accuracy"), ("pseudo_rate", "last_mask_rate")):
            values = [getattr(m, obj) for m in self.method.modules() if hasattr(m, obj)]
            if values and self.history:
                self.history[-1][name] = float(values[0])


class KeepStates(Callback):
    """After each validation, keep the network's weights at the best value of every criterion, and the last."""

    def __init__(self, criteria: Mapping[str, str]) -> None:
        self.criteria = dict(criteria)
        self.best = {k: (float("inf") if mode == "min" else -float("inf")) for k, mode in self.criteria.items()}
        self.epochs = {k: -1 for k in self.criteria}
        self.states: dict[str, dict[str, torch.Tensor]] = {}
        self.last_state: dict[str, torch.Tensor] | None = None
        self.last_epoch = -1

    def state_dict(self) -> dict[str, Any]:  # in resume checkpoints: the choices made before an interruption
        return {k: getattr(self, k) for k in ("best", "epochs", "states", "last_state", "last_epoch")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(pl_module, "diverged", None) is not None:
            return
        row = getattr(pl_module, "_val_row", {})
        state = None
        for name, mode in self.criteria.items():
            value = row.get(name, float("nan"))
            if not math.isfinite(value):
                continue
            if (value < self.best[name]) if mode == "min" else (value > self.best[name]):
                state = state or copy.deepcopy(pl_module.model.state_dict())
                self.best[name], self.epochs[name], self.states[name] = value, trainer.current_epoch, state
        self.last_state = copy.deepcopy(pl_module.model.state_dict())
        self.last_epoch = trainer.current_epoch


@dataclass
class AdaptFitResult:
    """History, the kept weights per selection criterion (and the last epoch's), timing and divergence."""

    history: list[dict[str, float]] = field(default_factory=list)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    best_epochs: dict[str, int] = field(default_factory=dict)
    best_scores: dict[str, float] = field(default_factory=dict)
    last_state: dict[str, torch.Tensor] | None = None
    last_epoch: int = -1
    epochs_run: int = 0
    train_time_s: float = 0.0
    diverged: dict[str, Any] | None = None


def fit_adapt(
    net: nn.Module,
    method: nn.Module,
    param_groups: Sequence[dict[str, Any]],
    source: TensorBatches,
    target: TensorBatches | None,
    val_sets: Sequence[TensorBatches],
    cfg: TrainConfig,
    scorer: Scorer,
    criteria: Mapping[str, str],
    run_dir: Path | None = None,
    eval_modules: Sequence[nn.Module] = (),
) -> AdaptFitResult:
    """Train ``net`` (+ ``method``'s own parameters) for ``cfg.epochs`` epochs on source + target batches.

    ``target`` may be ``None`` when the method draws no target batches (source-only). ``val_sets`` are
    scored after every epoch by ``scorer``; ``criteria`` says which of its numbers select weights. ``net`` is
    left with the last good epoch's weights; :attr:`AdaptFitResult.states` holds every criterion's choice.
    """
    if cfg.batch_size is None or cfg.lr is None:
        raise ValueError("fit_adapt() needs a concrete batch_size and lr")
    if len(source) == 0:
        raise ValueError("the source training set is empty")
    if cfg.processes > 1:
        raise ValueError("domain adaptation runs in one process: its label-free model selection scores every "
                         "validation output together after each epoch, which DDP would split over processes; use "
                         "devices=1 num_nodes=1")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = AdaptModule(net, method, param_groups, cfg, scorer, eval_modules)
    keep = KeepStates(criteria)
    quiet = dataclasses.replace(cfg, patience=None, checkpoints=False)  # fixed epochs; weights kept in memory
    loaders = {"source": make_loader(source, cfg.batch_size, shuffle=True, seed=cfg.seed)}
    if getattr(method, "uses_target", True):
        if target is None or len(target) == 0:
            raise ValueError("this adaptation method needs unlabelled target data")
        loaders["target"] = make_loader(target, cfg.batch_size, shuffle=True, seed=cfg.seed + 1)
    train_loader = CombinedLoader(loaders, mode="max_size_cycle")
    keep_log_before_resume(cfg, run_dir)
    saver = resume_callback(cfg, run_dir, train_loader)  # resume checkpoints (the best-weight copies are in KeepStates)
    trainer = build_trainer(quiet, run_dir, [keep, *([saver] if saver else [])], has_val=bool(val_sets))
    val_loaders = [make_loader(v, max(cfg.batch_size, 256), shuffle=False) for v in val_sets] or None
    elapsed = module.time_before_resume + guarded_fit(trainer, module, train_loader, val_loaders, cfg, saver)
    if module.diverged is not None and keep.last_state is None:
        d = module.diverged
        raise DivergenceError(f"training diverged at step {d['step']} (epoch {d['epoch'] + 1}): {d['what']}, "
                              "before any epoch finished, so there are no good weights to keep. Try a lower lr=… "
                              "(or a smaller adaptation trade-off, the option trade_off=0.3)")
    if keep.last_state is not None:
        net.load_state_dict(keep.last_state)
    net.eval()
    return AdaptFitResult(
        history=module.history, states=keep.states, best_epochs=dict(keep.epochs), best_scores=dict(keep.best),
        last_state=keep.last_state, last_epoch=keep.last_epoch, epochs_run=trainer.current_epoch,
        train_time_s=elapsed, diverged=module.diverged,
    )
