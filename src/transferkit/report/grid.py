"""The report text ``compare`` and ``curve`` share (:mod:`transferkit.api.grid_job`): how a grid's labelled budgets
were used and the report's first paragraph — functions of the grid's configuration and its cells."""

from __future__ import annotations

from typing import Any

from transferkit.options import GridConfig
from transferkit.tuning.grid_plan import CELLS_DIR, GridResult


def budget_sentence(val_per_class: int | None) -> str:
    """How a grid's labelled budgets were used, for its report: K labels per class in total (the final model of every
    cell trains on all K; the probe's C by cross-validation on them, stepped strategies a fixed recipe), or K plus a
    separate validation set of ``val_per_class`` per class."""
    if val_per_class:
        return (f"Each budget K means K labelled training-split images per class to train on plus {val_per_class} "
                f"other images per class as a fixed validation set (kept epoch / early stopping): a budget of "
                f"K + {val_per_class} per class.")
    return ("Each budget K means K labelled training-split images per class in total, and every cell's final model "
            "trains on all K: linear_probe chooses its C by stratified cross-validation on those K; stepped "
            "strategies (scratch, finetune, …) run a fixed recipe with no validation set and keep their final weights. "
            "'all' is the whole training split minus a stratified validation part.")


def grid_intro(cfg: GridConfig, source: Any, input_spec: Any, class_names: list[str], seeds: list[int],
               done: GridResult, design: str, axis_note: str = "") -> list[str]:
    """The report's first paragraph (``source`` and its ``input_spec``, the target and its ``class_names``, the
    ``seeds`` and the job's ``design``, the budget rule, scoring, ``axis_note``) and its cell count (``done``)."""
    test_note = (f"a fixed stratified subset of {cfg.grid.test_per_class} test images per class"
                 if cfg.grid.test_per_class else "the whole test split")
    return [f"Source: `{source}` (input {input_spec.channels}×"
            f"{'×'.join(map(str, input_spec.size or ('any',)))}). Target: `{cfg.task.data}` classes "
            f"{cfg.task.classes or 'all'} ({', '.join(class_names)}). Seeds {seeds}{design}. "
            f"{budget_sentence(cfg.task.val_per_class)} Scored once per cell on {test_note}. Mean ± sample std "
            "over seeds; a row marked 'did not learn' is not significantly above the majority-class rate "
            f"(one-sided binomial test at 1 %) and is ranked against nothing.{axis_note}",
            "",
            f"Cells: {done.computed} computed in this run, {done.reused} reused from earlier runs (`{CELLS_DIR}/`)"
            + (f"; {done.outside} more cells on disk lie outside this grid and are not reported."
               if done.outside else ".")]
