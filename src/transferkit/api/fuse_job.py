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
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit import terminal
from transferkit.api.runs import RunResult, load_source, load_task, score, set_threads, write_json, write_yaml
from transferkit.backbones.base import Backbone
from transferkit.backbones.features import batched_outputs, predict_logits
from transferkit.bundle import save_bundle
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import k_per_class, labelled_budget_indices, parse_classes
from transferkit.fusion import Stacker, check_members, check_soup, fit_gating, fit_weights, greedy_soup, uniform_soup
from transferkit.fusion.methods import FUSION_METHODS
from transferkit.fusion.model import FusedModel
from transferkit.options import FuseConfig, parse_names
from transferkit.report.fuse import COLUMNS, fuse_findings, fuse_rows, write_fuse_report
from transferkit.report.tables import comparison_table
from transferkit.rundir import check_output_dir, staged_output
from transferkit.terminal import Console

FUSE_METHODS = tuple(FUSION_METHODS.names())
FIT_ON = ("held_out", "validation")


def _permute_head(model: Backbone, perm: np.ndarray) -> None:
    """Reorder the output rows of ``model``'s last linear layer so its classes follow ``perm``."""
    last = model.head[-1] if isinstance(model.head, nn.Sequential) else model.head
    if not isinstance(last, nn.Linear):
        raise ValueError(f"cannot align the classes of {model.arch}: its head does not end in a linear layer")
    idx = torch.as_tensor(perm, dtype=torch.long)
    with torch.no_grad():
        last.weight.copy_(last.weight[idx].clone())
        if last.bias is not None:
            last.bias.copy_(last.bias[idx].clone())


