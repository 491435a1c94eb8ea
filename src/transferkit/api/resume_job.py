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

from typing import Any

from transferkit.api.adapt_job import adapt
from transferkit.api.distill_job import distill
from transferkit.api.pretrain_job import pretrain
from transferkit.api.runs import RunResult
from transferkit.api.train import transfer
from transferkit.errors import ConfigError
from transferkit.options import ResumeConfig
from transferkit.rundir import recorded_config
from transferkit.terminal import Console

RESUMABLE = {"pretrain": pretrain, "transfer": transfer, "adapt": adapt, "distill": distill}


def resume(*args: Any, config: ResumeConfig | None = None, console: Console | None = None,
           **options: Any) -> RunResult:
    """Continue the interrupted ``pretrain``/``transfer``/``adapt``/``distill`` run at ``out``.

    ``resume(out, **options)`` or ``resume(config=ResumeConfig(...), **overrides)``: ``out`` and ``progress`` are
    :class:`~transferkit.options.ResumeConfig`'s; any other keyword overrides the interrupted run's own option of
    that name, and may only change options that do not alter the result (``devices``, ``num_nodes``,
    ``accelerator`` must still give the same number of processes — the checkpoint checks).
    """
    own = {k: options.pop(k) for k in ResumeConfig.names() if k in options}
    if config is not None and (args or own):
        raise TypeError(f"resume: give either config= or {', '.join(own) or 'the run directory'}, not both")
    c = config if config is not None else ResumeConfig.build(*args, **own)
    out = c.out
    if out is None:
        raise ConfigError("out", "the interrupted run's directory", None)
    recorded = recorded_config(out)
    command = recorded.pop("command", None)
    if command not in RESUMABLE:
        raise ValueError(f"resume {out}: its config.yaml names the command {command!r}; resumable commands: "
                         f"{', '.join(RESUMABLE)}")
    source = str(recorded.get("source", ""))
    if source.startswith("<") and source.endswith("model object>"):
        raise ValueError(f"resume {out}: the run was started from Python with a model object as its source; call "
                         f"{command}(..., resume=True) with the same object instead")
    recorded.update(options, out=str(out), resume=True, overwrite=False, progress=c.progress)
    return RESUMABLE[command](**recorded, console=console)
