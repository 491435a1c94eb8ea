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

The candidates are loaded and scored by :mod:`transferkit.transferability.select_candidates`, the score names
parsed by :mod:`transferkit.transferability.select_scores`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.api.runs import RunResult, set_threads, write_json, write_yaml
from transferkit.api.select_verify import verify_top
from transferkit.data.base import ImageSet
from transferkit.data.job_task import check_max_length, load_task
from transferkit.data.splits import labelled_budget_indices, parse_classes
from transferkit.errors import ConfigError
from transferkit.options import SelectConfig
from transferkit.report.select import print_ranking, select_metrics, write_select_outputs
from transferkit.rundir import check_output_dir, staged_output
from transferkit.terminal import Console
from transferkit.transferability.ranking import check_candidates, rank_candidates, similarity_sample, verification_count
from transferkit.transferability.select_candidates import score_all
from transferkit.transferability.select_scores import parse_scores


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
    entries, skipped = score_all(cands, full, scoring, source_set, names, c, console)
    times = {"data_load_s": data_s, "scoring_time_s": time.perf_counter() - start}
    n_verify = verification_count(c.verification.verify, c.verification.verify_all, entries, skipped)
    entries = rank_candidates(entries, names)
    out = Path(c.out)
    verification, work = verify_top(entries, n_verify, names, c, record, scoring, console)
    for e in entries:
        e.pop("_model", None)
    metrics = select_metrics(c, names, full, scoring, source_set, entries, skipped, times, verification)
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


def _scoring_sets(c: SelectConfig) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """The target's training split, the scoring set (the K labelled images per class a ``transfer`` of the same
    seed trains on, or the whole split) and the sample of ``similarity_data`` (never the scoring images)."""
    task, sim = c.task, c.similarity
    full = load_task(task.data, "train", task.classes, task.strict, workers=task.workers)
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
    sfull = load_task(sim.similarity_data, "train", sim.similarity_classes, task.strict, workers=task.workers)
    same = (sim.similarity_data, parse_classes(sim.similarity_classes)) == (task.data, parse_classes(task.classes))
    pick = similarity_sample(len(sfull), tr_idx if same else None, sim.similarity_samples, c.seed)
    return full, scoring, sfull.subset(pick, f"{sfull.name}[{len(pick)} for similarity]")