def _member_split(full: ImageSet, lineage: dict[str, Any] | None, data: str,
                  classes: list[int] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(training, validation)`` indices of the training split a member used, rebuilt from its lineage (the same
    draw as :func:`~transferkit.data.splits.labelled_budget_indices`); empty when it trained on other data,
    ``None`` when it cannot be rebuilt (trained on the whole split, or no lineage)."""
    lin = lineage or {}
    if lin.get("data") != data or parse_classes(lin.get("classes")) != classes:
        if lin.get("data") not in (None, data):
            return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
        return None
    k = lin.get("labels_per_class")
    if k is None:
        return None  # trained on the whole split (minus a validation share): cannot be excluded
    v = lin.get("val_per_class")
    if v is None and "labels_rule" not in lin:  # a member trained before issue 26: no V then meant V = K
        v = k
    return labelled_budget_indices(full, k, v, float(lin.get("val_fraction") or 0.1), int(lin.get("seed", 0)))


def _fit_set_indices(full: ImageSet, metas: Sequence[dict[str, Any]], members: Sequence[str | Path], data: str,
                     classes: list[int] | None, fit_on: str, fit_per_class: int,
                     seed: int) -> tuple[np.ndarray, list[str]]:
    """The fit set's indices and the members whose images could not be excluded (see :func:`fuse`)."""
    splits = [_member_split(full, meta.get("lineage"), data, classes) for meta in metas]
    unknown = [str(members[i]) for i, sp in enumerate(splits) if sp is None]
    if fit_on == "validation":
        if unknown:
            raise ValueError(f"--fit-on validation: the validation images of {', '.join(unknown)} cannot be rebuilt "
                             "from their lineage (trained on another dataset or the whole split); use "
                             "--fit-on held_out")
        vals = [np.sort(sp[1]) for sp in splits]
        if any(len(v) == 0 for v in vals) or any(not np.array_equal(vals[0], v) for v in vals[1:]):
            raise ValueError("--fit-on validation needs members with one shared validation split (same data, "
                             "classes, labels per class, validation size and seed); these members differ — use "
                             "--fit-on held_out")
        trained = np.concatenate([sp[0] for sp in splits])
        return np.setdiff1d(vals[0], trained), []
    exclude = np.unique(np.concatenate([np.concatenate(sp) for sp in splits if sp is not None]
                                       or [np.array([], np.int64)]))
    return k_per_class(full, fit_per_class, seed + 424242, exclude=exclude.astype(np.int64),
                       option="fit_per_class"), unknown


def _probs(model: Backbone, data: TensorBatches) -> torch.Tensor:
    return torch.softmax(predict_logits(model, data), 1)


def _member_outputs(models: Sequence[Backbone], data: Sequence[TensorBatches],
                    batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Members' logits ``(M, N, C)`` and concatenated features ``(N, Σ D)`` from one pass each."""
    logits, feats = [], []
    for model, batches in zip(models, data, strict=True):
        def both(x: torch.Tensor, m: Backbone = model) -> torch.Tensor:
            f = m.forward_features(x)
            return torch.cat([f, m.forward_head(f)], 1)

        out = torch.cat(batched_outputs(model, batches, both, batch_size))
        feats.append(out[:, : model.feature_dim])
        logits.append(out[:, model.feature_dim:])
    return torch.stack(logits), torch.cat(feats, 1)


def _combined(model: FusedModel, member_logits: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """A fused model's probabilities from its members' precomputed logits ``(M, N, C)`` and features."""
    with torch.inference_mode():
        return model.eval().combine(member_logits.transpose(0, 1), feats).exp()


def _state_accuracy(model: Backbone, state: dict[str, torch.Tensor], data: TensorBatches) -> float:
    model.load_state_dict(state)
    return _acc(_probs(model, data), data.y.numpy())


def _acc(probs: torch.Tensor | np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(1) == labels).mean())


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
    models, metas, class_names = _load_members(members)
    full = load_task(data, "train", classes, c.data.strict)
    if full.classes != class_names:
        raise ValueError(f"--data {data}: classes {full.classes} differ from the members' {class_names}")
    if not has_split(data, "test"):
        raise ValueError(f"fuse needs a test split for the final scores; {data} has none")
    test = load_task(data, "test", classes, c.data.strict)
    fit_idx, unknown = _fit_set_indices(full, metas, members, data, parse_classes(classes), fit_on, c.fit_per_class,
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
        raise ValueError(f"--fit-on {fit_on!r}: valid choices: {', '.join(FIT_ON)}")
    bad = [m for m in methods if m not in FUSE_METHODS]
    if bad:
        raise FUSION_METHODS.unknown(bad[0])
    if len(members) < 2:
        raise ValueError(f"fuse needs at least 2 members, got {len(members)}")


def _load_members(members: Sequence[str | Path]) -> tuple[list[Backbone], list[dict[str, Any]], list[str]]:
    """The members in evaluation mode, their bundle metadata and the class names, heads aligned to the first
    member's class order (by name)."""
    loaded = [load_source(m) for m in members]
    models = [copy.deepcopy(m).eval() for m, _ in loaded]
    metas = [meta for _, meta in loaded]
    perms = check_members([list(meta.get("classes") or []) for meta in metas])  # raises naming both lists
    for model, perm in zip(models, perms, strict=True):
        if not np.array_equal(perm, np.arange(len(perm))):
            _permute_head(model, perm)
    return models, metas, list(metas[0]["classes"])


def _fit_and_score(models: list[Backbone], metas: list[dict[str, Any]], members: Sequence[str | Path],
                   methods: Sequence[str], fit_set: ImageSet, test: ImageSet, class_names: list[str],
                   c: FuseConfig) -> tuple[list[dict[str, Any]], dict[str, Backbone], dict[str, str], list[str] | None]:
    """Every member and fusion method scored on the fit set and the test split: ``(rows, fused models, skipped,
    the greedy soup's ingredients)``.

    Every member runs once on the fit set and once on the test split, with its own preprocessing; the ensemble
    methods are then fitted and scored from these outputs (a FusedModel computes the same thing)."""
    y_fit, y_test = fit_set.labels, test.labels
    fit_b = [to_batches(fit_set, m.input_spec) for m in models]
    fit_logits, fit_feats = _member_outputs(models, fit_b)  # (M, N, C), (N, ΣD)
    test_logits, test_feats = _member_outputs(models, [to_batches(test, m.input_spec) for m in models])
    member_fit, member_test = torch.softmax(fit_logits, 2), torch.softmax(test_logits, 2)
    rows = [{"model": f"member {i}: {Path(str(members[i])).name}", "kind": "member",
             "fit_accuracy": _acc(member_fit[i], y_fit), "test_accuracy": _acc(member_test[i], y_test)}
            for i in range(len(models))]
    fused, skipped, soup_kept = _fit_methods(methods, models, metas, members, fit_b, member_fit, fit_logits,
                                             fit_feats, y_fit, c.seed, c.gate_epochs)
    for name, model in fused.items():
        if name.startswith("soup"):  # one network: run it
            fit_acc = _acc(_probs(model, fit_b[0]), y_fit)
            test_acc = score(model, to_batches(test, model.input_spec), class_names)["accuracy"]
        else:
            fit_acc = _acc(_combined(model, fit_logits, fit_feats), y_fit)
            test_acc = _acc(_combined(model, test_logits, test_feats), y_test)
        rows.append({"model": name, "kind": "fusion", "fit_accuracy": fit_acc, "test_accuracy": test_acc})
    return rows, fused, skipped, soup_kept


def _fit_methods(methods: Sequence[str], models: list[Backbone], metas: list[dict[str, Any]],
                 members: Sequence[str | Path], fit_b: list[Any], member_fit: torch.Tensor, fit_logits: torch.Tensor,
                 fit_feats: torch.Tensor, y_fit: np.ndarray, seed: int,
                 gate_epochs: int) -> tuple[dict[str, Backbone], dict[str, str], list[str] | None]:
    """Every fusion method fitted on the fit set's member outputs: ``(fused models, skipped with reasons, the greedy
    soup's ingredients)``; a soup of members that cannot be souped is skipped, with the reason."""
    fused: dict[str, Backbone] = {}
    skipped: dict[str, str] = {}
    soup_kept: list[str] | None = None
    for method in methods:
        if method.startswith("soup"):
            try:
                check_soup(models, init_hashes=[str((m.get("lineage") or {}).get("source")) for m in metas])
            except ValueError as exc:
                skipped[method] = str(exc)
                continue
            states = [m.state_dict() for m in models]
            soup = copy.deepcopy(models[0])
            if method == "soup_uniform":
                soup.load_state_dict(uniform_soup(states))
            else:
                state, kept, _ = greedy_soup(states, lambda st, s=soup: _state_accuracy(s, st, fit_b[0]))
                soup.load_state_dict(state)
                soup_kept = [str(members[i]) for i in kept]
            fused[method] = soup.eval()
            continue
        model = FusedModel([copy.deepcopy(m) for m in models], "gating" if method == "gating" else method)
        if method == "weighted":
            model.weights.copy_(torch.as_tensor(fit_weights(member_fit.numpy(), y_fit), dtype=torch.float32))
        elif method == "stacking":
            st = Stacker(seed=seed).fit(member_fit.numpy(), y_fit)
            coef, intercept = torch.as_tensor(st.coef_), torch.as_tensor(st.intercept_)
            if coef.shape[0] == 1:  # binary: scikit-learn keeps one logit (class 1); make it two rows
                coef, intercept = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros(1), intercept])
            model.stack_coef.copy_(coef.float())
            model.stack_intercept.copy_(intercept.float())
            model.stack_eps.fill_(st.eps)
        elif method == "gating":
            gate = fit_gating(fit_logits.transpose(0, 1), fit_feats, torch.as_tensor(y_fit), epochs=gate_epochs,
                              seed=seed)
            model.gating.load_state_dict(gate.state_dict())
        fused[method] = model.eval()
    if not fused:
        raise ValueError("no fusion method could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return fused, skipped, soup_kept
