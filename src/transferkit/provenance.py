"""What a result depends on besides its options: library versions, the code's git commit, the data's fingerprints.

Every training run records :func:`provenance` in its ``metrics.json``, so that a figure can be traced to the
exact software and data that produced it, and two runs can be checked to have had the same inputs.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("transferkit", "torch", "torchvision", "lightning", "torchmetrics", "numpy", "scikit-learn", "timm",
             "peft", "safetensors")


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Python, platform and the versions of the libraries that shape the numbers (``None`` = not installed)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": versions}


def git_commit(directory: str | Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout containing ``directory``, or ``None`` (no git, not a checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


@functools.lru_cache(maxsize=1)
def _code_commit() -> dict[str, Any] | None:
    return git_commit(Path(__file__).resolve().parent)


def provenance(seed: int | None, fingerprints: dict[str, str | None],
               device: dict[str, Any] | None = None, loading: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record a run's ``metrics.json`` carries: seed, data fingerprints per split, environment, the git
    commits of transferkit's code (when run from a checkout) and of the working directory's project (if any), and,
    when given, the device it trained on (:func:`transferkit.engine.device.describe`) and how its training data was
    read (:func:`transferkit.data.prepare.data_loading`: in memory, or streamed from the prepared cache)."""
    return {"seed": seed, "data_fingerprints": fingerprints, "environment": environment(),
            "transferkit_git": _code_commit(), "project_git": git_commit(Path.cwd()),
            **({"device": device} if device is not None else {}),
            **({"data_loading": loading} if loading is not None else {})}
