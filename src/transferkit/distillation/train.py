"""Training a student against a teacher: the pieces of the ``distill`` job that are method, not bookkeeping.

The teacher passes once over the transfer set (:func:`teacher_outputs`); its logits — and, for hints, one module's
outputs — become extra targets of the student's batches. The student is trained by the engine
(:func:`~transferkit.engine.targets.fit_with_targets`) with :class:`DistillLoss`:

* response-based knowledge distillation, Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural
  Network" (:class:`~transferkit.distillation.losses.KDLoss`: ``α · T² KL + (1 − α) CE``);
* with a hint layer, FitNets, Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets"
  (:class:`~transferkit.distillation.losses.HintLoss`, its regressor built by :func:`hint_regressor`).

Beside it, a labels-only student of the same architecture and starting weights is the honest baseline
(:func:`fit_students`), and :func:`score_models` scores teacher and students once on the test split. Nothing here
reads files or writes a run directory: the job (:func:`transferkit.api.distill`) loads, then hands over.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.features import batched_outputs, measure_latency, predict_logits
from transferkit.config import FitOptions, TrainConfig
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.subsets import labelled_prefix
from transferkit.distillation.hooks import FeatureTap, module_names, probe_shape
from transferkit.distillation.losses import HintLoss, KDLoss
from transferkit.engine.plan import Planner
from transferkit.engine.targets import fit_with_targets
from transferkit.engine.trainer import FitResult, TrainedModel, train
from transferkit.errors import ConfigError

Scorer = Callable[[Backbone, TensorBatches, list[str]], dict[str, Any]]
"""``score(model, batches, classes) -> test metrics`` (with ``accuracy`` and ``macro_f1``), given by the job."""


class DistillLoss(nn.Module):
    """KD (Hinton et al., 2015) plus, with a hint, FitNets' term (Romero et al., 2015) as one loss module
    ``(logits, y, teacher_logits[, teacher_features]) -> terms``: the form the engine's target training takes, so
    the teacher's outputs travel with the batch as extras and the student's hint layer is read through ``tap``."""

    def __init__(self, kd: KDLoss, hint: HintLoss | None, tap: FeatureTap | None, hint_weight: float) -> None:
        super().__init__()
        self.kd, self.hint, self.tap, self.hint_weight = kd, hint, tap, float(hint_weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor,
                teacher_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The KD terms of the batch and, with a hint, ``hint`` (weighted by ``hint_weight``)."""
        terms = self.kd(logits, teacher_logits, y)
        if self.hint is not None and teacher_features is not None:
            terms["hint"] = self.hint_weight * self.hint(self.tap.output, teacher_features.float())
        return terms


