"""Multi-task data: one set of inputs and a label matrix ``(N, T)`` with ``-1`` where a row has no label for a task.

:func:`load_multitask` builds a split of a :class:`~transferkit.multi_task.spec.MultiTaskSpec`: the shared dataset's
rows (labelled by every task that reads it) followed by each own-data task's rows (labelled for that task only).
:func:`budget_split` draws the labelled training and validation rows per task — ``labels_per_class`` /
``val_per_class`` (none by default: K is the budget) for a budgeted task, a stratified ``val_fraction`` otherwise —
so that no row is in both, and
:func:`task_sampling_weights` weights rows so that tasks of different sizes are seen as the ``sampling`` mode asks.
Everything is checked before any model is built: empty tasks, mismatched input kinds, unknown classes or columns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from transferkit.data.base import AnyDataset, ImageSet, TextSet
from transferkit.data.class_map import apply_class_map
from transferkit.data.prepare import SpecLike, TensorBatches, to_batches
from transferkit.data.registry import get_dataset, parse_spec
from transferkit.data.splits import budget_val_per_class, k_per_class, parse_classes, train_val_split
from transferkit.data.text import read_label_columns, sorted_labels
from transferkit.multi_task.spec import MultiTaskSpec, TaskSpec

MISSING = -1


@dataclass
class MultiTaskSet:
    """Inputs (an :class:`ImageSet`/:class:`TextSet` whose own labels mean nothing) and ``labels`` ``(N, T)``."""

    inputs: AnyDataset
    labels: np.ndarray
    tasks: list[str]
    classes: list[list[str]]
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def column(self, task: str) -> np.ndarray:
        return self.labels[:, self.tasks.index(task)]

    def labelled(self) -> dict[str, int]:
        """Rows with a label, per task."""
        return {t: int((self.labels[:, i] != MISSING).sum()) for i, t in enumerate(self.tasks)}

    def missing(self) -> dict[str, int]:
        """Rows without a label, per task (masked out of that task's loss)."""
        return {t: len(self) - n for t, n in self.labelled().items()}

    def subset(self, rows: np.ndarray, labels: np.ndarray | None = None, name: str | None = None) -> MultiTaskSet:
        """The rows ``rows`` (with ``labels`` instead of theirs when given, e.g. a budget's masked labels)."""
        rows = np.asarray(rows, dtype=np.int64)
        lab = self.labels[rows] if labels is None else labels
        return MultiTaskSet(self.inputs.subset(rows), lab, list(self.tasks), [list(c) for c in self.classes],
                            name or self.name)

    def task_dataset(self, task: str) -> AnyDataset:
        """The rows labelled for ``task`` as an ordinary labelled dataset (probes, per-task evaluation)."""
        col = self.column(task)
        rows = np.flatnonzero(col != MISSING)
        sub = self.inputs.subset(rows, f"{self.name}[{task}]")
        return sub.relabelled(col[rows], list(self.classes[self.tasks.index(task)]))


def _class_labels(ds: AnyDataset, task: TaskSpec, where: str) -> tuple[np.ndarray, list[str]]:
    """A task's labels over ``ds``'s rows from its classes: a subset (``classes``; other rows get no label) merged or
    renamed by ``class_map``."""
    try:
        chosen = parse_classes(task.classes)
    except ValueError as exc:
        raise ValueError(f"{where}: classes: {exc}") from None
    chosen = list(range(ds.num_classes)) if chosen is None else chosen
    bad = [c for c in chosen if not 0 <= c < ds.num_classes]
    if bad:
        raise ValueError(f"{where}: classes {bad} are not classes of {ds.name}; valid: 0-{ds.num_classes - 1} "
                         f"({', '.join(ds.classes)})")
    remap = np.full(ds.num_classes, MISSING, np.int64)
    remap[chosen] = np.arange(len(chosen))
    labels = remap[ds.labels]
    names = [ds.classes[c] for c in chosen]
    if task.class_map:
        holder = ds.relabelled(np.maximum(labels, 0), names)  # the same rows; missing ones re-masked below
        mapped = apply_class_map(holder, task.class_map, f"{where}: class_map")
        labels = np.where(labels == MISSING, MISSING, mapped.labels)
        names = mapped.classes
    return labels, names


def _column_labels(values: list[str], classes: list[str] | None, task: TaskSpec, where: str,
                   rows: list[str] | None) -> tuple[np.ndarray, list[str]]:
    classes = classes if classes is not None else sorted_labels(values)
    if not classes:
        raise ValueError(f"{where}: column '{task.column}' is empty in every row; the task has no samples")
    ids = {c: i for i, c in enumerate(classes)}
    out = np.full(len(values), MISSING, np.int64)
    for i, v in enumerate(values):
        if not v:
            continue
        if v not in ids:
            at = rows[i] if rows else f"row {i + 1}"
            raise ValueError(f"{where}: {at}: label '{v}' in column '{task.column}' is not one of the training split's "
                             f"classes: {', '.join(classes)}")
        out[i] = ids[v]
    return out, classes


def _concat(parts: list[AnyDataset], name: str) -> AnyDataset:
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, TextSet) for p in parts):
        texts = [t for p in parts for t in p.texts]
        rows = [r for p in parts for r in (p.rows or [f"{p.name}:{i}" for i in range(len(p))])]
        return TextSet(texts, np.zeros(len(texts), np.int64), ["-"], name, rows)
    arrays = [p.images for p in parts]
    if all(isinstance(a, np.ndarray) for a in arrays) and len({a.shape[1:] for a in arrays}) == 1:
        images: np.ndarray | list[np.ndarray] = np.concatenate(arrays)
    else:  # differing sizes or channels: a list (prepared to the model's size later)
        images = [im for a in arrays for im in a]
    paths = None
    if all(p.paths is not None for p in parts):
        paths = [q for p in parts for q in p.paths]
    return ImageSet(images, np.zeros(len(images), np.int64), ["-"], name, paths)


