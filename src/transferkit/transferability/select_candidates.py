"""The candidates of ``transferkit select`` (:mod:`transferkit.api.select_job`), loaded and scored: each one — a
backbone name, a run or bundle directory, a ``timm:``/``torchvision:``/``fuse:`` source or ``random:<backbone>`` —
is loaded as the jobs load a source (:func:`transferkit.source_loading.load_source`), checked against the data's
channels and handed to :func:`transferkit.transferability.candidates.score_candidates`, which scores its frozen
features; a candidate that cannot be loaded is skipped with its reason (printed on the job's console)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from transferkit.backbones.base import Backbone
from transferkit.data.base import ImageSet
from transferkit.options import SelectConfig
from transferkit.source_loading import backbone_for_data, check_channels, load_source
from transferkit.terminal import Console
from transferkit.transferability.candidates import feature_similarity, score_candidates
from transferkit.transferability.ranking import RANDOM_PREFIX
from transferkit.transferability.similarity import SIMILARITY_MEASURES


def load_candidate(candidate: str, image_size: int | None, seed: int, channels: int,
                   max_length: int | None = None) -> tuple[Backbone, dict[str, Any]]:
    """The candidate's frozen model and meta; ``random:<backbone>`` is built with ``torch.manual_seed(seed)``
    (small grey-native CNNs take the data's channels, as ``pretrain`` does), without touching the global RNG.
    ``image_size`` / ``max_length`` apply to named backbones (a bundle has its own input size)."""
    if candidate.startswith(RANDOM_PREFIX) and not Path(candidate).exists():
        arch = candidate[len(RANDOM_PREFIX):]
        if not arch:
            raise ValueError(f"'{candidate}' names no architecture; write e.g. random:mobilenet_v2")
        with torch.random.fork_rng(devices=[]):  # unknown names raise, listing the valid backbones
            torch.manual_seed(seed)
            model = backbone_for_data(arch, channels, image_size=image_size)
        return model, {"source": candidate, "classes": [], "lineage": {"source": f"random:{arch}", "seed": seed}}
    named = not Path(candidate).exists()  # --image-size applies to named backbones (and fuse: members), not bundles
    return load_source(candidate, image_size if named else None, max_length=max_length if named else None)


def score_all(cands: list[str], full: ImageSet, scoring: ImageSet, source_set: ImageSet | None, names: list[str],
              c: SelectConfig, console: Console) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every candidate's scores (and similarity) — a candidate that cannot be loaded is skipped with its reason."""
    convert = c.task.convert_channels

    def load(cand: str) -> Backbone:
        model, _ = load_candidate(cand, c.image_size, c.seed, full.channels, c.max_length)
        check_channels(full, model, convert, f"candidate {cand}")
        return model

    def skip(cand: str, exc: Exception) -> None:
        console.print(f"  [yellow]skipped[/] {escape(cand)}: {escape(str(exc))}", highlight=False)

    def similarity(model: Backbone, feats: torch.Tensor) -> dict[str, Any]:
        assert source_set is not None
        try:
            check_channels(source_set, model, convert, f"similarity_data={source_set.name}")
        except ValueError as exc:
            return {"values": dict.fromkeys(SIMILARITY_MEASURES.names()), "note": str(exc), "time_s": 0.0}
        return feature_similarity(model, source_set, feats)

    return score_candidates(cands, load, scoring, names, similarity if source_set is not None else None, skip)
