"""``distill``: a large teacher bundle → a small student, with a labels-only student trained beside it.

What runs (the method is :mod:`transferkit.distillation.train`; this module loads, hands over and writes):

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
   test split with their parameter counts and CPU latency at batch 1 and 64. The student's bundle records the
   teacher's lineage.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import torch

from transferkit import terminal
from transferkit.api.runs import RunResult, score, set_threads, write_json, write_yaml
from transferkit.bundle import save_bundle
from transferkit.config import FitOptions, check_budget, steps_replace_default_epochs
from transferkit.data.job_task import check_classes, load_task, require_images
from transferkit.data.registry import has_split
from transferkit.data.subsets import transfer_set
from transferkit.distillation import KDLoss
from transferkit.distillation import train as distil
from transferkit.errors import ConfigError
from transferkit.options import DistillConfig
from transferkit.report.distill import distill_facts, distill_metrics, models_table, write_distill_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.source_loading import backbone_for_data, check_channels, load_source
from transferkit.strategies.base import get_strategy
from transferkit.terminal import Console


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
    console = terminal.resolve(console)
    fit_options, kd, inputs = _check(c)
    set_threads()
    start = time.perf_counter()
    d = _load(c, fit_options.seed)
    build = functools.partial(backbone_for_data, channels=d.full.channels, num_classes=d.full.num_classes,
                              pretrained=c.pretrained, image_size=c.image_size)
    plan = distil.plan_distillation(d, c.student, build, kd, (c.hint_layer, c.teacher_layer), c.hint_weight,
                                    fit_options)
    out = Path(c.run.out)
    with run_session(out, c.run.resume, c.run.overwrite, config_record, inputs) as session:
        write_yaml(session.path / "config.yaml", config_record)
        if session.resume_from is not None:  # the student's training continues; the labels-only baseline reruns
            console.print(f"resuming {out} from {session.resume_from.name}")
        fit, plain = distil.fit_students(plan, d, session.path, session.resume_from,
                                         get_strategy("scratch") if c.baseline else None)
        if session.worker:  # a DDP process other than rank 0: rank 0 scores and writes
            return RunResult(None, {}, plan.student, {"classes": d.full.classes, "rank": fit.rank})
        summary = distil.score_models(d, plan, plain.model if plain is not None else None, c.latency, score)
        lineage = _save_bundle(session.path, c, config_record, d, plan, summary[1]["test"])
        metrics = distill_metrics(summary, fit.to_dict(), plain.fit.to_dict() if plain is not None else None,
                                  d.labels, len(d.val_set), len(d.test_set), plan.teacher_time, plan.seed,
                                  time.perf_counter() - start)
        write_json(session.path / "metrics.json", metrics)
        facts = distill_facts(metrics, str(c.teacher), plan.student.arch, c.temperature, c.alpha,
                              (c.hint_layer, c.teacher_layer, c.hint_weight) if c.hint_layer else None)
        write_distill_report(session.path, metrics, fit.history, facts, summary[1]["test"], torch.get_num_threads())
    console.print(comparison_table(*models_table(metrics["models"]), title=f"distill → {out}"))
    return RunResult(out, metrics, plan.student, {"classes": d.full.classes, "lineage": lineage})


def _check(c: DistillConfig) -> tuple[FitOptions, KDLoss, list[Any]]:
    """Refuse what needs no data, before anything loads or trains: ``(fitting options — steps replacing the
    default epochs, the KD loss — built here as it validates T and α, the job's inputs — never written over)``."""
    if c.teacher is None:
        raise ConfigError("teacher", "a run or bundle directory", None)
    fit_options = steps_replace_default_epochs(c.train, DistillConfig().train)
    check_budget(fit_options.epochs, fit_options.steps)
    kd = KDLoss(c.temperature, c.alpha)  # validates T and α before any work
    distil.check_hint_layers(c.hint_layer, c.teacher_layer)
    inputs = [c.teacher, c.task.data, c.student]  # never written over
    check_output_dir(c.run.out, inputs)  # before anything loads or trains (run_session checks again)
    return fit_options, kd, inputs


def _load(c: DistillConfig, seed: int) -> distil.DistillData:
    """The teacher and the data, checked against each other (image data, classes, channels, a test split), and the
    transfer, validation and test sets — so that nothing trains on data the teacher cannot label."""
    task, data = c.task, c.task.data
    teacher_model, teacher_meta = load_source(c.teacher)
    full = load_task(data, "train", task.classes, task.strict, workers=task.workers)
    require_images(full, f"data={data}", "distillation")
    check_classes(full, teacher_meta, f"teacher={c.teacher}")
    check_channels(full, teacher_model, task.convert_channels, f"data={data}")
    if not has_split(data, "test"):
        raise ValueError(f"distill needs a test split for the final scores; {data} has none")
    train_set, val_set, labels = transfer_set(full, task.labels_per_class, task.val_per_class, c.unlabelled,
                                              task.val_fraction, seed)
    test_set = load_task(data, "test", task.classes, task.strict, workers=task.workers)
    return distil.DistillData(teacher_model, teacher_meta, full, train_set, val_set, labels, test_set)


def _save_bundle(tmp: Path, c: DistillConfig, config_record: dict[str, Any], d: distil.DistillData,
                 plan: distil.DistillPlan, kd_test: dict[str, Any]) -> dict[str, Any]:
    """``tmp/bundle``: the KD student with its test scores and its lineage — how the student started, the teacher
    (with its own lineage), the data and budget, the KD settings; returns the lineage."""
    student = plan.student
    lineage = {"kind": "distill", "source": f"scratch:{student.arch}" if not c.pretrained
               else f"pretrained:{student.arch}", "teacher": str(c.teacher),
               "teacher_lineage": d.teacher_meta.get("lineage"), "data": c.task.data, "classes": d.full.classes,
               "labels_per_class": c.task.labels_per_class, "unlabelled": c.unlabelled, "temperature": c.temperature,
               "alpha": c.alpha, "hint": {"student": c.hint_layer, "teacher": c.teacher_layer} if c.hint_layer
               else None, "seed": plan.seed}
    save_bundle(student, {"classes": d.full.classes, "lineage": lineage, "config": config_record, "metrics": {
        "split": "test", "accuracy": kd_test["accuracy"], "macro_f1": kd_test["macro_f1"], "n": kd_test["n"]}},
        tmp / "bundle")
    return lineage
