"""The evaluation data of the ``fewshot`` job (:mod:`transferkit.api.fewshot_job`): the test split when the data has
one (and ``evaluate_on`` allows it), else every training example not drawn as one of the K per class — disjoint from
the K examples either way, and never used for any choice."""

from __future__ import annotations

from typing import Any

import numpy as np

from transferkit.data.base import AnyDataset
from transferkit.data.job_task import load_task
from transferkit.data.registry import has_split
from transferkit.errors import ConfigError

EVALUATE_ON = ("auto", "test", "rest")


def evaluation_set(data: str, full: AnyDataset, train_idx: np.ndarray, classes: Any, strict: bool,
                   evaluate_on: str) -> tuple[AnyDataset, str]:
    """The test split (when there is one and ``evaluate_on`` allows it) or the rest of the training split."""
    if evaluate_on not in EVALUATE_ON:
        raise ConfigError("evaluate_on", f"one of {', '.join(EVALUATE_ON)}", evaluate_on)
    if evaluate_on in ("auto", "test") and has_split(data, "test"):
        test = load_task(data, "test", classes, strict)
        if test.classes != full.classes:
            raise ConfigError("data", "a test split with the training split's classes", data,
                              f"the test split's classes {test.classes} differ from the training split's "
                              f"{full.classes}")
        return test, "test"
    if evaluate_on == "test":
        raise ConfigError("evaluate_on", f"auto or rest ({data} has no test split)", evaluate_on,
                          "rest evaluates on the training examples not sampled as the K per class")
    rest = np.setdiff1d(np.arange(len(full)), train_idx)
    if len(rest) == 0:
        raise ConfigError("data", "a test split, or training examples beyond the K per class to evaluate on", data,
                          "none are left after taking the K per class")
    return full.subset(rest, f"{full.name}[rest]"), "rest of the training split"
