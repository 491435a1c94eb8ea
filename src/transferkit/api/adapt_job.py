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
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from transferkit import terminal
from transferkit.adaptation.adabn import adapt_batchnorm
from transferkit.adaptation.methods import AdaptMethod, build_method, parse_method
from transferkit.adaptation.net import AdaptNet
from transferkit.adaptation.selection import (
    SELECTION_CRITERIA,
    check_criterion,
    deep_embedded_validation,
    target_entropy,
)
from transferkit.api.runs import (
    RunResult,
    backbone_for_data,
    load_task,
    require_images,
    set_threads,
    write_json,
    write_yaml,
)
from transferkit.backbones.base import Backbone
from transferkit.backbones.cache import cached_features
from transferkit.backbones.features import batched_outputs
from transferkit.backbones.registry import is_backbone_name
from transferkit.bundle import load_bundle, resolve_bundle, save_bundle
from transferkit.config import TrainConfig
from transferkit.data.base import ImageSet
from transferkit.data.prepare import TensorBatches, to_batches
from transferkit.data.registry import has_split
from transferkit.data.splits import labelled_budget_split
from transferkit.engine.adapt import AdaptFitResult, ValOutput, fit_adapt
from transferkit.errors import ConfigError
from transferkit.options import AdaptConfig
from transferkit.report.adapt import write_adapt_report
from transferkit.report.metrics import classification_metrics
from transferkit.report.tables import metrics_table
from transferkit.rundir import check_output_dir, run_session
from transferkit.terminal import Console
from transferkit.transferability.similarity import similarities

LABEL_FREE = ("source_val", "target_entropy", "dev")


# -- data -------------------------------------------------------------------------------------------------
def check_domains(source: ImageSet, target: ImageSet, resize: bool) -> None:
    """Source and target must share their classes (names, in order); different image sizes need ``resize``."""
    if list(source.classes) != list(target.classes):
        raise ValueError(f"source {source.name} and target {target.name} have different classes: source "
                         f"{list(source.classes)}, target {list(target.classes)}; choose --classes so both have the "
                         "same ones (in the same order)")
    shapes = {d.name: (sorted({im.shape[:2] for im in d.images[:256]}) if isinstance(d.images, list)
                       else [tuple(d.images.shape[1:3])]) for d in (source, target)}
    if shapes[source.name] != shapes[target.name] and not resize:
        raise ValueError(f"source {source.name} has images of size {shapes[source.name][0]} but target {target.name} "
                         f"has {shapes[target.name][0]}; pass --resize to resize both to the model's input size "
                         "(--image-size)")


def random_split(ds: ImageSet, n_val: int, limit: int | None, seed: int) -> tuple[ImageSet, ImageSet]:
    """Unlabelled-style split (labels not consulted): ``n_val`` random held-out images, then up to ``limit``."""
    rng = np.random.default_rng(seed + 104729)
    order = rng.permutation(len(ds))
    val, rest = order[:n_val], order[n_val:]
    if limit is not None:
        rest = rest[:limit]
    return ds.subset(np.sort(rest), ds.name + "[train]"), ds.subset(np.sort(val), ds.name + "[val]")


def unlabelled(batches: TensorBatches) -> TensorBatches:
    """The same images without labels (a shallow copy): what the adaptation loop sees of the target."""
    out = copy.copy(batches)
    out.y = None
    return out


# -- model ------------------------------------------------------------------------------------------------
def build_model(backbone: str, num_classes: int, channels: int, pretrained: bool, image_size: int | None,
                bottleneck: int) -> tuple[Backbone, str]:
    """The network to adapt: a backbone by name (random or pretrained weights) or a bundle/run directory."""
    if not is_backbone_name(backbone):
        try:
            path = resolve_bundle(backbone)
        except Exception as exc:
            raise ValueError(f"--backbone '{backbone}': neither a backbone name ('transferkit backbones' lists them) "
                             f"nor a bundle/run directory ({exc})") from None
        model, _ = load_bundle(path)
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        model.set_bottleneck(num_classes, bottleneck)
        return model, f"bundle:{path}"
    model = backbone_for_data(backbone, channels, num_classes, pretrained, image_size)
    model.set_bottleneck(num_classes, bottleneck)
    return model, f"{'pretrained' if pretrained else 'scratch'}:{backbone}"


