"""Splits for honest transfer experiments: class subsets, k labels per class, validation carving.

The rule these helpers exist for: the **test split is never used for selection**. Early stopping and
checkpoint choice use a validation set carved from the *training* split (see :func:`train_val_split`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.data.base import AnyDataset
from transferkit.errors import ConfigError

log = logging.getLogger(__name__)


def parse_classes(value: str | Sequence[int] | None) -> list[int] | None:
    """``"0,1,5"`` / ``"0-4"`` / ``[0, 1]`` → ``[0, 1, 5]``; ``None`` or ``"all"`` → ``None``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "all"}):
        return None
    if isinstance(value, str):
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = part.split("-")
                    out.extend(range(int(lo), int(hi) + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise ConfigError("classes", "a list of class indices like '0,1,5' or '0-4'", value) from None
        return out
    return [int(c) for c in value]


def select_classes(ds: AnyDataset, classes: Sequence[int] | None) -> AnyDataset:
    """Keep only ``classes`` (indices into ``ds.classes``) and relabel them ``0..k-1`` in the given order.

    ``select_classes(fmnist, [2, 3, 4, 6, 7])`` turns "pullover, dress, coat, shirt, sneaker" into a
    5-class task whose label 0 is pullover.
    """
    if classes is None:
        return ds
    classes = list(classes)
    bad = [c for c in classes if not 0 <= c < ds.num_classes]
    if bad:
        raise ConfigError("classes", f"class indices 0..{ds.num_classes - 1} of {ds.name}", classes,
                          f"{bad} out of range; its classes: {', '.join(f'{i}={n}' for i, n in enumerate(ds.classes))}")
    if len(set(classes)) != len(classes):
        raise ConfigError("classes", "each class index once", classes)
    remap = np.full(ds.num_classes, -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    idx = np.flatnonzero(remap[ds.labels] >= 0)
    sub = ds.subset(idx)
    return sub.relabelled(remap[sub.labels], [ds.classes[c] for c in classes], ds.name)


def align_classes(ds: AnyDataset, classes: Sequence[str]) -> AnyDataset:
    """``ds`` relabelled onto ``classes`` (e.g. a model's) by name, when its classes are among them but differ —
    fewer (a held-out folder holding one class) or in another order. Otherwise ``ds`` is returned unchanged (the
    caller compares class counts)."""
    classes = [str(c) for c in classes]
    if ds.classes == classes or not classes or not set(ds.classes) <= set(classes):
        return ds
    index = {c: i for i, c in enumerate(classes)}
    remap = np.array([index[c] for c in ds.classes], dtype=np.int64)
    return ds.relabelled(remap[ds.labels], classes, ds.name)


def check_trainable(ds: AnyDataset, what: str = "training a classifier") -> None:
    """Refuse data from which no classifier can be learnt: fewer than 2 classes with examples.

    One class always "scores" accuracy 1.0, which looks like success and means nothing. Called by the draws of
    every training set (:func:`train_val_split`, :func:`k_per_class`, hence :func:`labelled_budget_split`), so
    it applies after ``--classes`` selection and class-map merges; evaluating a model on data that happens to
    hold one class does not go through it. A class without examples next to two or more with examples is a
    warning (its output is never trained).
    """
    counts = np.bincount(np.asarray(ds.labels, dtype=np.int64), minlength=ds.num_classes)
    present = [ds.classes[c] for c in np.flatnonzero(counts)]
    if len(present) < 2:
        found = (f"{len(present)} class with examples ('{present[0]}')" if present else "no examples")
        of = f" of its {ds.num_classes} classes" if ds.num_classes > len(present) else ""
        raise ValueError(
            f"{ds.name}: {found}{of}; {what} needs at least 2 classes (with one, every prediction is right and "
            f"accuracy is a meaningless 1.0). Add examples of another class (image_folder: another class folder), "
            f"or choose at least two classes with classes=…"
        )
    empty = [ds.classes[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        log.warning("%s: class(es) %s have no examples; the model's output for them is never trained",
                    ds.name, ", ".join(map(repr, empty)))


def k_per_class(ds: AnyDataset, k: int, seed: int, exclude: np.ndarray | None = None,
                option: str = "labels_per_class") -> np.ndarray:
    """Indices of ``k`` images per class drawn without replacement with ``seed`` (stratified k-shot).

    Raises if a class has fewer than ``k`` images (after ``exclude``), naming the class and its count, and if
    ``ds`` has fewer than 2 classes (:func:`check_trainable`); ``option`` is the parameter ``k`` came from (a
    :class:`~transferkit.errors.ConfigError` names it).
    """
    if k < 1:
        raise ConfigError(option, "at least 1", k)
    rng = np.random.default_rng(seed)
    available = np.ones(len(ds), bool)
    if exclude is not None:
        available[exclude] = False
    picked = []
    for c in range(ds.num_classes):
        pool = np.flatnonzero((ds.labels == c) & available)
        if len(pool) < k:
            raise ConfigError(option, f"at most {len(pool)}", k,
                              f"class {c} ('{ds.classes[c]}') of {ds.name} has only {len(pool)} images")
        picked.append(rng.choice(pool, size=k, replace=False))
    check_trainable(ds)  # after the per-class check: a class short of examples is named as such first
    return np.sort(np.concatenate(picked))


def train_val_split(ds: AnyDataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``ds`` into (train indices, validation indices); every class keeps ≥1 train image.

    Raises if ``ds`` has fewer than 2 classes with examples (:func:`check_trainable`)."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError("val_fraction", "a number strictly between 0 and 1", val_fraction)
    check_trainable(ds)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(ds.num_classes):
        pool = rng.permutation(np.flatnonzero(ds.labels == c))
        n_val = min(int(round(len(pool) * val_fraction)), max(len(pool) - 1, 0))
        val.append(pool[:n_val])
        train.append(pool[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


LABELS_RULE = "k-total"  # issue 26: --labels-per-class K is the whole budget (recorded in a run's lineage)


def budget_val_per_class(labels_per_class: int | None, val_per_class: int | None) -> int | None:
    """The validation images per class a labelled budget draws *beside* its ``labels_per_class``: ``val_per_class``
    when given, else 0 — the K labels are the whole budget (issue 26: ``--labels-per-class K`` means K labelled
    examples per class in total; anything a run selects comes out of those K). ``None`` without a budget (a stratified
    ``val_fraction`` of the training split is then carved instead)."""
    if labels_per_class is None:
        return None
    if val_per_class is not None and val_per_class < 0:
        raise ConfigError("val_per_class", "≥ 0", val_per_class)
    return 0 if val_per_class is None else int(val_per_class)


def labelled_budget_indices(
    ds: AnyDataset, labels_per_class: int | None, val_per_class: int | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) of :func:`labelled_budget_split` — the same draw, as indices
    (to rebuild which images a run used, or to add further images around them)."""
    if labels_per_class is None:
        return train_val_split(ds, val_fraction, seed)
    n_val = budget_val_per_class(labels_per_class, val_per_class)
    val_idx = (k_per_class(ds, n_val, seed + 7919, option="val_per_class") if n_val
               else np.array([], dtype=np.int64))
    return k_per_class(ds, labels_per_class, seed, exclude=val_idx), val_idx


def labelled_budget_split(
    ds: AnyDataset, labels_per_class: int | None, val_per_class: int | None, val_fraction: float, seed: int
) -> tuple[AnyDataset, AnyDataset]:
    """The training and validation sets of a target task, both drawn from ``ds`` (a *training* split).

    With ``labels_per_class=k`` the training set holds ``k`` images per class — the whole labelled budget — and
    the validation set is empty, unless ``val_per_class=v`` asks for ``v`` *other* images per class as a fixed
    validation set (a budget of ``k + v`` per class, recorded in the run). Without ``labels_per_class``, a
    stratified ``val_fraction`` of ``ds`` becomes validation.
    """
    tr, va = labelled_budget_indices(ds, labels_per_class, val_per_class, val_fraction, seed)
    return budget_subsets(ds, tr, va, labels_per_class, val_per_class)


def budget_subsets(ds: AnyDataset, tr: np.ndarray, va: np.ndarray, labels_per_class: int | None,
                   val_per_class: int | None) -> tuple[AnyDataset, AnyDataset]:
    """The training and validation subsets of ``ds`` at the positions ``tr`` and ``va`` of
    :func:`labelled_budget_indices`, named after the budget that drew them."""
    if labels_per_class is None:
        return ds.subset(tr, ds.name + "[train]"), ds.subset(va, ds.name + "[val]")
    n_val = budget_val_per_class(labels_per_class, val_per_class)
    return (
        ds.subset(tr, f"{ds.name}[{labels_per_class}/class]"),
        ds.subset(va, f"{ds.name}[val {n_val}/class]"),
    )


def inner_split(labels: np.ndarray, seed: int, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, str]:
    """A stratified inner split of labelled examples for selection: ``(fit rows, selection rows, note)``.

    For jobs that choose among candidates (a setting, a source, an epoch) from the ``K`` labels alone: each class
    with two or more examples gives ``max(1, round(fraction · count))`` of them (never all) to the selection part;
    the winner is then refit on every row. A class with a single example stays in the fit part (it cannot be on
    both sides) and the note says so; when fewer than two classes have two examples — ``K = 1`` — there is **no
    selection**: both returned arrays are ``(all rows, empty)`` and the note reads ``"no selection: …"`` (the caller
    uses its fixed default setting and records that). Never silent: the note always says what was done.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    every = np.arange(len(labels))
    if int((counts >= 2).sum()) < 2:
        return every, np.array([], dtype=np.int64), ("no selection: fewer than two classes have two or more labelled "
                                                      "examples (K = 1), so the fixed default setting is used")
    rng = np.random.default_rng([seed, 104729])
    held: list[np.ndarray] = []
    singles = [int(c) for c, n in zip(classes, counts, strict=True) if n < 2]
    for c, n in zip(classes, counts, strict=True):
        if n < 2:
            continue
        pool = rng.permutation(np.flatnonzero(labels == c))
        held.append(pool[:min(max(1, int(round(n * fraction))), n - 1)])
    sel = np.sort(np.concatenate(held))
    note = f"stratified inner split: {len(sel)} of {len(labels)} labelled examples held out for selection"
    if singles:
        note += f"; fallback: class(es) {singles} have one example, kept for fitting and never held out"
    return np.setdiff1d(every, sel), sel, note


def labels_record(labels_per_class: int | None, val_per_class: int | None, n_train: int, n_val: int,
                  selection: str, fingerprint: str | None = None,
                  indices: np.ndarray | None = None) -> dict[str, Any]:
    """The ``labels`` entry of a run's metrics.json: which labels trained the final model and how selection was
    done — ``per_class`` (K, or ``None`` for the whole training split), ``train_final_model`` (examples the final
    model was fitted on), ``validation`` (examples of a separate validation set, per class when budgeted),
    ``budget_per_class`` (K + V), ``selection`` (in words), ``indices_fingerprint`` (content hash of the training
    examples) and, for a budgeted run, ``indices`` (their positions in the target task's training split, after
    ``--classes``) — the whole training split is not listed."""
    v = budget_val_per_class(labels_per_class, val_per_class)
    return {
        "per_class": labels_per_class, "train_final_model": n_train,
        "validation_per_class": v, "validation": n_val,
        "budget_per_class": None if labels_per_class is None else labels_per_class + (v or 0),
        "selection": selection, "indices_fingerprint": fingerprint,
        "indices": None if indices is None or labels_per_class is None else [int(i) for i in indices],
    }