def load_multitask(spec: MultiTaskSpec, split: str, classes: list[list[str]] | None = None,
                   strict: bool = False) -> MultiTaskSet:
    """Split ``split`` of every task's data, as one :class:`MultiTaskSet` (tasks in spec order, holdout ones too).

    ``classes`` (per task, from the training split) fixes the class ids of another split; a label outside them is
    an error naming the row. Mismatched input kinds between tasks are refused here, before any training.
    """
    names = [t.name for t in spec.tasks]
    blocks: list[tuple[AnyDataset, dict[int, np.ndarray]]] = []
    task_classes: list[list[str] | None] = [None] * len(spec.tasks)
    shared_tasks = [i for i, t in enumerate(spec.tasks) if t.data is None]
    if shared_tasks:
        blocks.append(_shared_block(spec, split, shared_tasks, classes, task_classes, strict))
    for i, t in enumerate(spec.tasks):
        if t.data is None:
            continue
        where = f"task '{t.name}' (data {t.data})"
        ds = get_dataset(t.data, split, strict=strict)
        labels, cls = _class_labels(ds, t, where)
        task_classes[i] = _same_classes(cls, classes, i, where)
        blocks.append((ds, {i: labels}))
    kinds = {ds.modality for ds, _ in blocks}
    if len(kinds) > 1:
        described = ", ".join(f"{ds.name} is {ds.modality}" for ds, _ in blocks)
        raise ValueError(f"multitask: the tasks' inputs are of different kinds ({described}); one backbone takes one "
                         "kind of input — give every task image data or every task text data")
    matrix = np.full((sum(len(ds) for ds, _ in blocks), len(names)), MISSING, np.int64)
    start = 0
    for ds, cols in blocks:
        for i, labels in cols.items():
            matrix[start:start + len(ds), i] = labels
        start += len(ds)
    inputs = _concat([ds for ds, _ in blocks], f"multitask/{split}")
    out = MultiTaskSet(inputs, matrix, names, [list(c or []) for c in task_classes], f"multitask/{split}")
    if split == "train":
        empty = [t for t, n in out.labelled().items() if n == 0]
        if empty:
            raise ValueError(f"multitask: task(s) {empty} have no samples (no row of the training split has a label "
                             "for them); check their data, classes or column")
    return out


