"""The one console interface the jobs write through: a :class:`rich.console.Console` received from the caller.

Every job takes ``console=`` and prints only through it; none makes its own terminal. :func:`resolve` turns the
caller's value into the console to use (``None``: a new one on standard output, or standard error for jobs whose
standard output is data), :func:`silent` is the console of a run that prints nothing (``tk.transfer(...,
console=tk.silent(), progress=False)`` is a silent Python run; ``progress`` is Lightning's own bar), and
:func:`progress_bar` is the transient progress bar of a loop, drawn on that console and hidden when it is silent.
Report code (``report/``) builds the tables and panels the jobs print; it never prints by itself.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn


def resolve(console: Console | None = None, *, stderr: bool = False) -> Console:
    """The console a job prints through: ``console`` itself, or a new one on standard output (``stderr``: standard
    error, for ``predict`` writing its predictions to standard output)."""
    return console if console is not None else Console(stderr=stderr)


def silent() -> Console:
    """A console that prints nothing: pass it as ``console=`` to run a job silently, or use it for the inner runs
    of a search whose own tables would drown its one line per trial."""
    return Console(quiet=True)


def progress_bar(console: Console, enabled: bool = True, *columns: str | ProgressColumn, **options: Any) -> Progress:
    """A transient progress bar drawn on ``console`` (rich's default columns unless ``columns`` are given), disabled
    when ``enabled`` is false or the console is silent."""
    return Progress(*columns, console=console, transient=True, disable=not enabled or console.quiet, **options)


__all__ = ["Console", "progress_bar", "resolve", "silent"]
