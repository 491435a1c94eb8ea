"""The demo (``make demo``): Fashion-MNIST split task, three kinds of transfer compared over seeds.

Source task: classes {0, 1, 5, 8, 9} (T-shirt, trouser, sandal, bag, ankle boot), all their training
images, ``seed_cnn`` trained from scratch. Target task: classes {2, 3, 4, 6, 7} (pullover, dress, coat,
shirt, sneaker) with 5, 10 and 50 labels per class. Scratch vs linear probe vs fine-tune, 3 seeds.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console

from transferkit import atomic
from transferkit.api.compare import compare
from transferkit.api.runs import RunResult
from transferkit.api.train import pretrain
from transferkit.report.markdown import markdown_table

SOURCE_CLASSES = "0,1,5,8,9"
TARGET_CLASSES = "2,3,4,6,7"


def demo(out: str | Path = "runs/demo", seeds: int = 3, labels_per_class: tuple[int, ...] = (5, 10, 50),
         source_epochs: int = 3, epochs: int = 30, console: Console | None = None) -> RunResult:
    """Run the demo and write ``out/report.md`` (with ``out/source/`` and ``out/split_task/`` beneath)."""
    console = console or Console()
    out = Path(out)
    start = time.perf_counter()
    src_dir = out / "source"
    wanted = {"data": "fashion_mnist", "classes": SOURCE_CLASSES, "backbone": "seed_cnn", "epochs": source_epochs,
              "seed": 0}
    if _same_source(src_dir, wanted):
        console.print(f"[bold]1/2[/] re-using the source model in {src_dir} (same configuration)")
    else:
        console.print("[bold]1/2[/] pretraining seed_cnn on Fashion-MNIST classes {0,1,5,8,9} (source task)")
        pretrain(out=src_dir, progress=True, console=console, **wanted)
    console.print("[bold]2/2[/] transferring to classes {2,3,4,6,7}: scratch vs linear_probe vs finetune")
    result = compare(src_dir, "fashion_mnist", TARGET_CLASSES, labels_per_class=labels_per_class,
                     seeds=tuple(range(seeds)), out=out / "split_task", epochs=epochs,
                     title="Fashion-MNIST {0,1,5,8,9} → {2,3,4,6,7} (seed_cnn)", console=console)
    wall = time.perf_counter() - start
    rows = [[r["strategy"], r["labels_per_class"], f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}"]
            for r in result.metrics["summary"]]
    text = "\n".join([
        "# transferkit demo", "",
        "Source: `seed_cnn` trained from scratch on Fashion-MNIST classes {0,1,5,8,9} "
        "(T-shirt, trouser, sandal, bag, ankle boot) — see [source/report.md](source/report.md).",
        "Target: classes {2,3,4,6,7} (pullover, dress, coat, shirt, sneaker) with few labels; "
        "structure transfer (`scratch`, the baseline), feature transfer (`linear_probe` on the 1600 Flatten "
        f"features) and parameter transfer (`finetune`), {seeds} seeds, test accuracy mean ± std.", "",
        markdown_table(["strategy", "labels/class", "test accuracy"], rows), "",
        *[f"- {f}" for f in result.metrics["findings"]], "",
        "Details: [split_task/report.md](split_task/report.md)", "",
        "![comparison](split_task/comparison.png)", "",
        f"Wall time: {wall:.0f} s.",
    ])
    atomic.write_text(out / "report.md", text + "\n")
    console.print(f"\n[bold green]Demo finished in {wall:.0f} s.[/] Report: {out / 'report.md'}")
    return RunResult(out, {**result.metrics, "wall_time_s": wall})


def _same_source(src_dir: Path, wanted: dict) -> bool:
    """True when ``src_dir`` holds a finished source run made with the same options."""
    try:
        cfg = yaml.safe_load((src_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (src_dir / "bundle" / "model.safetensors").is_file() and all(cfg.get(k) == v for k, v in wanted.items())