def _same_classes(found: list[str], classes: list[list[str]] | None, i: int, where: str) -> list[str]:
    if classes is not None and found != classes[i]:
        raise ValueError(f"{where}: this split's classes {found} differ from the training split's {classes[i]}")
    return found


def _shared_block(spec: MultiTaskSpec, split: str, tasks: list[int], classes: list[list[str]] | None,
                  task_classes: list[list[str] | None], strict: bool) -> tuple[AnyDataset, dict[int, np.ndarray]]:
    assert spec.data is not None
    name, arg = parse_spec(spec.data)
    cols: dict[int, np.ndarray] = {}
    if name == "text":  # a table: every task reads a label column (its own 'column', or the data's label column)
        from transferkit.data.text import parse_text_arg

        default = parse_text_arg(arg or "")[2]
        wanted = [spec.tasks[i].column or default for i in tasks]
        ds, values = read_label_columns(arg or "", split, list(dict.fromkeys(wanted)), strict)
        for i, col in zip(tasks, wanted, strict=True):
            t = spec.tasks[i]
            where = f"task '{t.name}' (data {spec.data}, column '{col}')"
            if t.classes is not None:
                raise ValueError(f"{where}: 'classes' picks class indices of a dataset; for a label column, leave "
                                 "the cells of unwanted rows empty, or rename/merge values with 'class_map'")
            raw = values[col]
            if t.class_map:  # rename/merge the column's values by name (unmapped values keep theirs)
                unknown = sorted(set(t.class_map) - set(raw)) if split == "train" else []
                if unknown:
                    raise ValueError(f"{where}: class_map names {unknown}, which no row of the column holds; values: "
                                     f"{', '.join(sorted_labels(raw))}")
                raw = [t.class_map.get(v, v) if v else v for v in raw]
            given = None if classes is None else classes[i]
            labels, task_classes[i] = _column_labels(raw, given, TaskSpec(t.name, column=col), where, ds.rows)
            cols[i] = labels
        return ds, cols
    ds = get_dataset(spec.data, split, strict=strict)
    for i in tasks:
        t = spec.tasks[i]
        where = f"task '{t.name}' (data {spec.data})"
        if t.column is not None:
            raise ValueError(f"{where}: 'column' reads a label column of a text table (text:FILE); {spec.data} has "
                             "one label per image — derive tasks from it with 'classes' and 'class_map'")
        labels, cls = _class_labels(ds, t, where)
        task_classes[i] = _same_classes(cls, classes, i, where)
        cols[i] = labels
    return ds, cols


