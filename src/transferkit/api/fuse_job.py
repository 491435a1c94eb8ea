"""``fuse``: combine several trained models (bundles) into one — ensembles, stacking, gating, model soups.

Everything is fitted on **held-out** data, never the test split: by default a *fit set* of ``fit_per_class``
training-split images per class that none of the members trained or validated on when their lineage says which
images those were (``labels_per_class`` runs are reconstructed exactly from data, classes, budget, validation size
and seed); a member trained on the whole split cannot be excluded that way, and the report says so. With
``fit_on="validation"`` the fit set is the members' shared validation split instead — no labelled images beyond
the members' own budget (the images their early stopping saw are reused). Members' predictions on the fit set are
out-of-sample for them, so the weights, the stacker (its regularisation chosen by cross-validation, i.e. on
out-of-fold meta-predictions) and the gate are fitted there; the greedy soup adds ingredients while the fit-set
accuracy does not drop (Wortsman et al., 2022). The test split is scored once per model at the end.

Outputs: ``bundles/<method>/`` for every method, ``bundle/`` = the method with the best fit-set accuracy,
``metrics.json``, ``report.md`` (members vs methods, fit-set and test accuracy) and a bar chart.

The fit set is :mod:`transferkit.data.fuse_fit_set`, the members and methods :mod:`transferkit.fusion.fuse_fitting`,
the report :mod:`transferkit.report.fuse`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from transferkit import terminal
from transferkit.api.runs import RunResult, score, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.bundle import save_bundle
from transferkit.data.base import ImageSet
from transferkit.data.fuse_fit_set import fit_set_indices
from transferkit.data.job_task import load_task
from transferkit.data.prepare import to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import parse_classes
from transferkit.errors import ConfigError
from transferkit.fusion.fuse_fitting import accuracy, combined_probs, fit_methods, load_members, member_outputs, probs
from transferkit.fusion.methods import FUSION_METHODS
from transferkit.options import FuseConfig, parse_names
from transferkit.report.fuse import COLUMNS, fuse_findings, fuse_rows, write_fuse_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, staged_output
from transferkit.terminal import Console

FUSE_METHODS = tuple(FUSION_METHODS.names())
FIT_ON = ("held_out", "validation")



def fuse(*args: Any, config: FuseConfig | None = None, console: Console | None = None, **options: Any) -> RunResult:
    """Fuse the ``members`` (run or bundle directories) with every method in ``methods`` on ``data``.

    ``fuse(members, data, classes, **options)`` or ``fuse(config=FuseConfig(...))``: the options are the flat names
    of :class:`~transferkit.options.FuseConfig` (``methods``: a list or comma-separated text; default all).

    ``fit_on`` says which labelled images fit the weights, stacker, gate and greedy soup: ``held_out`` (default)
    — ``fit_per_class`` further training-split images per class that no member trained or validated on; or
    ``validation`` — the members' shared validation split (members trained on one labelled budget, e.g. several
    strategies with the same ``labels_per_class`` and seed): no labels beyond the members' budget, at the price of
    reusing the images their early stopping saw.

    ``soup_uniform``/``soup_greedy`` need members of one architecture fine-tuned from the same initialisation;
    with other members they are skipped with the reason in the report (or refused when they are all you asked
    for). Members with the same classes in another order are aligned by class name.
    """
    c = FuseConfig.given(config, args, options)
    members = [c.members] if isinstance(c.members, (str, Path)) else list(c.members)
    methods = list(FUSE_METHODS) if c.methods is None else parse_names(c.methods)
    data, classes, fit_on = c.data.data, c.data.classes, c.fit_on
    record = {**c.record("fuse"), "members": [str(m) for m in members], "methods": methods}
    console = terminal.resolve(console)
    check_output_dir(c.out, [*members, data])  # before anything loads; the members are never written over
    _check(members, methods, fit_on)
    set_threads()
    start = time.perf_counter()
    models, metas, class_names = load_members(members)
    full = load_task(data, "train", classes, c.data.strict, workers=c.data.workers)
    if full.classes != class_names:
        raise ValueError(f"data={data}: classes {full.classes} differ from the members' {class_names}")
    if not has_split(data, "test"):
        raise ValueError(f"fuse needs a test split for the final scores; {data} has none")
    test = load_task(data, "test", classes, c.data.strict, workers=c.data.workers)
    fit_idx, unknown = fit_set_indices(full, metas, members, data, parse_classes(classes), fit_on, c.fit_per_class,
                                       c.seed)
    fit_set = full.subset(fit_idx, full.name + ("[members' validation]" if fit_on == "validation" else "[fit set]"))
    rows, fused, skipped, soup_kept = _fit_and_score(models, metas, members, methods, fit_set, test, class_names, c)
    best_member = max(range(len(models)), key=lambda i: rows[i]["fit_accuracy"])
    best = max((r for r in rows if r["kind"] == "fusion"), key=lambda r: r["fit_accuracy"])
    lineage = {"kind": "fuse", "members": [str(m) for m in members], "data": data, "classes": class_names,
               "seed": c.seed}
    out = Path(c.out)
    with staged_output(out, "fuse") as tmp:
        write_yaml(tmp / "config.yaml", record)
        for name, model in [*fused.items(), ("", fused[best["model"]])]:  # "": the selected one, as bundle/
            save_bundle(model, {"classes": class_names, "lineage": {**lineage, "method": name or best["model"]},
                                "config": record}, tmp / "bundles" / name if name else tmp / "bundle")
        metrics = {"task": "fuse", "rows": rows, "best_member": rows[best_member]["model"], "selected": best["model"],
                   "skipped": skipped, "greedy_soup_kept": soup_kept,
                   "fit_set": {"n": len(fit_set), "on": fit_on, "members_not_excluded": unknown,
                               "per_class": c.fit_per_class if fit_on == "held_out" else None},
                   "n_test": len(test), "total_time_s": time.perf_counter() - start}
        write_json(tmp / "metrics.json", metrics)
        write_fuse_report(tmp, metrics, data, class_names, len(models))
    console.print(comparison_table(COLUMNS, fuse_rows(metrics), title=f"fuse → {out}"))
    for line in fuse_findings(metrics):
        console.print(f"  • {line}")
    return RunResult(out, metrics, fused[best["model"]], {"classes": class_names, "lineage": lineage})


def _check(members: Sequence[str | Path], methods: Sequence[str], fit_on: str) -> None:
    """Refuse what needs no data, before anything loads."""
    if fit_on not in FIT_ON:
        raise ConfigError("fit_on", f"one of {', '.join(FIT_ON)}", fit_on)
    bad = [m for m in methods if m not in FUSE_METHODS]
    if bad:
        raise FUSION_METHODS.unknown(bad[0])
    if len(members) < 2:
        raise ValueError(f"fuse needs at least 2 members, got {len(members)}")


def _fit_and_score(models: list[Backbone], metas: list[dict[str, Any]], members: Sequence[str | Path],
                   methods: Sequence[str], fit_set: ImageSet, test: ImageSet, class_names: list[str],
                   c: FuseConfig) -> tuple[list[dict[str, Any]], dict[str, Backbone], dict[str, str], list[str] | None]:
    """Every member and fusion method scored on the fit set and the test split: ``(rows, fused models, skipped,
    the greedy soup's ingredients)``.

    Every member runs once on the fit set and once on the test split, with its own preprocessing; the ensemble
    methods are then fitted and scored from these outputs (a FusedModel computes the same thing)."""
    y_fit, y_test = fit_set.labels, test.labels
    fit_b = [to_batches(fit_set, m.input_spec) for m in models]
    fit_logits, fit_feats = member_outputs(models, fit_b)  # (M, N, C), (N, ΣD)
    test_logits, test_feats = member_outputs(models, [to_batches(test, m.input_spec) for m in models])
    member_fit, member_test = torch.softmax(fit_logits, 2), torch.softmax(test_logits, 2)
    rows = [{"model": f"member {i}: {Path(str(members[i])).name}", "kind": "member",
             "fit_accuracy": accuracy(member_fit[i], y_fit), "test_accuracy": accuracy(member_test[i], y_test)}
            for i in range(len(models))]
    fused, skipped, soup_kept = fit_methods(methods, models, metas, members, fit_b, member_fit, fit_logits,
                                            fit_feats, y_fit, c.seed, c.gate_epochs)
    for name, model in fused.items():
        if name.startswith("soup"):  # one network: run it
            fit_acc = accuracy(probs(model, fit_b[0]), y_fit)
            test_acc = score(model, to_batches(test, model.input_spec), class_names)["accuracy"]
        else:
            fit_acc = accuracy(combined_probs(model, fit_logits, fit_feats), y_fit)
            test_acc = accuracy(combined_probs(model, test_logits, test_feats), y_test)
        rows.append({"model": name, "kind": "fusion", "fit_accuracy": fit_acc, "test_accuracy": test_acc})
    return rows, fused, skipped, soup_kept
