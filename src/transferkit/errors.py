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


class ConfigError(ValueError):
    """An option given a value it cannot take, named as the caller named it: the Python parameter (``batch_size``).

    ``field`` is the parameter, ``expected`` what it takes (``"at least 1"``, ``"one of adamw, sgd"``), ``got`` the
    value. The library never spells a command-line flag; the command line rewrites ``field`` as its flag
    (``--batch-size``) with :meth:`as_flag`. ``detail`` adds a sentence (what to do instead).
    """

    def __init__(self, field: str, expected: str, got: object, detail: str = "") -> None:
        self.field, self.expected, self.got, self.detail = field, expected, got, detail
        super().__init__(self._text(field))

    def _text(self, name: str) -> str:
        got = f"'{self.got}'" if isinstance(self.got, str) else repr(self.got)
        return f"{name}: expected {self.expected}, got {got}" + (f"; {self.detail}" if self.detail else "")

    def as_flag(self) -> str:
        """The message with ``field`` written as the command line's flag (``batch_size`` → ``--batch-size``)."""
        return self._text("--" + self.field.replace("_", "-"))
