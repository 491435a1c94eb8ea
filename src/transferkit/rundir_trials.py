"""The trials a search leaves in its run directory (``transferkit auto``'s probes, rungs and refit): a finished
trial's resume checkpoints dropped, and the leading trial's bundle kept as the search's ``bundle/``.

File bookkeeping on run directories, beside :mod:`transferkit.rundir` (floor 3): no model is loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transferkit import atomic


def drop_checkpoints(run_dir: Path) -> None:
    """Remove a finished trial's Lightning checkpoints (resume state, hundreds of MB for a large backbone over a
    search): auto never resumes a trial, and its bundle, metrics and report stay."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def keep_bundle(run_dir: Path, out: Path) -> None:
    """Copy ``run_dir``'s bundle to ``<out>/bundle``, replacing it atomically: an interrupted run keeps the best."""
    with atomic.staged_dir(out / "bundle") as tmp:
        shutil.copytree(run_dir / "bundle", tmp, dirs_exist_ok=True)
