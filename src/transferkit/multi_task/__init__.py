"""Multi-task transfer: one pretrained backbone, one head per task, trained together (the package is named
``multi_task`` so that it does not shadow the :func:`transferkit.multitask` function).

* :mod:`~transferkit.multi_task.spec` — the ``tasks.yaml`` spec (tasks from one dataset's label columns/functions, or
  from several datasets of one input kind) and its checks;
* :mod:`~transferkit.multi_task.data` — the label matrix (``-1`` = no label), labelled budgets, task sampling;
* :mod:`~transferkit.multi_task.weighting` — fixed, uncertainty (Kendall et al., 2018), GradNorm (Chen et al., 2018)
  and dynamic weight averaging (Liu et al., 2019);
* :mod:`~transferkit.multi_task.train` — the tasks' plan, the shared model's training and its comparison with
  single-task models of as many steps and with holdout probes (not imported here: it needs the training loop).

The training loop is :mod:`transferkit.engine.multitask`; the job that reads the spec and writes the run directory
is :func:`transferkit.api.multitask`.
"""

from transferkit.multi_task.spec import SAMPLINGS, WEIGHTINGS, MultiTaskSpec, TaskSpec, load_spec, parse_spec
from transferkit.multi_task.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    GradNorm,
    TaskWeighting,
    UncertaintyWeighting,
    make_weighting,
)

__all__ = ["SAMPLINGS", "WEIGHTINGS", "DynamicWeightAverage", "FixedWeighting", "GradNorm", "MultiTaskSpec",
           "TaskSpec", "TaskWeighting", "UncertaintyWeighting", "load_spec", "make_weighting", "parse_spec"]
