"""``lr_find``: the learning-rate range test for one strategy on one target task, as a plot and a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from transferkit.api.runs import (
    RunResult,
    check_channels,
    load_source,
    load_task,
    make_strategy,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.config import TrainConfig
from transferkit.data.prepare import to_batches
from transferkit.data.splits import labelled_budget_split
from transferkit.engine.lr_find import find_lr
from transferkit.report.plots import plot_lr_find
from transferkit.rundir import check_output_dir, staged_output


def lr_find(
    source: str | Path | Backbone, data: str = "fashion_mnist", classes: str | list[int] | None = None,
    labels_per_class: int | None = None, strategy: str = "finetune", options: dict[str, Any] | None = None,
    out: str | Path = "runs/lr_find", batch_size: int | None = None, optimizer: str = "adamw",
    weight_decay: float = 1e-4, seed: int = 0, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100,
    val_per_class: int | None = None, val_fraction: float = 0.1, image_size: int | None = None,
    convert_channels: bool = False, console: Console | None = None,
) -> RunResult:
    """Sweep the learning rate of ``strategy`` (with ``options``) on the target training set from ``min_lr`` to
    ``max_lr`` over ``steps`` steps; write ``out/lr_find.png``, ``lr_find.json`` and ``config.yaml``.

    The training set is the one ``transfer`` would use with the same ``labels_per_class`` and ``seed``
    (the validation part is held out and not used). Use the suggestion as ``--lr``.
    """
    console = console or Console()
    config = {"command": "lr-find", **{k: str(v) if k == "source" else v for k, v in locals().items()
                                        if k not in ("console",)}}
    strat = make_strategy(strategy, options=options)
    cfg = TrainConfig(batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay, seed=seed,
                      progress=False, checkpoints=False, lr=min_lr)
    check_output_dir(out, [source, data])  # before anything loads or trains
    set_threads()
    model, meta = load_source(source, image_size)
    full = load_task(data, "train", classes)
    check_channels(full, model, convert_channels, f"--data {data}")
    train_set, _ = labelled_budget_split(full, labels_per_class, val_per_class, val_fraction, seed)
    result = find_lr(strat, model, full.num_classes, to_batches(train_set, model.input_spec), cfg, min_lr, max_lr,
                     steps)
    out = Path(out)
    metrics = {"suggestion": result.suggestion, "lrs": result.lrs, "losses": result.losses, "strategy": strategy,
               "options": options or {}, "n_train": len(train_set)}
    with staged_output(out, "lr-find") as tmp:
        write_yaml(tmp / "config.yaml", config)
        write_json(tmp / "lr_find.json", metrics)
        plot_lr_find(result.lrs, result.losses, result.suggestion, tmp / "lr_find.png",
                     f"{meta.get('source', 'source')} → {data}: {strategy}")
    if result.suggestion is None:
        console.print("no suggestion: the loss never fell steadily; widen --min-lr/--max-lr or use more --steps")
    else:
        console.print(f"suggested learning rate for {strategy}: [bold]{result.suggestion:.3g}[/]  "
                      f"(plot: {out / 'lr_find.png'})")
    return RunResult(out, metrics)