def budget_split(data: MultiTaskSet, spec: MultiTaskSpec, seed: int) -> tuple[MultiTaskSet, MultiTaskSet]:
    """The labelled training and validation rows of every task, drawn from a training split.

    A task with ``labels_per_class=k`` keeps ``k`` labels per class for training — its whole labelled budget — and,
    only when ``val_per_class=v`` is given, ``v`` others per class for validation (a budget of ``k + v``; issue 26);
    a task without uses every labelled row, a stratified ``val_fraction`` of them for validation. Validation rows
    are drawn first, for every task, and no row is in both sets. A row keeps only the labels drawn for it (a
    budgeted task's other labels are masked). Holdout tasks get training labels only (their probe has nothing to
    select). Seeded by ``seed``; an impossible budget names the task and class.
    """
    n, t_count = data.labels.shape
    train_lab = np.full((n, t_count), MISSING, np.int64)
    val_lab = np.full((n, t_count), MISSING, np.int64)
    in_val = np.zeros(n, bool)
    views = {}
    for i, task in enumerate(spec.tasks):
        rows = np.flatnonzero(data.labels[:, i] != MISSING)
        view = _LabelView(data.labels[rows, i], data.classes[i], f"task '{task.name}'")
        views[i] = (rows, view)
        if task.holdout:
            continue
        if task.labels_per_class is not None:
            n_val = budget_val_per_class(task.labels_per_class, task.val_per_class)
            picked = k_per_class(view, n_val, seed + 7919 + i) if n_val else np.array([], np.int64)
        else:
            picked = train_val_split(view, spec.val_fraction, seed + 7919 + i)[1]
        val_lab[rows[picked], i] = data.labels[rows[picked], i]
        in_val[rows[picked]] = True
    for i, task in enumerate(spec.tasks):
        rows, view = views[i]
        exclude = np.flatnonzero(in_val[rows])
        if task.labels_per_class is not None:
            picked = k_per_class(view, task.labels_per_class, seed + i, exclude=exclude)
        else:
            picked = np.setdiff1d(np.arange(len(rows)), exclude)
        train_lab[rows[picked], i] = data.labels[rows[picked], i]
    train_rows = np.flatnonzero((train_lab != MISSING).any(1))
    val_rows = np.flatnonzero((val_lab != MISSING).any(1))
    return (data.subset(train_rows, train_lab[train_rows], f"{data.name}[train]"),
            data.subset(val_rows, val_lab[val_rows], f"{data.name}[val]"))


@dataclass
class _LabelView:
    """Just enough of a dataset (labels, classes, name) for the stratified draws of :mod:`transferkit.data.splits`."""

    labels: np.ndarray
    classes: list[str]
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def task_sampling_weights(labels: np.ndarray, mode: str, temperature: float = 2.0) -> torch.Tensor | None:
    """Per-row sampling weights so that task ``t`` is drawn with probability ``p_t`` (``None``: plain shuffling).

    * ``proportional`` — every row once per epoch: tasks are seen in proportion to their labelled rows;
    * ``uniform`` — every task equally often (``p_t = 1/T``);
    * ``temperature`` — ``p_t ∝ n_t^(1/τ)`` (τ = 1 proportional, τ → ∞ uniform), the temperature sampling of
      multilingual and multi-task training (Arivazhagan et al., 2019, "Massively Multilingual Neural Machine
      Translation in the Wild"; Raffel et al., 2020, T5).

    A row labelled for several tasks gets the sum of their per-row weights ``p_t / n_t``.
    """
    if mode == "proportional":
        return None
    has = labels != MISSING
    counts = has.sum(0).astype(np.float64)
    active = counts > 0
    if mode == "uniform":
        p = active.astype(np.float64)
    elif mode == "temperature":
        p = np.where(active, counts, 0.0) ** (1.0 / temperature)
    else:
        raise ValueError(f"sampling '{mode}' is unknown; valid choices: proportional, uniform, temperature")
    p = p / p.sum()
    per_row = np.where(active, p / np.maximum(counts, 1), 0.0)
    return torch.from_numpy((has * per_row).sum(1))


def labelled_rows(data: MultiTaskSet, column: int | list[int]) -> np.ndarray:
    """Indices of the rows of ``data`` labelled for task ``column`` (a list of columns: for any of them)."""
    if isinstance(column, int):
        return np.flatnonzero(data.labels[:, column] != MISSING)
    return np.flatnonzero((data.labels[:, column] != MISSING).any(1))


def task_batches(data: MultiTaskSet, spec: SpecLike, columns: list[int],
                 rows: np.ndarray | None = None) -> TensorBatches:
    """``data`` (or its ``rows``) prepared for a model with input spec ``spec``, labels = the ``columns`` of the
    label matrix."""
    if rows is not None:
        data = data.subset(rows)
    out = to_batches(data.inputs, spec)
    out.y = torch.from_numpy(np.ascontiguousarray(data.labels[:, columns]))
    return out


def label_column(data: TensorBatches, k: int) -> TensorBatches:
    """``data`` with only label column ``k`` (the same tensors: nothing is prepared again)."""
    out = copy.copy(data)
    out.y = data.y[:, k:k + 1]
    return out
