"""``distill``: a large teacher bundle → a small student, with a labels-only student trained beside it.

What runs:

1. The **transfer set** — the labelled training images, plus ``unlabelled`` further training-split images whose
   labels are hidden (label ``-1``: the teacher labels them softly) — passes once through the teacher, with the
   teacher's own preprocessing (input size, channels, normalisation). Its logits (and, for hints, the output of
   ``teacher_layer``) are stored; the student, with *its* preprocessing, trains against them. So a 96-px
   ImageNet teacher and a 28-px grey student need no common input format.
2. The student trains with :class:`transferkit.distillation.KDLoss` (``α · T² KL + (1 − α) CE``) and, with
   ``hint_layer``/``teacher_layer``, a FitNets hint term (:class:`transferkit.distillation.HintLoss`, weight
   ``hint_weight``). Early stopping and the kept epoch follow the labelled validation split.
3. ``baseline=True`` (default) trains the same student architecture from the same seed on the labelled images
   only (the honest comparison), and the teacher, the KD student and the labels-only student are scored on the
   test split with their parameter counts and CPU latency at batch 1 and 64.

The student's bundle records the teacher's lineage.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from transferkit.api.runs import (
    RunResult,
    backbone_for_data,
    check_channels,
    check_classes,
    load_source,
    load_task,
    require_images,
    score,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import batched_outputs, measure_latency, predict_logits
from transferkit.bundle import save_bundle
from transferkit.config import TrainConfig, check_budget, steps_replace_default_epochs
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import labelled_budget_indices
from transferkit.distillation import FeatureTap, HintLoss, KDLoss, module_names
from transferkit.engine.targets import fit_with_targets
from transferkit.engine.trainer import train
from transferkit.errors import ConfigError
from transferkit.options import DistillConfig
from transferkit.report.distill import models_table, write_distill_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.strategies.base import get_strategy


class _DistillLoss(nn.Module):
    """KD (+ hint) as one loss module ``(logits, y, teacher_logits[, teacher_features]) -> terms``."""

    def __init__(self, kd: KDLoss, hint: HintLoss | None, tap: FeatureTap | None, hint_weight: float) -> None:
        super().__init__()
        self.kd, self.hint, self.tap, self.hint_weight = kd, hint, tap, float(hint_weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor,
                teacher_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = self.kd(logits, teacher_logits, y)
        if self.hint is not None and teacher_features is not None:
            terms["hint"] = self.hint_weight * self.hint(self.tap.output, teacher_features.float())
        return terms


def transfer_set(full: ImageSet, labels_per_class: int | None, val_per_class: int | None, unlabelled: int,
                 val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet, np.ndarray]:
    """(training images incl. hidden-label ones, validation images, labels with ``-1`` where hidden)."""
    if labels_per_class is None and unlabelled:
        raise ValueError("--unlabelled needs --labels-per-class: without it every training image is labelled")
    tr, va = labelled_budget_indices(full, labels_per_class, val_per_class, val_fraction, seed)
    extra = np.array([], dtype=np.int64)
    if unlabelled:
        rest = np.setdiff1d(np.arange(len(full)), np.concatenate([tr, va]))
        if unlabelled > len(rest):
            raise ConfigError("unlabelled", f"at most {len(rest)} (the further training images left)", unlabelled)
        extra = np.sort(np.random.default_rng(seed + 31337).choice(rest, unlabelled, replace=False))
    idx = np.concatenate([tr, extra])
    labels = full.labels[idx].astype(np.int64)
    labels[len(tr):] = -1
    return full.subset(idx, full.name + "[transfer set]"), full.subset(va, full.name + "[val]"), labels


def _teacher_outputs(teacher: Backbone, data: TensorBatches, layer: str | None,
                     batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def _build_student(student: str | Backbone, num_classes: int, channels: int, image_size: int | None,
                   pretrained: bool, seed: int) -> Backbone:
    if isinstance(student, Backbone):
        return copy.deepcopy(student)
    torch.manual_seed(seed)
    return backbone_for_data(student, channels, num_classes, pretrained, image_size)


def _latency(model: Backbone) -> dict[str, dict[str, float]]:
    spec = model.input_spec
    shape = (spec.channels, *(spec.size or (224, 224)))
    return {f"batch_{b}": measure_latency(model, shape, b, repeats=20 if b == 1 else 5) for b in (1, 64)}


def distill(*args: Any, config: DistillConfig | None = None, console: Console | None = None,
            **options: Any) -> RunResult:
    """Distil ``teacher`` (a run or bundle directory) into ``student`` (a backbone name, random init unless
    ``pretrained``) on ``data``'s training split; score teacher, KD student and labels-only student on the test
    split. ``hint_layer``/``teacher_layer`` name modules (``transferkit``'s ``module_names``) for FitNets hints.

    ``distill(teacher, student, data, classes, **options)`` or ``distill(config=DistillConfig(...))``: the options
    are the flat names of :class:`~transferkit.options.DistillConfig` — the labelled budget (``labels_per_class``,
    ``val_per_class``, ``unlabelled`` further images the teacher labels softly), ``temperature``, ``alpha``, the
    hints, ``baseline``, ``latency``, and the fitting options of :class:`~transferkit.config.FitOptions` (default 20
    epochs at batch 128, lr 1e-3, patience 5; ``steps`` replaces the default epochs). Both students train with DDP
    over ``devices`` × ``num_nodes`` processes when more than one (the teacher's outputs are computed in every
    process; rank 0 scores and writes); ``resume``/``overwrite``/``checkpoint_every`` as for
    :func:`transferkit.api.train.transfer` (a resumed run continues the KD student and retrains the labels-only
    one, which has no checkpoints).
    """
    c = DistillConfig.given(config, args, options)
    config_record = c.record("distill") | {"teacher": str(c.teacher), "student": str(c.student)}
    console = console or Console()
    if c.teacher is None:
        raise ConfigError("teacher", "a run or bundle directory", None)
    teacher, student, task, fit_options = c.teacher, c.student, c.task, steps_replace_default_epochs(
        c.train, DistillConfig().train)
    data, classes, labels_per_class, seed = task.data, task.classes, task.labels_per_class, fit_options.seed
    check_budget(fit_options.epochs, fit_options.steps)
    kd = KDLoss(c.temperature, c.alpha)  # validates T and α before any work
    if (c.hint_layer is None) != (c.teacher_layer is None):
        raise ValueError("hint distillation needs both --hint-layer (student module) and --teacher-layer")
    inputs = [teacher, data, student]  # never written over
    check_output_dir(c.run.out, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    teacher_model, teacher_meta = load_source(teacher)
    full = load_task(data, "train", classes, task.strict)
    require_images(full, f"--data {data}", "distillation")
    check_classes(full, teacher_meta, f"--teacher {teacher}")
    check_channels(full, teacher_model, task.convert_channels, f"--data {data}")
    if not has_split(data, "test"):
        raise ValueError(f"distill needs a test split for the final scores; {data} has none")
    train_set, val_set, labels = transfer_set(full, labels_per_class, task.val_per_class, c.unlabelled,
                                              task.val_fraction, seed)
    test_set = load_task(data, "test", classes, task.strict)

    t0 = time.perf_counter()
    t_logits, t_feats = _teacher_outputs(teacher_model, to_batches(train_set, teacher_model.input_spec),
                                         c.teacher_layer)
    teacher_time = time.perf_counter() - t0
    student_model = _build_student(student, full.num_classes, full.channels, c.image_size, c.pretrained, seed)
    template = copy.deepcopy(student_model)  # the labels-only student starts from the same architecture
    spec = student_model.input_spec
    s_train = to_batches(train_set, spec)
    s_train = TensorBatches(s_train.x, torch.from_numpy(labels), spec.mean, spec.std, s_train.key,
                            extras=(t_logits,) if t_feats is None else (t_logits, t_feats), view=s_train.view)
    val_b, test_b = to_batches(val_set, spec), to_batches(test_set, spec)
    hint, tap = _hint(student_model, s_train, c.hint_layer, t_feats)
    loss = _DistillLoss(kd, hint, tap, c.hint_weight)
    cfg = TrainConfig.of(dataclasses.replace(fit_options, lr=fit_options.lr or 1e-3))
    groups = [{"params": list(student_model.parameters()), "lr": cfg.lr, "name": "student"}]
    if hint is not None:
        groups.append({"params": list(hint.parameters()), "lr": cfg.lr, "name": "hint_regressor"})
    out = Path(c.run.out)
    with run_session(out, c.run.resume, c.run.overwrite, config_record, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", config_record)
        if session.resume_from is not None:  # the student's training continues; the labels-only baseline reruns
            cfg = dataclasses.replace(cfg, resume_from=str(session.resume_from))
            console.print(f"resuming {out} from {session.resume_from.name}")
        try:
            fit = fit_with_targets(student_model, loss, groups, s_train, val_b, cfg, tmp)
        finally:
            if tap is not None:
                tap.remove()
        plain = None
        if c.baseline:  # every DDP process takes part in this training too
            n_lab = int((labels >= 0).sum())
            lab = TensorBatches(s_train.x[:n_lab], s_train.y[:n_lab], spec.mean, spec.std, view=s_train.view)
            plain = train(get_strategy("scratch"), template, full.num_classes, lab, val_b,
                          dataclasses.replace(cfg, resume_from=None), None)
        if session.worker:  # a DDP process other than rank 0: rank 0 scores and writes
            return RunResult(None, {}, student_model, {"classes": full.classes, "rank": fit.rank})
        summary = _scores(teacher_model, student_model, plain.model if plain is not None else None, test_set,
                          test_b, full.classes, c.latency)
        lineage = {"kind": "distill", "source": f"scratch:{student_model.arch}" if not c.pretrained
                   else f"pretrained:{student_model.arch}", "teacher": str(teacher),
                   "teacher_lineage": teacher_meta.get("lineage"), "data": data, "classes": full.classes,
                   "labels_per_class": labels_per_class, "unlabelled": c.unlabelled, "temperature": c.temperature,
                   "alpha": c.alpha,
                   "hint": {"student": c.hint_layer, "teacher": c.teacher_layer} if c.hint_layer else None,
                   "seed": seed}
        kd_test = summary[1]["test"]
        save_bundle(student_model, {"classes": full.classes, "lineage": lineage, "config": config_record, "metrics": {
            "split": "test", "accuracy": kd_test["accuracy"], "macro_f1": kd_test["macro_f1"], "n": kd_test["n"]}},
            tmp / "bundle")
        metrics = {"task": "distill", "split": "test", "accuracy": kd_test["accuracy"], "macro_f1": kd_test["macro_f1"],
                   "models": [{k: v for k, v in e.items() if k != "test"} for e in summary], "fit": fit.to_dict(),
                   "baseline_fit": plain.fit.to_dict() if plain is not None else None,
                   "teacher_pass_s": teacher_time,
                   "n_labelled": int((labels >= 0).sum()), "n_unlabelled": int((labels < 0).sum()),
                   "n_val": len(val_set), "n_test": len(test_set), "seed": seed,
                   "total_time_s": time.perf_counter() - start}
        write_json(tmp / "metrics.json", metrics)
        facts = {"job": "distill", "teacher": str(teacher), "student": student_model.arch,
                 "transfer set": f"{metrics['n_labelled']} labelled + {metrics['n_unlabelled']} unlabelled images",
                 "temperature / α": f"{c.temperature} / {c.alpha}",
                 "hint": f"{c.hint_layer} → {c.teacher_layer} (weight {c.hint_weight})" if c.hint_layer else "none",
                 "best epoch (validation)": fit.best_epoch + 1, "epochs run": fit.epochs_run,
                 "teacher pass": f"{teacher_time:.1f} s", "total time": f"{metrics['total_time_s']:.1f} s"}
        write_distill_report(tmp, metrics, fit.history, facts, kd_test, torch.get_num_threads())
    console.print(comparison_table(*models_table(metrics["models"]), title=f"distill → {out}"))
    return RunResult(out, metrics, student_model, {"classes": full.classes, "lineage": lineage})


def _hint(student: Backbone, s_train: TensorBatches, hint_layer: str | None,
          t_feats: torch.Tensor | None) -> tuple[HintLoss | None, FeatureTap | None]:
    """FitNets: the regressor from the student's ``hint_layer`` to the teacher's features, and the tap that reads
    that layer (``None, None`` without hints)."""
    if hint_layer is None:
        return None, None
    if hint_layer not in module_names(student):
        FeatureTap(student, hint_layer)  # raises, listing the valid names
    from transferkit.distillation import probe_shape

    example = s_train.__getitems__([0, 1])[0]
    s_shape = probe_shape(student, hint_layer, example)
    return HintLoss(s_shape, tuple(t_feats.shape[1:])), FeatureTap(student, hint_layer)


def _scores(teacher: Backbone, student: Backbone, plain: Backbone | None, test_set: Any, test_b: TensorBatches,
            classes: list[str], latency: bool) -> list[dict[str, Any]]:
    """Teacher, KD student and (when trained) the labels-only student, each scored once on the test split: test
    metrics, accuracy, macro-F1, parameters, input size and (``latency``) CPU latency."""
    models = [("teacher", teacher, to_batches(test_set, teacher.input_spec)), ("student (KD)", student, test_b)]
    if plain is not None:
        models.append(("student (labels only)", plain, test_b))
    summary = []
    for name, model, batches in models:
        test = score(model, batches, classes)
        entry = {"model": name, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
                 "params": model.num_parameters(), "input": list(model.input_spec.size or []), "test": test}
        if latency:
            entry["latency"] = _latency(model)
        summary.append(entry)
    return summary
