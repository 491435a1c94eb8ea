"""Multi-task data: the label matrix, labelled budgets without train/validation overlap, task sampling, bad input."""

import csv

import numpy as np
import pytest

from tests.conftest import topic_texts
from transferkit.multi_task.data import MISSING, budget_split, load_multitask, task_sampling_weights
from transferkit.multi_task.spec import parse_spec

COARSE = {"tops": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"], "bottoms": ["Trouser"],
          "footwear": ["Sandal", "Sneaker", "Ankle boot"], "bags": ["Bag"]}


def fashion_spec(npz, **extra):
    return parse_spec({"data": f"npz:{npz}", "tasks": [
        {"name": "fine", "labels_per_class": 5},
        {"name": "coarse", "class_map": COARSE, "labels_per_class": 20},
        {"name": "shoes", "classes": "5,7,9", "labels_per_class": 4, "holdout": True}], **extra})


def test_label_matrix_from_one_dataset(fashion_npz):
    data = load_multitask(fashion_spec(fashion_npz), "train")
    assert data.tasks == ["fine", "coarse", "shoes"]
    assert data.classes[1] == ["tops", "bottoms", "footwear", "bags"]
    assert data.classes[2] == ["Sandal", "Sneaker", "Ankle boot"]
    fine, coarse, shoes = data.labels.T
    assert (fine >= 0).all() and (coarse >= 0).all()
    # the coarse label is the group of the fine class, the shoe label exists only for the three shoe classes
    group = {0: 0, 2: 0, 3: 0, 4: 0, 6: 0, 1: 1, 5: 2, 7: 2, 9: 2, 8: 3}
    assert all(coarse[i] == group[int(fine[i])] for i in range(len(fine)))
    assert ((shoes == MISSING) == ~np.isin(fine, [5, 7, 9])).all()
    assert data.missing() == {"fine": 0, "coarse": 0, "shoes": 840}
    test = load_multitask(fashion_spec(fashion_npz), "test", data.classes)
    assert len(test) == 400 and test.classes == data.classes


def test_budget_split_counts_and_no_overlap(fashion_npz):
    spec = fashion_spec(fashion_npz)
    data = load_multitask(spec, "train")
    k_only, no_val = budget_split(data, spec, seed=3)  # issue 26: K is a task's whole budget by default
    assert k_only.labelled() == {"fine": 50, "coarse": 80, "shoes": 12} and len(no_val) == 0
    spec = parse_spec({"data": spec.data, "tasks": [
        {"name": "fine", "labels_per_class": 5, "val_per_class": 5},
        {"name": "coarse", "class_map": COARSE, "labels_per_class": 20, "val_per_class": 20},
        {"name": "shoes", "classes": "5,7,9", "labels_per_class": 4, "holdout": True}]})
    train, val = budget_split(data, spec, seed=3)
    assert train.labelled() == {"fine": 50, "coarse": 80, "shoes": 12}
    assert val.labelled() == {"fine": 50, "coarse": 80, "shoes": 0}  # holdout: no validation labels
    for t in range(2):
        counts = np.bincount(train.labels[:, t][train.labels[:, t] >= 0])
        assert counts.min() == counts.max()  # k per class
    # no image is both a training and a validation row (the inputs are distinct images)
    tr = {x.tobytes() for x in train.inputs.images}
    va = {x.tobytes() for x in val.inputs.images}
    assert not tr & va
    again, _ = budget_split(data, spec, seed=3)
    assert (again.labels == train.labels).all()  # seeded
    other, _ = budget_split(data, spec, seed=4)
    assert not np.array_equal(other.inputs.images, train.inputs.images)


def test_impossible_budget_names_the_task(fashion_npz):
    spec = parse_spec({"data": f"npz:{fashion_npz}", "tasks": [{"name": "fine", "labels_per_class": 121}]})
    with pytest.raises(ValueError, match="task 'fine'.* has only 120"):
        budget_split(load_multitask(spec, "train"), spec, 0)
    spec = parse_spec({"data": f"npz:{fashion_npz}",  # K + V = 130 > 120 per class
                       "tasks": [{"name": "fine", "labels_per_class": 100, "val_per_class": 30}]})
    with pytest.raises(ValueError, match="task 'fine'.* has only 90"):
        budget_split(load_multitask(spec, "train"), spec, 0)


