"""``lr_find``: the learning-rate range test for one strategy on one target task, as a plot and a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import RunResult, make_strategy, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.class_map import class_map_of
from transferkit.data.job_task import load_task
from transferkit.data.prepare import to_batches
from transferkit.data.splits import labelled_budget_split
from transferkit.engine.lr_find import find_lr
from transferkit.options import LrFindConfig
from transferkit.report.plots import plot_lr_find
from transferkit.rundir import check_output_dir, staged_output
from transferkit.source_loading import check_channels, load_source
from transferkit.terminal import Console


def lr_find(*args: Any, config: LrFindConfig | None = None, console: Console | None = None,
            **options: Any) -> RunResult:
    """Sweep the learning rate of a strategy (with its options) on the target training set from ``min_lr`` to
    ``max_lr`` over ``steps`` steps; write ``out/lr_find.png``, ``lr_find.json`` and ``config.yaml``.

    The options are :class:`~transferkit.options.LrFindConfig`'s fields by their flat names (``source``, ``data``,
    ``classes`` also by position): the source, task and strategy as for :func:`~transferkit.api.train.transfer`,
    the optimiser (``batch_size``, ``optimizer``, ``weight_decay``, ``seed``), the sweep (``min_lr``, ``max_lr``,
    ``steps``) and ``out``. The training set is the one ``transfer`` would use with the same ``labels_per_class`` and
    ``seed`` (a validation part is held out and not used). Use the suggestion as ``--lr``.
    """
    c = LrFindConfig.given(config, args, options)
    src, task, st, opt = c.source, c.task, c.strategy, c.optimiser
    console = terminal.resolve(console)
    record = c.record("lr-find")
    if isinstance(src.source, Backbone):
        record["source"] = f"<{src.source.arch} model object>"
    strat = make_strategy(st.strategy, st.freeze, st.probe_layer, st.options)
    cfg = TrainConfig.of(opt, progress=False, checkpoints=False, lr=c.min_lr)
    check_output_dir(c.out, [src.source, task.data, src.weights, task.class_map])  # before anything loads or trains
    set_threads()
    model, meta = load_source(src.source, src.image_size, src.weights, src.max_length)
    cmap = class_map_of(task.class_map)
    full = load_task(task.data, "train", task.classes, task.strict, cmap, workers=task.workers)
    check_channels(full, model, task.convert_channels, f"data={task.data}")
    train_set, _ = labelled_budget_split(full, task.labels_per_class, task.val_per_class, task.val_fraction, opt.seed)
    result = find_lr(strat, model, full.num_classes, to_batches(train_set, model.input_spec), cfg, c.min_lr, c.max_lr,
                     c.steps)
    out = Path(c.out)
    metrics = {"suggestion": result.suggestion, "lrs": result.lrs, "losses": result.losses, "strategy": st.strategy,
               "options": st.options or {}, "n_train": len(train_set)}
    with staged_output(out, "lr-find") as tmp:
        write_yaml(tmp / "config.yaml", record)
        write_json(tmp / "lr_find.json", metrics)
        plot_lr_find(result.lrs, result.losses, result.suggestion, tmp / "lr_find.png",
                     f"{meta.get('source', 'source')} → {task.data}: {st.strategy}")
    if result.suggestion is None:
        console.print("no suggestion: the loss never fell steadily; widen --min-lr/--max-lr or use more --steps")
    else:
        console.print(f"suggested learning rate for {st.strategy}: [bold]{result.suggestion:.3g}[/]  "
                      f"(plot: {out / 'lr_find.png'})")
    return RunResult(out, metrics)
