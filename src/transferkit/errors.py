"""The exceptions a caller of transferkit handles, in a module that imports nothing heavy.

The command line catches these around every command; defining them here (not beside the training loop that raises
them) lets ``transferkit --help`` start without importing PyTorch.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Collection, Mapping
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

    def as_flag(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with ``field`` written as the command line's flag (``batch_size`` → ``--batch-size``;
        ``flags`` maps the fields whose flag is spelled otherwise, e.g. ``options`` → ``--option``)."""
        return self._text((flags or {}).get(self.field) or "--" + self.field.replace("_", "-"))


_ASSIGNMENT = re.compile(r"(?<![\w:,.=/'\"-])([a-z][a-z0-9_]*)=([^\s,;)]+?)(?=[\s,;)]|\.(?:\s|$)|$)")


def spell_flags(message: str, names: Collection[str]) -> str:
    """``message`` with each Python keyword the library suggests (``image_size=224``, ``overwrite=True``,
    ``resume=False``) written as the command line's flag (``--image-size 224``, ``--overwrite``, ``--no-resume``).

    Library messages name options as a Python caller passes them; the command line shows them as flags. Only
    ``name=value`` where ``name`` is one of ``names`` (the commands' option names) and nothing but a space or a
    bracket precedes it changes, so values quoted from the user (``'finetune:lr=0.1'``) stay as given.
    """

    def flag(match: re.Match[str]) -> str:
        name, value = match.groups()
        if name not in names:
            return match.group(0)
        dashed = name.replace("_", "-")
        return {"True": f"--{dashed}", "False": f"--no-{dashed}"}.get(value, f"--{dashed} {value}")

    return _ASSIGNMENT.sub(flag, message)
