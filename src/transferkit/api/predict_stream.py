"""A :func:`~transferkit.api.use.predict` run: its inputs walked lazily, ``batch_size`` at a time, each batch's rows
handed on as soon as they are predicted (:mod:`transferkit.api.predict_batches`), under a progress bar, with the
tallies its summary reports — so memory stays bounded by one batch whatever the number of inputs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from transferkit import terminal
from transferkit.api.predict_batches import predict_image_chunk, predict_text_chunk
from transferkit.api.predict_inputs import PredictInput, iter_predict_inputs, iter_text_inputs
from transferkit.inference import Predictor
from transferkit.terminal import Console

log = logging.getLogger("transferkit.api.use")  # the name predict's warnings always carried (printed by the CLI)

PREVIEW_ROWS = 20  # rows kept in the summary returned when predictions are streamed to a file


@dataclass
class PredictJob:
    """One :func:`~transferkit.api.use.predict` run: its model, inputs and settings, and the tallies its summary
    reports (counts and at most ``PREVIEW_ROWS`` first rows and error rows, so memory stays bounded whatever the number
    of inputs). Kept together so the progress bar's count and the streaming loop walk the same inputs the same way."""

    predictor: Predictor
    paths: list[Path]
    text_column: str
    k: int
    fields: list[str]
    strict: bool
    convert_channels: bool
    max_pixels: int
    batch_size: int
    console: Console
    progress: bool
    counts: dict[str, int] = field(default_factory=lambda: {"images": 0, "predicted": 0, "errors": 0})
    preview: list[dict[str, Any]] = field(default_factory=list)
    error_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_text(self) -> bool:
        """Whether the model reads texts (its inputs are then text files) rather than images."""
        return self.predictor.input_spec.modality == "text"

    def items(self) -> Iterator[PredictInput]:
        """The inputs, lazily, from the start (called once to count them for the progress bar, once to predict)."""
        return iter_text_inputs(self.paths, self.text_column) if self.is_text else iter_predict_inputs(self.paths)

    def predict_chunk(self, chunk: list[PredictInput]) -> list[dict[str, Any]]:
        """The rows of one batch of inputs, in order (texts or images, as the model takes)."""
        if self.is_text:
            return predict_text_chunk(self.predictor, chunk, self.k, self.strict, self.fields)
        return predict_image_chunk(self.predictor, chunk, self.k, self.strict, self.convert_channels,
                                   self.max_pixels, self.fields)

    def run(self, sink: Callable[[list[dict[str, Any]]], None], total: int | None) -> None:
        """Predict every input, ``batch_size`` at a time, handing each batch's rows to ``sink`` as soon as they are
        predicted (``total`` inputs on the progress bar; ``None``: unknown); no input at all is a ValueError."""
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("images"), TimeElapsedColumn(), TimeRemainingColumn())
        with terminal.progress_bar(self.console, self.progress, *columns) as bar:
            task = bar.add_task("predict", total=total)
            for chunk in _chunks(self.items(), self.batch_size):
                out = self.predict_chunk(chunk)
                sink(out)
                self.tally(out)
                bar.advance(task, len(out))
        if not self.counts["images"]:
            raise ValueError(f"no {'texts' if self.is_text else 'image files'} in {', '.join(map(str, self.paths))}")

    def tally(self, rows: list[dict[str, Any]]) -> None:
        """Count ``rows`` (predicted or error) and keep the first few of each for the summary."""
        for row in rows:
            bad = row["error"] is not None
            self.counts["errors" if bad else "predicted"] += 1
            if len(self.preview) < PREVIEW_ROWS:
                self.preview.append(row)
            if bad and len(self.error_rows) < PREVIEW_ROWS:
                self.error_rows.append(row)
        self.counts["images"] += len(rows)

    def warn_errors(self) -> None:
        """Log how many inputs could not be predicted, with the first few reasons (the rows hold them all)."""
        if self.counts["errors"]:
            log.warning("%d of %d input(s) could not be predicted, e.g.:\n  %s", self.counts["errors"],
                        self.counts["images"], "\n  ".join(r["error"] for r in self.error_rows[:5]))


def _chunks(items: Iterator[PredictInput], n: int) -> Iterator[list[PredictInput]]:
    """``items`` in lists of ``n`` (the last one shorter), lazily: only one batch is ever held."""
    while chunk := list(itertools.islice(items, n)):
        yield chunk
