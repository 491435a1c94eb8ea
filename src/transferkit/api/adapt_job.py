"""``adapt``: unsupervised domain adaptation from a labelled source dataset to an unlabelled target dataset.

What the job uses, and what it never touches:

* **source** ``train`` split → stratified training and validation parts (labels used);
* **target** ``train`` split → a random held-out *target-validation* part and the unlabelled training part.
  Their labels are dropped before training (``target_oracle`` aside, which trains on them by definition and
  is reported as an upper reference) and are read only by ``--oracle-selection``, which is labelled as such;
* **target** ``test`` split → the final scores, once per kept checkpoint, after training.

Model selection (:mod:`transferkit.adaptation.selection`) follows ``selection`` (default: source-validation
accuracy); the report also gives the target accuracy of the checkpoint every other label-free criterion
would have picked, and of the last epoch, so their reliability can be judged. Diagnostics: proxy A-distance
and MMD between source- and target-validation features before training and after, and t-SNE pictures.

The options (flat names of :class:`~transferkit.options.AdaptConfig`):

``method`` is a registered method or a ``+`` combination (:mod:`transferkit.adaptation.methods`); ``options``
go to it (``{"trade_off": 0.5}``, ``{"dann.hidden": 512}``). The network is ``backbone`` (a name — random
weights, or its shipped weights with ``pretrained`` — or a bundle/run directory) with a ``bottleneck``-wide
bottleneck head. ``frozen`` adapts only the head on frozen, cached features of a pretrained extractor
(fast on a CPU). ``source_per_class`` caps the source training images per class, ``target_limit`` the
unlabelled target images; ``target_val`` target images are held out for label-free selection;
``test_limit`` scores on a fixed random subset of the target test split (the same for every seed and method).

``selection``: ``source_val`` (default), ``target_entropy`` or ``dev``; ``oracle_selection=True`` selects on
the target-validation *labels* instead, for analysis only, and says so in every output.

The data side is :mod:`transferkit.data.adapt_splits`, the network's :mod:`transferkit.adaptation.adapt_setup` and
:mod:`transferkit.adaptation.adapt_eval`, the loop :func:`transferkit.engine.adapt.fit_adapt`, the report
:mod:`transferkit.report.adapt`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from transferkit import terminal
from transferkit.adaptation.adapt_eval import accuracy, domain_diagnostics, embed, evaluate_checkpoints, tsne_inputs
from transferkit.adaptation.adapt_setup import (
    build_network,
    check_adapt_options,
    make_scorer,
    selection_inputs,
    training_setup,
)
from transferkit.api.runs import RunResult, set_threads, write_json, write_yaml
from transferkit.bundle import save_bundle
from transferkit.data.adapt_splits import AdaptDomains, sample_batches, unlabelled
from transferkit.engine.adapt import fit_adapt
from transferkit.options import AdaptConfig
from transferkit.report.adapt import adapt_metrics, adapt_scores, print_adapt_result, write_adapt_report
from transferkit.rundir import check_output_dir, run_session
from transferkit.terminal import Console


def adapt(*args: Any, config: AdaptConfig | None = None, console: Console | None = None,
          **options: Any) -> RunResult:
    """Adapt a classifier trained on labelled ``source`` to the unlabelled ``target`` domain with ``method``.

    ``adapt(source, target, method, **options)`` or ``adapt(config=AdaptConfig(...))``: the options are the flat
    names of :class:`~transferkit.options.AdaptConfig` (its comparison part is read by
    :func:`~transferkit.api.adapt_compare_job.adapt_compare`, not here).
    """
    c = AdaptConfig.given(config, args, options)
    record = c.record("adapt")
    console = terminal.resolve(console)
    t = c.train
    parts = check_adapt_options(c)
    oracle_method = parts == ["target_oracle"]
    select_on = "oracle" if c.oracle_selection else c.selection
    inputs = [c.source, c.target, c.network.backbone]  # never written over
    check_output_dir(c.run.out, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    dom = c.domains
    d = AdaptDomains.load(c.source, c.target, dom.classes, dom.strict, c.network.resize, dom.test_limit,
                          dom.source_per_class, dom.val_fraction, dom.target_val, dom.target_limit, t.seed)
    model, origin, feat, net, extract_s = build_network(c, d, parts)
    cfg, method_mod, groups = training_setup(c, d, net, origin)
    # before: diagnostics of the starting features (the pretrained extractor, or the random initialisation)
    diag = {"before": domain_diagnostics(net, feat["source_val"], feat["t_val"], t.seed)} if c.diagnostics else {}
    pics = (sample_batches(feat["source_val"], 500, t.seed), sample_batches(feat["t_test"], 500, t.seed + 1))
    before_emb = (embed(net, pics[0]), embed(net, pics[1])) if c.plots else None  # the t-SNE subsets
    val_sets, criteria = selection_inputs(feat, c.oracle_selection, oracle_method, t.seed)
    out = Path(c.run.out)
    with run_session(out, c.run.resume, c.run.overwrite, record, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        if session.resume_from is not None:
            cfg = dataclasses.replace(cfg, resume_from=str(session.resume_from))
            console.print(f"resuming {out} from {session.resume_from.name}")
        fit = fit_adapt(net, method_mod, groups, feat["s_train"], unlabelled(feat["t_train"]), val_sets, cfg,
                        make_scorer(c.oracle_selection or oracle_method), criteria, tmp)
        results = evaluate_checkpoints(net, method_mod, fit, feat, select_on, t.batch_size)
        net.load_state_dict(results["selected_state"])
        if c.diagnostics:
            diag["after"] = domain_diagnostics(net, feat["source_val"], feat["t_val"], t.seed)
        scores = adapt_scores(fit, results, accuracy(net, feat["source_val"])[0], feat["t_test"].y.numpy(), d,
                              select_on)
        metrics = adapt_metrics(c, parts, select_on, origin, method_mod.options, scores, diag, {
            "train_time_s": fit.train_time_s, "feature_extraction_s": extract_s,
            "total_time_s": time.perf_counter() - start})
        lineage = {"kind": "adapt", "source": origin, "data": c.source, "target": c.target, "method": "+".join(parts),
                   "options": method_mod.options, "selection": select_on, "seed": t.seed, "classes": d.source.classes}
        final = model.eval()  # frozen: the untouched extractor + the adapted head (the same module the net trained)
        save_bundle(final, {"classes": d.source.classes, "lineage": lineage, "config": record,
                            "metrics": {"split": f"{c.target} test", "accuracy": metrics["target_accuracy"]}},
                    tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_adapt_report(tmp, metrics, fit.history if c.plots else [], d.source.classes,
                           tsne_inputs(net, pics, before_emb))
    print_adapt_result(metrics, parts, out, c.target, fit.diverged, console)
    return RunResult(out, metrics, final, {"classes": d.source.classes, "lineage": lineage})

