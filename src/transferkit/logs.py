"""Logging helpers shared by the jobs: quieting one logger for the span of a block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise logger ``name`` to ``level`` inside the block and restore its own level afterwards (e.g. one cache line
    per cell would drown a progress bar; a deliberately long verification text needs no truncation warning)."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)
