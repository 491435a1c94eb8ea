"""The fit of the ``fewshot`` job (:mod:`transferkit.api.fewshot_job`) on its K examples per class: the class means
(prototypes) or SetFit's contrastive fine-tuning and head (:mod:`transferkit.few_shot.fitting`) with the options of
:class:`~transferkit.options.FewshotConfig`, its progress shown on the job's console."""

from __future__ import annotations

from typing import Any

import torch

from transferkit import terminal
from transferkit.backbones.base import Backbone
from transferkit.data.prepare import TensorBatches
from transferkit.few_shot.fitting import fit_prototypes, fit_setfit
from transferkit.options import FewshotConfig
from transferkit.terminal import Console


def fit_fewshot(model: Backbone, support: TensorBatches, num_classes: int, c: FewshotConfig, console: Console
                ) -> dict[str, Any]:
    """Fit ``model``'s head (prototypes) or body and head (SetFit, with a progress bar) on the support set; the
    run's details."""
    torch.manual_seed(c.seed)
    if c.method != "setfit":
        return fit_prototypes(model, support, num_classes)
    s = c.setfit
    with terminal.progress_bar(console, c.progress) as bar:
        task = bar.add_task("contrastive fine-tuning", total=None)

        def report(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, description=f"contrastive fine-tuning (loss {loss:.4f})")

        return fit_setfit(model, support, num_classes, c.seed, iterations=s.iterations, max_pairs=s.max_pairs,
                          epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, head_c=s.head_c, progress=report)