def test_several_datasets_mismatched_kinds_and_unknown_classes(fashion_npz, topics_dir):
    two = parse_spec({"tasks": [{"name": "a", "data": f"npz:{fashion_npz}", "classes": "0,1"},
                                {"name": "b", "data": f"npz:{fashion_npz}", "classes": "2,3,4"}]})
    data = load_multitask(two, "train")
    assert len(data) == 2400  # each dataset's rows, one after the other
    assert (data.labels[:1200, 1] == MISSING).all() and (data.labels[1200:, 0] == MISSING).all()
    mixed = parse_spec({"tasks": [{"name": "img", "data": f"npz:{fashion_npz}"},
                                  {"name": "txt", "data": f"text:{topics_dir}"}]})
    with pytest.raises(ValueError, match="different kinds .* image .* text"):
        load_multitask(mixed, "train")
    bad = parse_spec({"data": f"npz:{fashion_npz}", "tasks": [{"name": "a", "classes": "3,12"}]})
    with pytest.raises(ValueError, match=r"task 'a'.*classes \[12\]"):
        load_multitask(bad, "train")
    unknown = parse_spec({"data": f"npz:{fashion_npz}", "tasks": [{"name": "a", "class_map": {"Boots": "x"}}]})
    with pytest.raises(ValueError, match="'Boots' is not a class"):
        load_multitask(unknown, "train")
    column = parse_spec({"data": f"npz:{fashion_npz}", "tasks": [{"name": "a", "column": "colour"}]})
    with pytest.raises(ValueError, match="'column' reads a label column of a text table"):
        load_multitask(column, "train")


def write_two_columns(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "topic", "tone"])
        w.writerows(rows)
    return path


def test_text_label_columns_with_missing_cells(tmp_path):
    rows = [(t, label, ("good" if i % 3 == 0 else "bad") if i % 4 else "") for i, (t, label) in
            enumerate(topic_texts(6, 0))]
    path = write_two_columns(tmp_path / "news.csv", rows)
    spec = parse_spec({"data": f"text:{path}", "tasks": [{"name": "topic", "column": "topic"},
                                                         {"name": "tone", "column": "tone"}]})
    data = load_multitask(spec, "train")
    assert data.classes == [["business", "science", "sports", "weather"], ["bad", "good"]]
    assert data.missing() == {"topic": 0, "tone": 6}  # every 4th row has no tone: masked, counted
    assert data.inputs.texts[0] == rows[0][0]
    empty = parse_spec({"data": f"text:{path}", "tasks": [{"name": "x", "column": "tone"},
                                                          {"name": "y", "column": "nothing"}]})
    with pytest.raises(ValueError, match="'nothing'"):
        load_multitask(empty, "train")


def test_task_with_no_samples_is_refused(tmp_path):
    rows = [(t, label, "") for t, label in topic_texts(3, 0)]
    path = write_two_columns(tmp_path / "news.csv", rows)
    spec = parse_spec({"data": f"text:{path}", "tasks": [{"name": "topic", "column": "topic"},
                                                         {"name": "tone", "column": "tone"}]})
    with pytest.raises(ValueError, match="task 'tone'.*no samples|empty in every row"):
        load_multitask(spec, "train")


def test_task_sampling_weights():
    labels = np.full((110, 2), MISSING)
    labels[:100, 0] = 0  # task 0: 100 rows
    labels[100:, 1] = 1  # task 1: 10 rows
    assert task_sampling_weights(labels, "proportional") is None

    def mass(w):
        w = w.numpy()
        return w[:100].sum() / w.sum(), w[100:].sum() / w.sum()

    assert mass(task_sampling_weights(labels, "uniform")) == pytest.approx((0.5, 0.5))
    t0, t1 = mass(task_sampling_weights(labels, "temperature", 2.0))
    assert t0 == pytest.approx(10 / (10 + 10 ** 0.5))  # p ∝ n^(1/2)
    assert mass(task_sampling_weights(labels, "temperature", 1.0)) == pytest.approx((100 / 110, 10 / 110))
    with pytest.raises(ValueError, match="valid choices"):
        task_sampling_weights(labels, "other")


def test_text_column_class_map_holds_on_the_test_split(tmp_path):
    root = tmp_path / "news"
    root.mkdir()
    for split, seed in (("train", 0), ("test", 1)):
        rows = [(t, label, "good" if i % 2 else "bad") for i, (t, label) in enumerate(topic_texts(4, seed))]
        write_two_columns(root / f"{split}.csv", rows)
    spec = parse_spec({"data": f"text:{root}", "tasks": [
        {"name": "topic", "column": "topic", "class_map": {"sports": "leisure", "weather": "leisure"}},
        {"name": "tone", "column": "tone"}]})
    train = load_multitask(spec, "train")
    assert train.classes[0] == ["business", "leisure", "science"]
    test = load_multitask(spec, "test", train.classes)
    assert test.classes == train.classes and (test.labels[:, 0] >= 0).all()
    bad = parse_spec({"data": f"text:{root}", "tasks": [{"name": "t", "column": "topic", "class_map": {"x": "y"}}]})
    with pytest.raises(ValueError, match=r"class_map names \['x'\]"):
        load_multitask(bad, "train")
    subset = parse_spec({"data": f"text:{root}", "tasks": [{"name": "t", "column": "topic", "classes": "0,1"}]})
    with pytest.raises(ValueError, match="leave the cells of unwanted rows empty"):
        load_multitask(subset, "train")