# -- selection --------------------------------------------------------------------------------------------
def make_scorer(oracle: bool):  # noqa: ANN201
    """Scores after each epoch from [source val, target val, source-train probe] outputs."""

    def scorer(outs: list[ValOutput]) -> dict[str, float]:
        src, tgt, probe = outs
        losses = F.cross_entropy(src.logits, src.labels, reduction="none")
        row = {"val_loss": float(losses.mean()), "val_acc": float((src.logits.argmax(1) == src.labels).float().mean())}
        row["source_val"] = row["val_acc"]
        row["target_entropy"] = target_entropy(tgt.logits)
        try:
            row["dev"] = deep_embedded_validation(probe.features.numpy(), src.features.numpy(), losses.numpy(),
                                                  tgt.features.numpy())
        except ValueError:
            row["dev"] = float("nan")
        if oracle and tgt.labels is not None:
            row["oracle"] = float((tgt.logits.argmax(1) == tgt.labels).float().mean())
        return row

    return scorer


def _accuracy(net: AdaptNet, data: TensorBatches, batch_size: int = 256) -> tuple[float, np.ndarray]:
    chunks = batched_outputs(net, data, net, batch_size)
    p = torch.cat(chunks).argmax(1).numpy() if chunks else np.zeros(0, dtype=np.int64)
    return float((p == data.y.numpy()).mean()) if len(p) else float("nan"), p


def _sample(data: TensorBatches, n: int, seed: int = 0) -> TensorBatches:
    """A seeded random subset of at most ``n`` items (splits may be ordered by class: never take the first n)."""
    if len(data) <= n:
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    out = copy.copy(data)
    out.x, out.y = data.x[idx], None if data.y is None else data.y[idx]
    return out


def _embed(net: AdaptNet, data: TensorBatches, batch_size: int = 256) -> np.ndarray:
    return torch.cat(batched_outputs(net, data, net.embed, batch_size)).numpy()


def _diagnostics(net: AdaptNet, source: TensorBatches, target: TensorBatches, seed: int) -> dict[str, float]:
    """The domain similarity of source and target features (≤ 1,000 of each) — the same measures ``select``
    reports (:func:`~transferkit.transferability.similarity.similarities`)."""
    s, t = _embed(net, _sample(source, 1000, seed)), _embed(net, _sample(target, 1000, seed + 1))
    return similarities(s.astype(np.float64), t.astype(np.float64), seed=seed)


def _batches(net_in: AdaptNet, data: TensorBatches, batch_size: int):  # noqa: ANN202
    for i in range(0, len(data), batch_size):
        batch = data.__getitems__(list(range(i, min(i + batch_size, len(data)))))
        yield batch[0] if isinstance(batch, tuple) else batch


# -- the job ----------------------------------------------------------------------------------------------
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
    net_o, dom, t = c.network, c.domains, c.train
    parts = _check_args(c)
    oracle_method = parts == ["target_oracle"]
    select_on = "oracle" if c.oracle_selection else c.selection
    inputs = [c.source, c.target, net_o.backbone]  # never written over
    check_output_dir(c.run.out, inputs)  # before anything loads or trains (run_session checks again)
    set_threads()
    start = time.perf_counter()
    d = _Domains.load(c.source, c.target, dom.classes, dom.strict, net_o.resize, dom.test_limit, dom.source_per_class,
                      dom.val_fraction, dom.target_val, dom.target_limit, t.seed)
    model, origin, feat, net, extract_s = _network(c, d, parts)
    cfg, method_mod, groups = _training(c, d, net, origin)
    # before: diagnostics of the starting features (the pretrained extractor, or the random initialisation)
    diag = {"before": _diagnostics(net, feat["source_val"], feat["t_val"], t.seed)} if c.diagnostics else {}
    pics = (_sample(feat["source_val"], 500, t.seed), _sample(feat["t_test"], 500, t.seed + 1))  # t-SNE subsets
    before_emb = (_embed(net, pics[0]), _embed(net, pics[1])) if c.plots else None
    val_sets, criteria = _selection_inputs(feat, c.oracle_selection, oracle_method, t.seed)
    out = Path(c.run.out)
    with run_session(out, c.run.resume, c.run.overwrite, record, inputs) as session:
        tmp = session.path
        write_yaml(tmp / "config.yaml", record)
        if session.resume_from is not None:
            cfg = dataclasses.replace(cfg, resume_from=str(session.resume_from))
            console.print(f"resuming {out} from {session.resume_from.name}")
        fit = fit_adapt(net, method_mod, groups, feat["s_train"], unlabelled(feat["t_train"]), val_sets, cfg,
                        make_scorer(c.oracle_selection or oracle_method), criteria, tmp)
        results = _evaluate(net, method_mod, fit, feat, select_on, t.batch_size)
        net.load_state_dict(results["selected_state"])
        if c.diagnostics:
            diag["after"] = _diagnostics(net, feat["source_val"], feat["t_val"], t.seed)
        metrics = {
            "task": "adapt", "method": "+".join(parts), "reference": bool(oracle_method),
            "options": method_mod.options, "selection": select_on, "oracle_selection": bool(c.oracle_selection),
            "seed": t.seed, "source": c.source, "target": c.target, "backbone": origin, "frozen": net_o.frozen,
            **_scores(net, fit, results, feat, d, select_on), "diagnostics": diag,
            "train_time_s": fit.train_time_s, "feature_extraction_s": extract_s,
            "total_time_s": time.perf_counter() - start,
        }
        lineage = {"kind": "adapt", "source": origin, "data": c.source, "target": c.target, "method": "+".join(parts),
                   "options": method_mod.options, "selection": select_on, "seed": t.seed, "classes": d.source.classes}
        final = model.eval()  # frozen: the untouched extractor + the adapted head (the same module the net trained)
        save_bundle(final, {"classes": d.source.classes, "lineage": lineage, "config": record,
                            "metrics": {"split": f"{c.target} test", "accuracy": metrics["target_accuracy"]}},
                    tmp / "bundle")
        write_json(tmp / "metrics.json", metrics)
        write_adapt_report(tmp, metrics, fit.history if c.plots else [], d.source.classes,
                           _tsne_inputs(net, pics, before_emb))
    _print_result(metrics, parts, out, c.target, fit, console)
    return RunResult(out, metrics, final, {"classes": d.source.classes, "lineage": lineage})


