"""``select``: rank candidate sources for a target task by transferability scores, before any fine-tuning.

Every candidate — a pretrained backbone name, a run or bundle directory, ``timm:``/``torchvision:``/``fuse:``
sources, or ``random:<backbone>`` (that architecture randomly initialised: the baseline a useful source must
beat) — looks once at the target's labelled training images, frozen, with its own preprocessing, and is scored
there (:mod:`transferkit.transferability.candidates`: what LogME, H-score, LEEP and NCE measure, when one is
"n/a", the feature cache, skipped candidates); :mod:`transferkit.transferability.ranking` ranks them and
:mod:`transferkit.report.select` writes the report. The options:

* ``scores`` (names from :data:`transferkit.transferability.SCORES`; the first ranks) are computed on the scoring
  set — with ``labels_per_class=k`` the ``k`` labelled images per class of
  :func:`~transferkit.data.splits.labelled_budget_indices` with ``val_per_class``/``val_fraction``/``seed`` (the
  very images ``transfer(..., labels_per_class=k, seed=seed)`` trains on), else the whole training split; the
  test split is never used for selection;
* ``image_size`` sets the input size of named pretrained (and ``random:``) backbones, ``max_length`` the token
  limit of named text backbones (``minilm``, ``hf:…``; text data only);
* ``verify=K`` fine-tunes the top ``K`` by the first score (``verify_all=True``: every usable candidate — for
  analysis) with ``transfer`` (``finetune``; ``scratch`` for ``random:``) for ``epochs``/``patience``/
  ``batch_size``/``lr`` into ``<out>/verify/`` (:mod:`transferkit.api.select_verify`) and reports, per score,
  Kendall's τ and Pearson's r with the runs' test accuracy, whether the top-1 agree, and the time of scoring
  against the time of brute-force fine-tuning;
* ``similarity_data`` (with ``similarity_classes``) names a *source* dataset: ``similarity_samples`` of its
  training images (never the scoring images themselves) go through every candidate too, and their domain
  similarity to the scoring set in that candidate's feature space — cosine of the mean features, unbiased MMD²,
  proxy A-distance (:mod:`transferkit.transferability.similarity`) — is shown beside the scores, never used for
  ranking.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from transferkit import terminal
from transferkit.api.runs import (
    RunResult,
    backbone_for_data,
    check_channels,
    check_max_length,
    load_source,
    load_task,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.api.select_verify import verify_top
from transferkit.backbones.base import Backbone
from transferkit.data.base import ImageSet
from transferkit.data.splits import labelled_budget_indices, parse_classes
from transferkit.errors import ConfigError
from transferkit.options import SelectConfig, parse_names
from transferkit.report.select import print_ranking, write_select_outputs
from transferkit.rundir import check_output_dir, staged_output
from transferkit.terminal import Console
from transferkit.transferability import SCORES
from transferkit.transferability.candidates import feature_similarity, score_candidates
from transferkit.transferability.ranking import (
    RANDOM_PREFIX,
    check_candidates,
    rank_candidates,
    similarity_sample,
    verification_count,
)
from transferkit.transferability.similarity import SIMILARITY_MEASURES

DEFAULT_SCORES = ("logme", "h_score", "h_score_shrunk", "leep", "nce")


def parse_scores(scores: str | Sequence[str]) -> list[str]:
    """``"logme,leep"`` or ``["logme", "leep"]`` → the list of score names (order kept: the first ranks);
    an unknown name is a ValueError listing the valid ones."""
    names = parse_names(scores)
    if not names:
        raise ValueError(f"scores: give at least one score; valid scores: {SCORES.valid()}")
    bad = [s for s in names if s not in SCORES]
    if bad:
        raise SCORES.unknown(bad[0])
    return list(dict.fromkeys(names))


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


def select(*args: Any, config: SelectConfig | None = None, console: Console | None = None,
           **options: Any) -> RunResult:
    """Rank ``candidates`` as sources for ``data`` (restricted to ``classes``) by transferability scores.

    ``select(candidates, data, classes, **options)`` or ``select(config=SelectConfig(...))``: the options are the
    flat names of :class:`~transferkit.options.SelectConfig` (``candidates`` may be one source or a list),
    described in the module docstring.

    Writes ``config.yaml``, ``metrics.json``, ``report.md`` (and ``score_vs_accuracy.png`` after verification)
    into ``out`` atomically; ``result.metrics["selected"]`` is the top-1 candidate.
    """
    c = SelectConfig.given(config, args, options)
    console = terminal.resolve(console)
    names = parse_scores(c.scores)
    cands = check_candidates(c.candidates, c.verification.verify)
    record = {**c.record("select"), "candidates": cands, "scores": names}
    check_output_dir(c.out, [*cands, c.task.data, c.similarity.similarity_data])  # before anything loads or trains
    set_threads()
    start = time.perf_counter()
    full, scoring, source_set = _scoring_sets(c)
    data_s = time.perf_counter() - start
    entries, skipped = _score_all(cands, full, scoring, source_set, names, c, console)
    times = {"data_load_s": data_s, "scoring_time_s": time.perf_counter() - start}
    n_verify = verification_count(c.verification.verify, c.verification.verify_all, entries, skipped)
    entries = rank_candidates(entries, names)
    out = Path(c.out)
    verification, work = verify_top(entries, n_verify, names, c, record, scoring, console)
    for e in entries:
        e.pop("_model", None)
    metrics = _metrics(c, names, full, scoring, source_set, entries, skipped, times, verification)
    with staged_output(out, "select") as tmp:
        write_yaml(tmp / "config.yaml", record)
        if work is not None:
            shutil.copytree(work.path / "verify", tmp / "verify",  # the runs, not their locks or leftovers
                            ignore=shutil.ignore_patterns(".*.lock", ".*.partial", ".*.work"))
        metrics["total_time_s"] = time.perf_counter() - start
        write_json(tmp / "metrics.json", metrics)
        write_select_outputs(tmp, metrics)
    print_ranking(metrics, out, console)
    if work is not None:
        work.close()
    console.print(f"report: {out / 'report.md'}")
    return RunResult(out, metrics, None, {"classes": full.classes, "selected": entries[0]["candidate"]})


def _metrics(c: SelectConfig, names: list[str], full: ImageSet, scoring: ImageSet, source_set: ImageSet | None,
             entries: list[dict[str, Any]], skipped: list[dict[str, str]], times: dict[str, float],
             verification: dict[str, Any] | None) -> dict[str, Any]:
    """``metrics.json`` of a selection (but its total time): the scoring set, the ranked entries, the skipped
    candidates, the similarity sample, the times and the verification."""
    task = c.task
    return {
        "task": "select", "data": task.data, "classes": full.classes, "class_indices": parse_classes(task.classes),
        "scoring_set": {"split": "train", "labels_per_class": task.labels_per_class, "n": len(scoring),
                        "val_per_class": task.val_per_class, "seed": c.seed, "fingerprint": scoring.fingerprint()},
        "scores": names, "ranked_by": names[0], "selected": entries[0]["candidate"],
        "candidates": entries, "skipped": skipped,
        "similarity": {"data": c.similarity.similarity_data, "classes": source_set.classes, "n": len(source_set)}
        if source_set is not None else None,
        **times, "verification": verification,
    }


def _scoring_sets(c: SelectConfig) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """The target's training split, the scoring set (the K labelled images per class a ``transfer`` of the same
    seed trains on, or the whole split) and the sample of ``similarity_data`` (never the scoring images)."""
    task, sim = c.task, c.similarity
    full = load_task(task.data, "train", task.classes, task.strict)
    check_max_length(full, c.max_length)
    tr_idx = None
    scoring = full
    if task.labels_per_class is not None:
        tr_idx, _ = labelled_budget_indices(full, task.labels_per_class, task.val_per_class, task.val_fraction,
                                            c.seed)
        scoring = full.subset(tr_idx, f"{full.name}[{task.labels_per_class}/class]")
    if sim.similarity_data is None:
        return full, scoring, None
    if sim.similarity_samples < 2:
        raise ConfigError("similarity_samples", "at least 2", sim.similarity_samples)
    sfull = load_task(sim.similarity_data, "train", sim.similarity_classes, task.strict)
    same = (sim.similarity_data, parse_classes(sim.similarity_classes)) == (task.data, parse_classes(task.classes))
    pick = similarity_sample(len(sfull), tr_idx if same else None, sim.similarity_samples, c.seed)
    return full, scoring, sfull.subset(pick, f"{sfull.name}[{len(pick)} for similarity]")


def _score_all(cands: list[str], full: ImageSet, scoring: ImageSet, source_set: ImageSet | None, names: list[str],
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
            check_channels(source_set, model, convert, f"--similarity-data {source_set.name}")
        except ValueError as exc:
            return {"values": dict.fromkeys(SIMILARITY_MEASURES.names()), "note": str(exc), "time_s": 0.0}
        return feature_similarity(model, source_set, feats)

    return score_candidates(cands, load, scoring, names, similarity if source_set is not None else None, skip)
