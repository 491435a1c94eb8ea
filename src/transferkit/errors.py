"""The exceptions a caller of transferkit handles, in a module that imports nothing heavy.

The command line catches these around every command; defining them here (not beside the training loop that raises
them) lets ``transferkit --help`` start without importing PyTorch.
"""

from __future__ import annotations

import signal
from pathlib import Path


class Interrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived during training; a checkpoint was saved first (``checkpoint``)."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.checkpoint = signum, checkpoint


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient; the message names the step and what to try."""