def teacher_outputs(teacher: Backbone, data: TensorBatches, layer: str | None,
                    batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's logits on ``data`` and, with ``layer``, that module's outputs (float16), from one pass — so the
    teacher runs once per image, not once per student epoch (the targets of Hinton et al. and FitNets' hints)."""
    if layer is None:
        return predict_logits(teacher, data, batch_size), None
    feats: list[torch.Tensor] = []
    with FeatureTap(teacher, layer) as tap:
        def logits_and_features(x: torch.Tensor) -> torch.Tensor:
            out = teacher(x)
            feats.append(tap.output.half().contiguous())  # float16: a feature map per image adds up
            return out

        logits = torch.cat(batched_outputs(teacher, data, logits_and_features, batch_size))
    return logits, torch.cat(feats)


def new_student(student: str | Backbone, build: Callable[[str], Backbone], seed: int) -> Backbone:
    """A copy of a given student model, or ``build(name)`` after seeding with ``seed`` — so that the same seed gives
    the same starting weights to the KD student and, copied, to the labels-only one."""
    if isinstance(student, Backbone):
        return copy.deepcopy(student)
    torch.manual_seed(seed)
    return build(student)


def check_hint_layers(hint_layer: str | None, teacher_layer: str | None) -> None:
    """Refuse half a FitNets hint (Romero et al., 2015), before any work: the student's ``hint_layer`` is matched to
    the teacher's ``teacher_layer``, so one without the other has nothing to match."""
    if (hint_layer is None) != (teacher_layer is None):
        given, missing = ("hint_layer", "teacher_layer") if teacher_layer is None else ("teacher_layer", "hint_layer")
        raise ConfigError(missing, f"a module name beside {given}", None, "hint distillation needs both hint_layer "
                          "(a student module) and teacher_layer (a teacher module)")


def hint_regressor(student: Backbone, s_train: TensorBatches, hint_layer: str | None,
                   t_feats: torch.Tensor | None) -> tuple[HintLoss | None, FeatureTap | None]:
    """FitNets (Romero et al., 2015): the regressor from the student's ``hint_layer`` to the teacher's features, and
    the tap that reads that layer (``None, None`` without hints). The student layer's shape is probed on two
    training rows, so the regressor exists (and is in the optimiser) before training starts."""
    if hint_layer is None:
        return None, None
    if hint_layer not in module_names(student):
        FeatureTap(student, hint_layer)  # raises, listing the valid names
    example = s_train.__getitems__([0, 1])[0]
    s_shape = probe_shape(student, hint_layer, example)
    return HintLoss(s_shape, tuple(t_feats.shape[1:])), FeatureTap(student, hint_layer)


@dataclasses.dataclass(frozen=True)
class DistillData:
    """What a run reads: the teacher (model and bundle metadata), the data's training split and the sets drawn."""

    teacher: Backbone
    teacher_meta: dict[str, Any]
    full: ImageSet
    train_set: ImageSet  # the transfer set: the labelled images, then those with hidden labels
    val_set: ImageSet
    labels: np.ndarray  # the transfer set's labels, -1 where hidden
    test_set: ImageSet


@dataclasses.dataclass(frozen=True)
class DistillPlan:
    """What trains: the KD student with its data, loss and parameter groups, and the labels-only student's start."""

    student: Backbone
    template: Backbone  # the labels-only student starts from these weights (the KD student's, before training)
    s_train: TensorBatches  # the transfer set for the student, the teacher's outputs as extras
    val_b: TensorBatches
    test_b: TensorBatches
    tap: FeatureTap | None
    loss: DistillLoss
    groups: list[dict[str, Any]]
    cfg: TrainConfig
    seed: int
    teacher_time: float


def plan_distillation(d: DistillData, student: str | Backbone, build: Callable[[str], Backbone], kd: KDLoss,
                      layers: tuple[str | None, str | None], hint_weight: float,
                      fit_options: FitOptions) -> DistillPlan:
    """The teacher's one pass over the transfer set, then the student (:func:`new_student`, seeded) and its copy for
    the labels-only run, the student's data with the teacher's outputs as extras, the KD (+ hint) loss and the
    parameter groups — in this order, which fixes the random draws (weights of the student and of the hint
    regressor). ``layers`` is ``(hint_layer, teacher_layer)``: the student's and the teacher's module for hints."""
    hint_layer, teacher_layer = layers
    t0 = time.perf_counter()
    t_logits, t_feats = teacher_outputs(d.teacher, to_batches(d.train_set, d.teacher.input_spec), teacher_layer)
    teacher_time = time.perf_counter() - t0
    model = new_student(student, build, fit_options.seed)
    template = copy.deepcopy(model)  # the labels-only student starts from the same architecture
    spec = model.input_spec
    s_train = to_batches(d.train_set, spec)
    s_train = TensorBatches(s_train.x, torch.from_numpy(d.labels), spec.mean, spec.std, s_train.key,
                            extras=(t_logits,) if t_feats is None else (t_logits, t_feats), view=s_train.view)
    val_b, test_b = to_batches(d.val_set, spec), to_batches(d.test_set, spec)
    hint, tap = hint_regressor(model, s_train, hint_layer, t_feats)
    loss = DistillLoss(kd, hint, tap, hint_weight)
    cfg = TrainConfig.of(dataclasses.replace(fit_options, lr=fit_options.lr or 1e-3))
    groups = [{"params": list(model.parameters()), "lr": cfg.lr, "name": "student"}]
    if hint is not None:
        groups.append({"params": list(hint.parameters()), "lr": cfg.lr, "name": "hint_regressor"})
    return DistillPlan(model, template, s_train, val_b, test_b, tap, loss, groups, cfg, fit_options.seed, teacher_time)


def fit_students(plan: DistillPlan, d: DistillData, run_dir: Path, resume_from: Path | None,
                 baseline: Planner | None) -> tuple[FitResult, TrainedModel | None]:
    """The KD student (continued from ``resume_from`` when given), then with a ``baseline`` planner (``scratch``) the
    labels-only student from the same starting weights on the labelled rows only — the honest comparison, always
    trained afresh (it has no checkpoints). Every DDP process takes part in both."""
    cfg = plan.cfg
    if resume_from is not None:  # the student's training continues; the labels-only baseline reruns
        cfg = dataclasses.replace(cfg, resume_from=str(resume_from))
    try:
        fit = fit_with_targets(plan.student, plan.loss, plan.groups, plan.s_train, plan.val_b, cfg, run_dir)
    finally:
        if plan.tap is not None:
            plan.tap.remove()
    if baseline is None:
        return fit, None
    lab = labelled_prefix(plan.s_train, d.labels, plan.student.input_spec)
    plain = train(baseline, plan.template, d.full.num_classes, lab, plan.val_b,
                  dataclasses.replace(cfg, resume_from=None), None)
    return fit, plain


def model_latency(model: Backbone) -> dict[str, dict[str, float]]:
    """CPU latency of ``model`` at batch 1 and 64 on random inputs of its own input size: what a smaller student
    buys, measured rather than assumed from its parameter count."""
    spec = model.input_spec
    shape = (spec.channels, *(spec.size or (224, 224)))
    return {f"batch_{b}": measure_latency(model, shape, b, repeats=20 if b == 1 else 5) for b in (1, 64)}


def score_models(d: DistillData, plan: DistillPlan, plain: Backbone | None, latency: bool,
                 score: Scorer) -> list[dict[str, Any]]:
    """Teacher, KD student and (when trained) the labels-only student ``plain``, each scored once on the test split
    with ``score``, each with its own preprocessing (the teacher's batches are prepared here): test metrics,
    accuracy, macro-F1, parameters, input size and (``latency``) CPU latency."""
    teacher_b = to_batches(d.test_set, d.teacher.input_spec)
    models = [("teacher", d.teacher, teacher_b), ("student (KD)", plan.student, plan.test_b)]
    if plain is not None:
        models.append(("student (labels only)", plain, plan.test_b))
    summary = []
    for name, model, batches in models:
        test = score(model, batches, d.full.classes)
        entry = {"model": name, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
                 "params": model.num_parameters(), "input": list(model.input_spec.size or []), "test": test}
        if latency:
            entry["latency"] = model_latency(model)
        summary.append(entry)
    return summary