def _network(c: AdaptConfig, d: _Domains, parts: list[str]
             ) -> tuple[Backbone, str, dict[str, TensorBatches], AdaptNet, float]:
    """The model (its initialisation depends on the seed alone: backbone from scratch, bottleneck head), where it
    came from, the batches it trains on (cached features when frozen), the network the method adapts, and the
    feature extraction time."""
    n, oracle_method = c.network, parts == ["target_oracle"]
    if len(d.t_train) < c.train.batch_size and not oracle_method and "source_only" not in parts:
        raise ValueError(f"--target {c.target}: {len(d.t_train)} unlabelled target training images, fewer than "
                         f"--batch-size {c.train.batch_size}; lower --batch-size or give more target data")
    torch.manual_seed(c.train.seed)
    model, origin = build_model(n.backbone, d.source.num_classes, d.channels, n.pretrained, n.image_size, n.bottleneck)
    feat, net, extract_s = _features(model, d, n.frozen, oracle_method)
    return model, origin, feat, net, extract_s


def _training(c: AdaptConfig, d: _Domains, net: AdaptNet, origin: str
              ) -> tuple[TrainConfig, AdaptMethod, list[dict[str, Any]]]:
    """The training settings, the method's module and the parameter groups (the backbone at ``backbone_lr_mult`` ×
    the rate: 0.1 for pretrained weights, 1 from scratch, by default)."""
    t = c.train
    cfg = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr if t.lr is not None else 1e-3,
                      weight_decay=t.weight_decay, optimizer=t.optimizer, seed=t.seed, accelerator=t.accelerator,
                      devices=t.devices, progress=t.progress, checkpoint_every=t.checkpoint_every)
    L.seed_everything(t.seed, verbose=False)
    method_mod = build_method(c.method, net.feature_dim, d.source.num_classes, c.options)
    mult = t.backbone_lr_mult if t.backbone_lr_mult is not None else (
        0.1 if (c.network.pretrained or origin.startswith("bundle")) else 1.0)
    return cfg, method_mod, _param_groups(net, method_mod, cfg.lr, mult, c.network.frozen)


def _tsne_inputs(net: AdaptNet, pics: tuple[TensorBatches, TensorBatches],
                 before: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any] | None:
    """The t-SNE subsets' embeddings before training and now (the selected checkpoint), with their labels."""
    if before is None:
        return None
    return {"labels": (pics[0].y.numpy(), pics[1].y.numpy()), "before": before,
            "after": (_embed(net, pics[0]), _embed(net, pics[1]))}


def _print_result(metrics: dict[str, Any], parts: list[str], out: Path, target: str, fit: AdaptFitResult,
                  console: Console) -> None:
    console.print(metrics_table(metrics["target_test"], f"adapt {'+'.join(parts)} → {out} ({target} test)"))
    if fit.diverged:
        console.print(f"[red]training diverged at step {fit.diverged['step']}: {fit.diverged['what']}; kept the last "
                      "good epoch's weights. Try a lower --lr or --option trade_off=0.3[/red]")
    console.print(f"report: {out / 'report.md'}   bundle: {out / 'bundle'}")


