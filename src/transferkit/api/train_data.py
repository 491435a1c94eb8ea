"""The load stage of ``pretrain``/``transfer``: the data a training job trains and scores on, loaded and split before
its run directory opens (so that bad data fails first). Job composition: the task (:mod:`transferkit.data.job_task`),
the source's channels (:mod:`transferkit.source_loading`), the labelled split (:mod:`transferkit.data.run_splits`)
and the batches, in the order the job always loaded them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from transferkit.backbones.base import Backbone
from transferkit.data.job_task import head_init_mapping, load_task
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.run_splits import job_split
from transferkit.options import TaskOptions
from transferkit.source_loading import check_channels


@dataclasses.dataclass
class JobData:
    """What a training job trains and scores on, loaded before its run directory opens (so that bad data fails
    first): the training split ``full`` (after ``--classes`` and the class map), the training and validation sets and
    their batches, the test batches (``None`` without a test split or with ``evaluate_test=False``), the head-init
    ``mapping`` and ``source_classes``, the positions ``train_idx`` of the training set in ``full`` (``None``: all of
    it) and whether a calling job ``given`` them (``split_indices``)."""

    full: Any
    train_set: Any
    val_set: Any
    train_b: Any
    val_b: Any
    test_b: Any
    mapping: Any
    source_classes: Any
    train_idx: np.ndarray | None
    given: bool


def job_data(source_model: Backbone, source_meta: dict[str, Any], task: TaskOptions, seed: int,
             class_map: dict[str, str] | None, head_init: bool, evaluate_test: bool,
             split_indices: tuple[Any, Any] | None) -> JobData:
    """Load and split a training job's data — the training split, the channel check, the head-init mapping, the
    labelled split (:func:`~transferkit.data.run_splits.job_split`), the batches, then the test split — in that
    order, as the job always did; the seeded draws depend on ``seed`` alone."""
    data, classes, strict = task.data, task.classes, task.strict
    full = load_task(data, "train", classes, strict, class_map, task.workers)
    check_channels(full, source_model, task.convert_channels, f"data={data}")
    mapping, source_classes = head_init_mapping(full.classes, source_meta, head_init)
    train_set, val_set, train_idx, given = job_split(full, task.labels_per_class, task.val_per_class,
                                                     task.val_fraction, seed, split_indices)
    spec = source_model.input_spec
    train_b, val_b = to_batches(train_set, spec), to_batches(val_set, spec)
    test_set = load_task(data, "test", classes, strict, class_map, task.workers) \
        if evaluate_test and has_split(data, "test") else None
    test_b = to_batches(test_set, spec) if test_set is not None else None
    return JobData(full, train_set, val_set, train_b, val_b, test_b, mapping, source_classes, train_idx, given)
