"""``select``: rank candidate sources for a target task by transferability scores, before any fine-tuning.

Every candidate — a pretrained backbone name, a run or bundle directory, ``timm:``/``torchvision:``/``fuse:``
sources, or ``random:<backbone>`` (that architecture randomly initialised: the baseline a useful source must
beat) — looks once at the target's labelled training images, frozen, with its own preprocessing. The scores of
:mod:`transferkit.transferability` are computed on what it produces:

* ``logme`` — LogME (You et al., ICML 2021): log evidence of a Bayesian linear model on the features;
* ``h_score`` — H-score (Bao et al., ICIP 2019): between-class over total feature covariance;
* ``h_score_shrunk`` — the same with a Ledoit–Wolf-shrunk covariance (Ibrahim et al., 2021): with few images in
  many dimensions the plain H-score saturates at ``C − 1`` and cannot tell candidates apart;
* ``leep`` — LEEP (Nguyen et al., ICML 2020): log-likelihood of the labels through the source head's classes;
* ``nce`` — NCE (Tran et al., ICCV 2019): negative conditional entropy of the labels given hard source labels.

``leep`` and ``nce`` need a source head (``num_classes ≥ 2``: ImageNet backbones' 1000 classes, a bundle's own
head); for a candidate without one they are "n/a", not an error. The scoring set is exactly the ``k`` labelled
images per class a ``transfer(..., labels_per_class=k, seed=seed)`` run trains on (or the whole training split);
the test split is never used for selection. Features come through the on-disk feature cache, so a second
selection over the same candidates is nearly free.

``verify=K`` fine-tunes the top ``K`` candidates (``verify_all``: all of them — for analysis) with
:func:`~transferkit.api.train.transfer` and reports, per score, Kendall's τ and Pearson's r between the score and
the fine-tuned test accuracy, whether the top-1 agree, and the time of scoring against the time of brute-force
fine-tuning. A candidate that cannot be loaded (weights unavailable offline, not a bundle, …) is skipped with the
reason; the ranking covers the rest.

The options:

``scores`` (names from :data:`transferkit.transferability.SCORES`; the first ranks) are computed on the
scoring set — with ``labels_per_class=k`` the ``k`` labelled images per class of
:func:`~transferkit.data.splits.labelled_budget_indices` with ``val_per_class``/``val_fraction``/``seed``
(the very images ``transfer(..., labels_per_class=k, seed=seed)`` trains on), else the whole training split.
``image_size`` sets the input size of named pretrained (and ``random:``) backbones, ``max_length`` the token
limit of named text backbones (``minilm``, ``hf:…``; text data only).

``verify=K`` fine-tunes the top ``K`` by the first score (``verify_all=True``: every usable candidate) with
``transfer(strategy="finetune")`` — ``scratch`` for ``random:`` candidates — for ``epochs``/``patience``/
``batch_size``/``lr`` into ``<out>/verify/``, and correlates scores with the runs' test accuracy.

``similarity_data`` (with ``similarity_classes``) names a *source* dataset: ``similarity_samples`` of its
training images (never the scoring images themselves) go through every candidate too, and the domain
similarity between them and the scoring set is reported in that candidate's feature space — cosine of the mean
features, unbiased MMD² and the proxy A-distance (:mod:`transferkit.transferability.similarity`). Shown beside
the scores, not used for ranking.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

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
from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.features import predict_logits
from transferkit.data.base import ImageSet
from transferkit.data.prepare import to_batches
from transferkit.data.splits import labelled_budget_indices, parse_classes
from transferkit.errors import ConfigError
from transferkit.options import SelectConfig
from transferkit.report.metrics import flag, num
from transferkit.report.plots import plot_score_vs_accuracy
from transferkit.report.select import verification_lines, write_select_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import FinishedWork, check_output_dir, staged_output
from transferkit.transferability import SCORES
from transferkit.transferability.similarity import SIMILARITY_MEASURES, similarities

RANDOM_PREFIX = "random:"
DEFAULT_SCORES = ("logme", "h_score", "h_score_shrunk", "leep", "nce")
MIN_FOR_CORRELATION = 3


def parse_scores(scores: str | Sequence[str]) -> list[str]:
    """``"logme,leep"`` or ``["logme", "leep"]`` → the list of score names (order kept: the first ranks);
    an unknown name is a ValueError listing the valid ones."""
    names = [s.strip() for s in scores.split(",")] if isinstance(scores, str) else [str(s).strip() for s in scores]
    names = [s for s in names if s]
    if not names:
        raise ValueError(f"scores: give at least one score; valid scores: {SCORES.valid()}")
    bad = [s for s in names if s not in SCORES]
    if bad:
        raise SCORES.unknown(bad[0])
    return list(dict.fromkeys(names))


def _label(candidate: str) -> str:
    """A short display name: the directory name of a run/bundle (its run's name for ``…/bundle``), else as given."""
    p = Path(candidate)
    if p.exists():
        p = p.resolve()
        return p.parent.name if p.name == "bundle" and p.parent.name else p.name
    return candidate


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "candidate"


def _kind(candidate: str) -> str:
    if Path(candidate).exists():
        return "run/bundle"
    if candidate.startswith(RANDOM_PREFIX):
        return "random init"
    if candidate.startswith("fuse:"):
        return "feature fusion"
    return "pretrained"


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


def _source_probs(model: Backbone, feats: torch.Tensor, data: Any) -> np.ndarray:
    """The source head's softmax on the target images: from the cached features when the model's forward is the
    plain ``head(features)`` (no second pass through the backbone), else from a full forward pass."""
    if type(model).forward is Backbone.forward:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                x = feats.clone()  # a fresh, aligned buffer: a cache hit (read from a file) computes bit for bit alike
                logits = torch.cat([model.forward_head(x[i:i + 4096]) for i in range(0, len(x), 4096)])
        finally:
            model.train(was_training)
    else:
        logits = predict_logits(model, data)
    return torch.softmax(logits.double(), 1).numpy()


def _score_candidate(candidate: str, model: Backbone, scoring: ImageSet, scores: list[str],
                     random_init: bool) -> tuple[dict[str, Any], torch.Tensor]:
    """Features (cached), source-head probabilities and every requested score for one loaded candidate; returns
    the result and the features (for the domain similarity)."""
    t0 = time.perf_counter()
    batches = to_batches(scoring, model.input_spec)
    feats, hit = cached_features(model, batches, batches.key or scoring.fingerprint())
    want_probs = any(SCORES[s][1] == "source_probs" for s in scores)
    has_head = model.num_classes >= 2 and not random_init
    probs = _source_probs(model, feats, batches) if want_probs and has_head else None
    t1 = time.perf_counter()
    y = scoring.labels.astype(np.int64)
    f64 = feats.double().numpy()
    values: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    score_times: dict[str, float] = {}
    for name in scores:
        fn, kind = SCORES[name]
        if kind == "source_probs" and probs is None:
            values[name] = None
            missing[name] = ("random initialisation: no source head" if random_init else
                             f"no source head with ≥ 2 classes (num_classes={model.num_classes})")
            continue
        s0 = time.perf_counter()
        try:
            values[name] = float(fn(f64 if kind == "features" else probs, y, num_classes=scoring.num_classes))
        except ValueError as exc:
            raise ValueError(f"candidate {candidate}: score {name}: {exc}") from None
        score_times[name] = time.perf_counter() - s0
    t2 = time.perf_counter()
    result = {"scores": values, "not_available": missing, "feature_dim": int(feats.shape[1]),
              "source_classes": int(model.num_classes) if has_head else 0, "feature_cache": "hit" if hit else "miss",
              "input": list(model.input_spec.size or []), "time": {"features_s": t1 - t0, "scores_s": t2 - t1,
                                                                   "per_score_s": score_times}}
    return result, feats


def _similarity(model: Backbone, source: ImageSet, target_features: torch.Tensor,
                convert_channels: bool) -> dict[str, Any]:
    """Domain similarity of ``source`` images and the target's features in ``model``'s feature space (the source
    features through the cache)."""
    t0 = time.perf_counter()
    try:
        check_channels(source, model, convert_channels, f"--similarity-data {source.name}")
    except ValueError as exc:
        return {"values": dict.fromkeys(SIMILARITY_MEASURES.names()), "note": str(exc), "time_s": 0.0}
    batches = to_batches(source, model.input_spec)
    src = cached_features(model, batches, batches.key or source.fingerprint())[0].double().numpy()
    tgt = target_features.double().numpy()
    values = similarities(src, tgt)
    return {"values": values, "note": "", "time_s": time.perf_counter() - t0}


def _ranks(entries: list[dict[str, Any]], name: str) -> dict[int, int]:
    """Index → rank (1 = best, by descending score) of the entries that have score ``name``."""
    have = [i for i, e in enumerate(entries) if e["scores"].get(name) is not None]
    order = sorted(have, key=lambda i: -entries[i]["scores"][name])  # stable: ties keep the input order
    return {i: r + 1 for r, i in enumerate(order)}


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _correlations(entries: list[dict[str, Any]], scores: list[str]) -> dict[str, dict[str, Any]]:
    """Per score: Kendall τ and Pearson r with the fine-tuned accuracy over the verified candidates that have the
    score (``None`` below :data:`MIN_FOR_CORRELATION` points or for constant values), and the top-1 agreement."""
    from scipy.stats import kendalltau, pearsonr

    out: dict[str, dict[str, Any]] = {}
    for name in scores:
        pts = [(e["name"], e["scores"][name], e["verification"]["accuracy"]) for e in entries
               if e.get("verification") and e["scores"].get(name) is not None]
        row: dict[str, Any] = {"n": len(pts), "kendall_tau": None, "kendall_p": None, "pearson_r": None,
                               "pearson_p": None, "note": None, "top1_by_score": None, "top1_by_accuracy": None,
                               "top1_match": None}
        if pts:
            names, s, a = zip(*pts, strict=True)
            row["top1_by_score"] = names[int(np.argmax(s))]
            row["top1_by_accuracy"] = names[int(np.argmax(a))]
            row["top1_match"] = row["top1_by_score"] == row["top1_by_accuracy"]
        if len(pts) < MIN_FOR_CORRELATION:
            row["note"] = f"n/a: {len(pts)} verified candidate(s) with this score; a correlation needs ≥ " \
                          f"{MIN_FOR_CORRELATION}"
        elif len(set(s)) < 2 or len(set(a)) < 2:
            row["note"] = "n/a: the " + ("scores" if len(set(s)) < 2 else "fine-tuned accuracies") + " are all equal"
        else:
            tau = kendalltau(s, a)
            r = pearsonr(s, a)
            row.update(kendall_tau=_finite(tau.statistic), kendall_p=_finite(tau.pvalue),
                       pearson_r=_finite(r.statistic), pearson_p=_finite(r.pvalue))
        out[name] = row
    return out


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
    task, ver = c.task, c.verification
    console = console or Console()
    names = parse_scores(c.scores)
    cands = _check_candidates(c.candidates, ver.verify)
    record = {**c.record("select"), "candidates": cands, "scores": names}
    check_output_dir(c.out, [*cands, task.data, c.similarity.similarity_data])  # before anything loads or trains
    set_threads()
    start = time.perf_counter()
    full, scoring, source_set = _scoring_sets(c)
    data_s = time.perf_counter() - start
    entries, skipped = _score_all(cands, full, scoring, source_set, names, c.image_size, c.seed, c.max_length,
                                  task.convert_channels, console)
    scoring_s = time.perf_counter() - start
    n_verify = len(entries) if ver.verify_all else int(ver.verify)
    if n_verify > len(entries):
        raise ValueError(f"--verify {ver.verify}: only {len(entries)} usable candidate(s) remain after skipping "
                         f"{len(skipped)} ({', '.join(s['candidate'] for s in skipped)}); choose at most "
                         f"{len(entries)}")
    entries = _rank(entries, names)
    out = Path(c.out)
    verification, work = _verification(entries, n_verify, names, c, record, scoring, console)
    for e in entries:
        e.pop("_model", None)
    metrics = {
        "task": "select", "data": task.data, "classes": full.classes, "class_indices": parse_classes(task.classes),
        "scoring_set": {"split": "train", "labels_per_class": task.labels_per_class, "n": len(scoring),
                        "val_per_class": task.val_per_class, "seed": c.seed, "fingerprint": scoring.fingerprint()},
        "scores": names, "ranked_by": names[0], "selected": entries[0]["candidate"],
        "candidates": entries, "skipped": skipped,
        "similarity": {"data": c.similarity.similarity_data, "classes": source_set.classes, "n": len(source_set)}
        if source_set is not None else None,
        "data_load_s": data_s, "scoring_time_s": scoring_s, "verification": verification,
    }
    with staged_output(out, "select") as tmp:
        write_yaml(tmp / "config.yaml", record)
        if work is not None:
            shutil.copytree(work.path / "verify", tmp / "verify",  # the runs, not their locks or leftovers
                            ignore=shutil.ignore_patterns(".*.lock", ".*.partial", ".*.work"))
        metrics["total_time_s"] = time.perf_counter() - start
        _write_outputs(tmp, metrics, task.data)
    _print_ranking(metrics, out, console)
    if work is not None:
        work.close()
    console.print(f"report: {out / 'report.md'}")
    return RunResult(out, metrics, None, {"classes": full.classes, "selected": entries[0]["candidate"]})


def _verification(entries: list[dict[str, Any]], n_verify: int, names: list[str], c: SelectConfig,
                  record: dict[str, Any], scoring: ImageSet, console: Console
                  ) -> tuple[dict[str, Any] | None, FinishedWork | None]:
    """Fine-tune the top ``n_verify`` (if any) and correlate the scores with their accuracy: ``(verification, the
    finished runs' work directory)``. The runs are kept as they finish: an error later loses none of them."""
    if not n_verify:
        return None, None
    work = FinishedWork(Path(c.out), "select", {"config": record, "scoring": scoring.fingerprint(),
                                                "chosen": [e["candidate"] for e in entries[:n_verify]]}, record)
    if work.stale:
        console.print(f"{work.path} held verification runs of other settings: discarded", markup=False)
    verification = _verify(entries[:n_verify], c, work, console)
    verification["correlations"] = _correlations(entries, names)
    return verification, work


def _print_ranking(metrics: dict[str, Any], out: Path, console: Console) -> None:
    """The ranking table, the skipped candidates and the verification's findings, on the terminal."""
    names = metrics["scores"]
    console.print(comparison_table(*_ranking_rows(metrics["candidates"], names, compact=True),
                                   title=f"select → {out}  (ranked by {names[0]})"))
    for s in metrics["skipped"]:
        console.print(f"  skipped {s['candidate']}: {s['reason']}", markup=False, highlight=False)
    for line in verification_lines(metrics):
        console.print(f"  • {line}", markup=False, highlight=False)


# -- the job's phases ---------------------------------------------------------------------------------------------
def _check_candidates(candidates: str | Path | Sequence[str | Path], verify: int) -> list[str]:
    """The candidates as strings: at least one, none twice; ``verify`` a whole number ≤ their count."""
    cands = [str(candidates)] if isinstance(candidates, (str, Path)) else [str(c) for c in candidates]
    if not cands:
        raise ValueError("select needs at least one candidate source (a pretrained backbone name, a run/bundle "
                         "directory, timm:/torchvision: names or random:<backbone>)")
    dupes = sorted({c for c in cands if cands.count(c) > 1})
    if dupes:
        raise ValueError(f"candidate(s) given more than once: {dupes}")
    if isinstance(verify, bool) or not isinstance(verify, (int, np.integer)) or verify < 0:
        raise ConfigError("verify", "a whole number ≥ 0 (how many top candidates to fine-tune)", verify)
    if verify > len(cands):
        raise ConfigError("verify", f"at most the {len(cands)} candidate(s) given", verify)
    return cands


def _scoring_sets(c: SelectConfig) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """The target's training split, the scoring set (the K labelled images per class a ``transfer`` of the same
    seed trains on, or the whole split) and the sample of ``similarity_data`` (never the scoring images)."""
    task, sim, seed = c.task, c.similarity, c.seed
    data, classes, labels_per_class = task.data, task.classes, task.labels_per_class
    similarity_data, similarity_classes, similarity_samples = sim.similarity_data, sim.similarity_classes, \
        sim.similarity_samples
    full = load_task(data, "train", classes, task.strict)
    check_max_length(full, c.max_length)
    tr_idx = None
    scoring = full
    if labels_per_class is not None:
        tr_idx, _ = labelled_budget_indices(full, labels_per_class, task.val_per_class, task.val_fraction, seed)
        scoring = full.subset(tr_idx, f"{full.name}[{labels_per_class}/class]")
    if similarity_data is None:
        return full, scoring, None
    if similarity_samples < 2:
        raise ConfigError("similarity_samples", "at least 2", similarity_samples)
    sfull = load_task(similarity_data, "train", similarity_classes, task.strict)
    pool = np.arange(len(sfull))
    if (similarity_data, parse_classes(similarity_classes)) == (data, parse_classes(classes)) \
            and tr_idx is not None:  # the same images: keep the scoring set out of the source sample
        pool = np.setdiff1d(pool, tr_idx)
    pick = np.random.default_rng(seed + 99991).choice(pool, min(similarity_samples, len(pool)), replace=False)
    return full, scoring, sfull.subset(np.sort(pick), f"{sfull.name}[{len(pick)} for similarity]")


def _score_all(cands: list[str], full: ImageSet, scoring: ImageSet, source_set: ImageSet | None, names: list[str],
               image_size: int | None, seed: int, max_length: int | None, convert_channels: bool,
               console: Console) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every candidate's scores (and similarity) — a candidate that cannot be loaded is skipped with its reason."""
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    labels_seen: dict[str, int] = {}
    for cand in cands:
        t0 = time.perf_counter()
        try:
            model, _ = load_candidate(cand, image_size, seed, full.channels, max_length)
            check_channels(full, model, convert_channels, f"candidate {cand}")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # weights unavailable offline, not a bundle, wrong channels, …: skip with reason
            skipped.append({"candidate": cand, "reason": f"{type(exc).__name__}: {exc}"})
            console.print(f"  [yellow]skipped[/] {escape(cand)}: {escape(str(exc))}", highlight=False)
            continue
        load_s = time.perf_counter() - t0
        random_init = cand.startswith(RANDOM_PREFIX) and not Path(cand).exists()
        res, feats = _score_candidate(cand, model, scoring, names, random_init)
        label = _label(cand)
        labels_seen[label] = labels_seen.get(label, 0) + 1
        if labels_seen[label] > 1:
            label = f"{label} #{labels_seen[label]}"
        res["time"] = {"load_s": load_s, **res["time"]}
        res["time"]["total_s"] = load_s + res["time"]["features_s"] + res["time"]["scores_s"]
        if source_set is not None:  # timed apart: not part of the scoring time
            res["similarity"] = _similarity(model, source_set, feats, convert_channels)
        entries.append({"candidate": cand, "name": label, "kind": _kind(cand), "arch": model.arch, **res,
                        "params": model.num_parameters(), "verification": None,
                        "_model": model if random_init else None})
        del model
    if not entries:
        raise ValueError("no candidate could be scored: " + "; ".join(f"{s['candidate']}: {s['reason']}"
                                                                      for s in skipped))
    return entries, skipped


def _rank(entries: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Ranked by the first score (candidates without it last, in input order); every score's own ranks recorded."""
    per_score = {name: _ranks(entries, name) for name in names}
    first = per_score[names[0]]
    order = sorted(range(len(entries)), key=lambda i: (first.get(i, len(entries) + 1), i))
    for i, e in enumerate(entries):
        e["ranks"] = {name: per_score[name].get(i) for name in names}
        e["rank"] = first.get(i)
    return [entries[i] for i in order]


def _write_outputs(tmp: Path, metrics: dict[str, Any], data: str) -> None:
    """metrics.json, the score-vs-accuracy picture (after verification) and report.md."""
    write_json(tmp / "metrics.json", metrics)
    entries, names, verification = metrics["candidates"], metrics["scores"], metrics["verification"]
    images = []
    if verification is not None:
        ver = [e for e in entries if e.get("verification")]
        plot_score_vs_accuracy(
            [e["name"] for e in ver], [e["verification"]["accuracy"] for e in ver],
            {name: [e["scores"][name] for e in ver] for name in names},
            {name: verification["correlations"][name] for name in names}, tmp / "score_vs_accuracy.png",
            title=f"transferability vs fine-tuned accuracy on {data}",
            accuracy_label=f"fine-tuned {verification['accuracy_split']} accuracy")
        images.append("score_vs_accuracy.png")
    columns, rows = _ranking_rows(entries, names)
    write_select_report(tmp / "report.md", metrics, columns, rows, images)


def _verify(chosen: list[dict[str, Any]], c: SelectConfig, work: FinishedWork, console: Console) -> dict[str, Any]:
    """Fine-tune each chosen candidate as a user would (``transfer``) and record its accuracies and wall time.

    The runs go to ``work``'s ``verify/`` as they finish (with a record each), and runs finished by an earlier,
    interrupted call with the same settings are reused."""
    from transferkit.api.train import transfer

    task, ver = c.task, c.verification
    total = 0.0
    split = None
    root = work.path / "verify"
    for i, e in enumerate(chosen):
        random_init = e["_model"] is not None
        named = not Path(e["candidate"]).exists()
        source: str | Backbone = e["_model"] if random_init else e["candidate"]
        run_dir = root / f"{i + 1:02d}_{_safe(e['name'])}"
        done = work.get(f"verify-{i + 1:02d}")
        if done is not None and (run_dir / "metrics.json").is_file():
            console.print(f"verification run {run_dir.name}: finished earlier (reused)", markup=False)
            e["verification"] = done
            total += done["wall_time_s"]
            split = done["split"]
            continue
        t0 = time.perf_counter()
        res = transfer(source, task.data, task.classes, labels_per_class=task.labels_per_class,
                       strategy="scratch" if random_init else "finetune", seed=c.seed, out=run_dir,
                       epochs=ver.epochs, batch_size=ver.batch_size, lr=ver.lr, patience=ver.patience,
                       val_per_class=task.val_per_class, val_fraction=task.val_fraction,
                       image_size=c.image_size if named and not random_init else None,
                       max_length=c.max_length if named and not random_init else None, strict=task.strict,
                       convert_channels=task.convert_channels, progress=False, console=console,
                       overwrite=True)  # an interrupted verification run is simply redone
        wall = time.perf_counter() - t0
        total += wall
        split = res.metrics["split"]
        e["verification"] = {"strategy": res.metrics["strategy"], "accuracy": res.metrics["accuracy"],
                             "split": split, "validation_accuracy": (res.metrics["validation"] or {}).get("accuracy"),
                             "did_not_learn": bool(res.metrics.get("did_not_learn")),
                             "labels": res.metrics.get("labels"),
                             "wall_time_s": wall, "run_dir": f"verify/{run_dir.name}"}
        work.put(f"verify-{i + 1:02d}", e["verification"])
    scoring = sum(e["time"]["total_s"] for e in chosen)
    return {"n": len(chosen), "candidates": [e["candidate"] for e in chosen], "accuracy_split": split,
            "finetune_time_s": total, "scoring_time_s": scoring,
            "speedup": total / scoring if scoring > 0 else None, "epochs": ver.epochs, "patience": ver.patience}


def _ranking_rows(entries: list[dict[str, Any]], names: list[str],
                  compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The ranking table: every score, the times, and the verification columns when it ran (``compact``: the
    terminal's narrower version, one time column)."""
    verified = any(e.get("verification") for e in entries)
    similar = any(e.get("similarity") for e in entries)
    columns = ["rank", "candidate", *names] + (["time (s)"] if compact else
                                               ["load (s)", "features (s)", "scores (s)", "cache"])
    if similar:
        columns += ["cos(mean)", "MMD²", "PAD"]
    if verified:
        columns += ["fine-tuned acc"] if compact else ["fine-tuned acc", "val acc", "fine-tune (s)"]
    rows = []
    for e in entries:
        t = e["time"]
        row = [str(e["rank"]) if e["rank"] is not None else "-", e["name"], *[num(e["scores"][n]) for n in names]]
        row += [f"{t['total_s']:.2f}"] if compact else [f"{t['load_s']:.2f}", f"{t['features_s']:.2f}",
                                                        f"{t['scores_s']:.3f}", e["feature_cache"]]
        if similar:
            sim = (e.get("similarity") or {}).get("values") or {}
            row += [num(sim.get(k)) for k in SIMILARITY_MEASURES]
        if verified:
            v = e.get("verification")
            cells = [flag(f"{v['accuracy']:.4f}", bool(v.get("did_not_learn"))),
                     f"{v['validation_accuracy']:.4f}" if v.get("validation_accuracy") is not None else "-",
                     f"{v['wall_time_s']:.1f}"] if v \
                else ["-", "-", "-"]
            row += cells[:1] if compact else cells
        rows.append(row)
    return columns, rows


