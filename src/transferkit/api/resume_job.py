"""``resume``: continue an interrupted training run from its newest good checkpoint, with its own options.

The options come from the interrupted run's ``config.yaml`` (in ``runs/.<name>.partial/``), so the command
line needs nothing but the run directory: ``transferkit resume runs/x`` (or ``transferkit transfer --resume
runs/x``). See :mod:`transferkit.rundir` for where an interrupted run lives and :mod:`transferkit.engine.checkpoints`
for what a checkpoint holds.

**Security.** Resume checkpoints are Lightning checkpoints, i.e. pickles: loading one runs whatever code it names.
Resume only run directories you (or someone you trust) wrote. Resuming one owned by another user, or created on
another machine (the host recorded in its ``.transferkit-run`` marker), warns with
:class:`~transferkit.rundir.UntrustedRunWarning` before the checkpoint is loaded. Share bundles (safetensors, never
unpickled), not checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.api.adapt_job import adapt
from transferkit.api.distill_job import distill
from transferkit.api.pretrain_job import pretrain
from transferkit.api.runs import RunResult
from transferkit.api.train import transfer
from transferkit.rundir import recorded_config
from transferkit.terminal import Console

RESUMABLE = {"pretrain": pretrain, "transfer": transfer, "adapt": adapt, "distill": distill}


def resume(out: str | Path, progress: bool = True, console: Console | None = None,
           **overrides: Any) -> RunResult:
    """Continue the interrupted ``pretrain``/``transfer``/``adapt``/``distill`` run at ``out``.

    ``overrides`` may only change options that do not alter the result (``devices``, ``num_nodes``,
    ``accelerator`` must still give the same number of processes — the checkpoint checks).
    """
    config = recorded_config(out)
    command = config.pop("command", None)
    if command not in RESUMABLE:
        raise ValueError(f"resume {out}: its config.yaml names the command {command!r}; resumable commands: "
                         f"{', '.join(RESUMABLE)}")
    source = str(config.get("source", ""))
    if source.startswith("<") and source.endswith("model object>"):
        raise ValueError(f"resume {out}: the run was started from Python with a model object as its source; call "
                         f"{command}(..., resume=True) with the same object instead")
    config.update(overrides, out=str(out), resume=True, overwrite=False, progress=progress)
    return RESUMABLE[command](**config, console=console)
