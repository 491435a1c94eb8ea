"""``report.md`` of ``transferkit demo``: the three classic kinds of transfer, side by side, per part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit import atomic
from transferkit.report.markdown import markdown_table
from transferkit.report.metrics import flag


def write_demo_report(out: Path, parts: list[tuple[str, str, dict[str, Any]]], seeds: int, wall: float) -> None:
    """``out/report.md``: one table per part (``(name, title, compare metrics)``), mean ± std over ``seeds``."""
    lines = [
        "# transferkit demo", "",
        "Three classic kinds of transfer, compared over "
        f"{seeds} seeds (test accuracy, mean ± sample std): **structure transfer** (`scratch`: same architecture, "
        "random init — the baseline), **feature transfer** (`linear_probe`: frozen extractor, new linear head on "
        "cached features; for seed_cnn the 1600 Flatten features) and **parameter transfer** (`finetune`: source "
        "weights up to the layer the probe reads, a new head started from the solved probe (LP-FT), everything "
        "trained). Each labels/class budget K is the whole labelled budget: every "
        "final model trains on all K (the probe chooses its C by cross-validation on them; the others run a fixed "
        "recipe); the test split is used once per cell. A row marked 'did not learn' is at chance level and is "
        "ranked against nothing.", "",
        "The seed_cnn source was trained on Fashion-MNIST classes {0,1,5,8,9} (T-shirt, trouser, sandal, bag, "
        "ankle boot): see [source/report.md](source/report.md).", "",
    ]
    for name, title, metrics in parts:
        rows = [[r["strategy"], r["labels_per_class"],
                 flag(f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}", bool(r.get("did_not_learn"))),
                 f"{r['total_time_s_mean']:.1f}"] for r in metrics["summary"]]
        lines += [f"## {title}", "",
                  markdown_table(["strategy", "labels/class", "test accuracy", "time per run (s)"], rows), "",
                  *[f"- {f}" for f in metrics["findings"]], "",
                  f"Details: [{name}/report.md]({name}/report.md)", "", f"![comparison]({name}/comparison.png)", ""]
    lines.append(f"Wall time of the whole demo: {wall:.0f} s.")
    atomic.write_text(out / "report.md", "\n".join(lines) + "\n")
