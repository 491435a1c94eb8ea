"""Helpers the benchmark scripts share: a resumable results JSON and the Fashion-MNIST split source."""

from __future__ import annotations

import json
from pathlib import Path


def load_results(path: Path) -> dict:
    """The results so far (``{}`` before the first run)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(path: Path, results: dict) -> None:
    """Write ``results`` atomically (a temporary file renamed into place): an interrupted run keeps the last one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def split_source(out: Path) -> Path:
    """seed_cnn pretrained on Fashion-MNIST classes {0,1,5,8,9} (3 epochs, seed 0) in ``out``, trained once."""
    from transferkit.api import pretrain

    if not (out / "bundle").exists():
        pretrain(data="fashion_mnist", classes="0,1,5,8,9", backbone="seed_cnn", epochs=3, seed=0, out=out,
                 progress=False)
    return out