# -- the job's phases ---------------------------------------------------------------------------------------------
def _check_args(c: AdaptConfig) -> list[str]:
    """Validate what needs no data (before anything loads); the method's parts."""
    method, selection, epochs, target_val = c.method, c.selection, c.train.epochs, c.domains.target_val
    frozen, pretrained, backbone = c.network.frozen, c.network.pretrained, c.network.backbone
    parts = parse_method(method)
    check_criterion(selection)
    if selection == "oracle":
        raise ValueError("--selection oracle peeks at target labels; ask for it explicitly with --oracle-selection")
    if epochs < 1:
        raise ConfigError("epochs", "at least 1", epochs)
    if target_val < 4:
        raise ConfigError("target_val", "at least 4 held-out target images", target_val)
    if frozen and not pretrained and is_backbone_name(backbone):
        raise ValueError("--frozen adapts a head on frozen features: pass --pretrained (or a bundle as --backbone); "
                         "frozen random features would not transfer anything")
    return parts


@dataclasses.dataclass
class _Domains:
    """The labelled source (training and validation parts) and the target: unlabelled training images, held-out
    images for label-free selection, and the test split — the target's labels stay out of training and selection."""

    source: ImageSet
    s_train: ImageSet
    s_val: ImageSet
    t_train: ImageSet
    t_val: ImageSet
    t_test: ImageSet
    channels: int

    @classmethod
    def load(cls, source: str, target: str, classes: str | list[int] | None, strict: bool, resize: bool,
             test_limit: int | None, source_per_class: int | None, val_fraction: float, target_val: int,
             target_limit: int | None, seed: int) -> _Domains:
        src_full = load_task(source, "train", classes, strict)
        tgt_full = load_task(target, "train", classes, strict)
        require_images(src_full, f"--source {source}", "domain adaptation")
        require_images(tgt_full, f"--target {target}", "domain adaptation")
        check_domains(src_full, tgt_full, resize)
        if not has_split(target, "test"):
            raise ValueError(f"--target {target} has no test split to score the adapted model on")
        test = load_task(target, "test", classes, strict)
        if test_limit is not None and test_limit < len(test):  # fixed subset: seed 0 for every run
            keep = np.sort(np.random.default_rng(0).permutation(len(test))[:test_limit])
            test = test.subset(keep, f"{test.name}[{test_limit}]")
        val_per_class = None if source_per_class is None else max(source_per_class // 5, 5)
        s_train, s_val = labelled_budget_split(src_full, source_per_class, val_per_class, val_fraction, seed)
        t_train, t_val = random_split(tgt_full, min(target_val, len(tgt_full) // 2), target_limit, seed)
        # grey → colour by repetition (lossless)
        return cls(src_full, s_train, s_val, t_train, t_val, test, max(src_full.channels, tgt_full.channels))


def _features(model: Backbone, d: _Domains, frozen: bool,
              oracle_method: bool) -> tuple[dict[str, TensorBatches], AdaptNet, float]:
    """The batches the network trains and is scored on — with ``frozen``, the extractor's cached features (only the
    head adapts) — the network, and the seconds spent extracting."""
    prep = {name: to_batches(ds, model.input_spec) for name, ds in
            (("s_train", d.s_train), ("s_val", d.s_val), ("t_train", d.t_train), ("t_val", d.t_val),
             ("t_test", d.t_test))}
    prep["source_val"] = prep["s_val"]  # the real source validation data (diagnostics compare it with the target)
    if oracle_method:  # the upper reference: the labelled target replaces the source for training and selection
        prep["s_train"], prep["s_val"] = prep["t_train"], prep["t_val"]
    if not frozen:
        return prep, AdaptNet(model), 0.0
    t0 = time.perf_counter()
    extractor = copy.deepcopy(model).eval()
    feat = dict(prep)
    for key, data in prep.items():
        f, _ = cached_features(extractor, data, data.key or key)
        feat[key] = TensorBatches(f, data.y, key=data.key)
    return feat, AdaptNet(None, model.head), time.perf_counter() - t0


def _param_groups(net: AdaptNet, method: AdaptMethod, lr: float, backbone_mult: float,
                  frozen: bool) -> list[dict[str, Any]]:
    """Head (bottleneck + classifier) and the method's own modules at ``lr``, the backbone at ``lr × mult``."""
    head_params = list(net.bottleneck.parameters()) + list(net.classifier.parameters())
    head_ids = {id(p) for p in head_params}
    body = [p for p in net.parameters() if id(p) not in head_ids]
    groups = [{"params": head_params, "lr": lr, "name": "head"},
              {"params": list(method.parameters()), "lr": lr, "name": "method"}]
    if body and not frozen:
        groups.insert(0, {"params": body, "lr": lr * backbone_mult, "name": "backbone"})
    return [g for g in groups if g["params"]]


def _selection_inputs(feat: dict[str, TensorBatches], oracle_selection: bool, oracle_method: bool,
                      seed: int) -> tuple[list[TensorBatches], dict[str, Any]]:
    """What the label-free criteria see after each epoch (source validation, the held-out target images — labelled
    only for an oracle — and 1,000 source-training inputs for DEV's density-ratio fit) and the criteria."""
    t_val_seen = feat["t_val"] if (oracle_selection or oracle_method) else unlabelled(feat["t_val"])
    probe = unlabelled(feat["s_train"])
    probe.x = probe.x[torch.randperm(len(probe), generator=torch.Generator().manual_seed(seed))[:1000]]
    criteria = {c: SELECTION_CRITERIA[c] for c in LABEL_FREE}
    if oracle_selection:
        criteria["oracle"] = SELECTION_CRITERIA["oracle"]
    return [feat["s_val"], t_val_seen, probe], criteria


def _scores(net: AdaptNet, fit: AdaptFitResult, results: dict[str, Any], feat: dict[str, TensorBatches],
            d: _Domains, select_on: str) -> dict[str, Any]:
    """The adapted network's scores (the target test split scored once per kept checkpoint, in :func:`_evaluate`)
    and the sizes of every part."""
    acc_s, _ = _accuracy(net, feat["source_val"])
    return {
        "target_accuracy": results["selected_accuracy"], "target_accuracy_last": results["last_accuracy"],
        "selected_epoch": fit.best_epochs.get(select_on, -1), "last_epoch": fit.last_epoch,
        "by_criterion": results["by_criterion"], "source_val_accuracy": acc_s,
        "target_test": classification_metrics(feat["t_test"].y.numpy(), results["selected_predictions"],
                                              d.source.classes),
        "diverged": fit.diverged, "epochs_run": fit.epochs_run,
        "n_source_train": len(d.s_train), "n_source_val": len(d.s_val), "n_target_train": len(d.t_train),
        "n_target_val": len(d.t_val), "n_target_test": len(d.t_test), "adabn": results["adabn"],
    }


def _evaluate(net: AdaptNet, method: AdaptMethod, fit: AdaptFitResult, feat: dict[str, TensorBatches],
              select_on: str, batch_size: int) -> dict[str, Any]:
    """Target-test accuracy of every criterion's checkpoint and of the last epoch (AdaBN applied to each)."""
    adabn = method.post_hoc == "adabn"

    def prepared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net.load_state_dict(state)
        if adabn:
            adapt_batchnorm(net, _batches(net, feat["t_train"], batch_size))
        return copy.deepcopy(net.state_dict())

    by: dict[str, Any] = {}
    states: dict[str, dict[str, torch.Tensor]] = {}
    preds: dict[str, Any] = {}  # target-test predictions per checkpoint: the selected one's feed the report
    for name, state in fit.states.items():
        states[name] = prepared(state)
        acc, preds[name] = _accuracy(net, feat["t_test"])
        by[name] = {"epoch": fit.best_epochs[name], "score": fit.best_scores[name], "target_accuracy": acc,
                    "uses_target_labels": name == "oracle"}
    last = prepared(fit.last_state) if fit.last_state is not None else None
    last_acc, last_pred = _accuracy(net, feat["t_test"]) if last is not None else (float("nan"), None)
    if select_on not in states:  # e.g. DEV undefined in every epoch: fall back to the last epoch, and say so
        by[select_on] = {"epoch": fit.last_epoch, "score": float("nan"), "target_accuracy": last_acc,
                         "note": "criterion undefined in every epoch; the last epoch was kept"}
        chosen, chosen_pred = last, last_pred
    else:
        chosen, chosen_pred = states[select_on], preds[select_on]
    return {"selected_state": chosen, "selected_accuracy": by[select_on]["target_accuracy"],
            "selected_predictions": chosen_pred, "last_accuracy": last_acc, "by_criterion": by,
            "adabn": {"applied": adabn, "target_images": len(feat["t_train"])} if adabn else None}
