import numpy as np
import pytest

from transferkit.data import (
    ImageSet,
    k_per_class,
    labelled_budget_split,
    parse_classes,
    select_classes,
    train_val_split,
)
from transferkit.data.splits import budget_val_per_class, inner_split, labelled_budget_indices, labels_record


def toy(n_per_class=20, classes=4):
    labels = np.repeat(np.arange(classes), n_per_class)
    images = np.zeros((len(labels), 2, 2), np.uint8)
    images[:, 0, 0] = np.arange(len(labels)) % 256  # every image unique
    images[:, 0, 1] = np.arange(len(labels)) // 256
    return ImageSet(images, labels, [f"c{i}" for i in range(classes)], "toy")


def test_parse_classes_forms():
    assert parse_classes("0,1,5") == [0, 1, 5]
    assert parse_classes("2-4,7") == [2, 3, 4, 7]
    assert parse_classes([3, 1]) == [3, 1]
    assert parse_classes(None) is None and parse_classes("all") is None
    with pytest.raises(ValueError, match="^classes: expected a list of class indices"):
        parse_classes("a,b")


def test_select_classes_relabels_in_given_order():
    ds = toy()
    sub = select_classes(ds, [3, 1])
    assert sub.classes == ["c3", "c1"]
    assert len(sub) == 40
    # label 0 now means former class 3
    assert np.array_equal(sub.images[sub.labels == 0], ds.images[ds.labels == 3])


def test_select_classes_rejects_bad_indices_listing_valid():
    with pytest.raises(ValueError, match=r"^classes: expected class indices 0\.\.3 of toy.*; \[9\] out of range"):
        select_classes(toy(), [0, 9])
    with pytest.raises(ValueError, match=r"^classes: expected each class index once, got \[1, 1\]"):
        select_classes(toy(), [1, 1])


def test_k_per_class_is_stratified_seeded_and_checked():
    ds = toy()
    idx = k_per_class(ds, 5, seed=3)
    assert np.array_equal(np.bincount(ds.labels[idx]), [5, 5, 5, 5])
    assert np.array_equal(idx, k_per_class(ds, 5, seed=3))
    assert not np.array_equal(idx, k_per_class(ds, 5, seed=4))
    with pytest.raises(ValueError, match="class 0 .* has only 20"):
        k_per_class(ds, 21, seed=0)


def test_train_val_split_disjoint_and_stratified():
    ds = toy()
    tr, va = train_val_split(ds, 0.25, seed=0)
    assert not set(tr) & set(va)
    assert len(tr) + len(va) == len(ds)
    assert np.array_equal(np.bincount(ds.labels[va]), [5, 5, 5, 5])
    with pytest.raises(ValueError, match="^val_fraction: expected a number strictly between 0 and 1"):
        train_val_split(ds, 1.5, seed=0)


def test_labelled_budget_split_keeps_validation_apart_from_labels():
    ds = toy()
    train, val = labelled_budget_split(ds, labels_per_class=3, val_per_class=2, val_fraction=0.1, seed=0)
    assert np.array_equal(train.class_counts(), [3, 3, 3, 3])
    assert np.array_equal(val.class_counts(), [2, 2, 2, 2])
    train_px = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in train_px for im in val.images)


def test_labels_per_class_is_the_whole_budget_by_default():
    """Issue 26: K labels per class in total — no K further validation images unless --val-per-class asks."""
    ds = toy()
    train, val = labelled_budget_split(ds, labels_per_class=3, val_per_class=None, val_fraction=0.1, seed=0)
    assert np.array_equal(train.class_counts(), [3, 3, 3, 3]) and len(val) == 0
    tr, va = labelled_budget_indices(ds, 3, None, 0.1, seed=0)
    assert len(va) == 0 and np.array_equal(tr, k_per_class(ds, 3, seed=0))  # the plain K-shot draw
    assert budget_val_per_class(3, None) == 0 and budget_val_per_class(3, 2) == 2
    assert budget_val_per_class(None, None) is None
    with pytest.raises(ValueError, match="^val_per_class: expected ≥ 0, got -1"):
        budget_val_per_class(3, -1)


def test_k_larger_than_a_class_names_the_class_and_its_count():
    ds = toy(n_per_class=20).subset(np.arange(65))  # classes 0-2 keep 20 images, class 3 keeps 5
    with pytest.raises(ValueError, match=r"labels_per_class: expected at most 5, got 6; class 3 \('c3'\) of toy has"):
        labelled_budget_split(ds, 6, None, 0.1, seed=0)
    with pytest.raises(ValueError, match=r"class 3 \('c3'\) of toy has only 2 images"):  # 5 minus 3 for validation
        labelled_budget_split(ds, 3, 3, 0.1, seed=0)


def test_inner_split_is_stratified_and_k1_means_no_selection():
    labels = np.repeat(np.arange(3), 5)
    fit, sel, note = inner_split(labels, seed=0)
    assert np.array_equal(np.bincount(labels[sel]), [1, 1, 1]) and not set(fit) & set(sel)
    assert len(fit) + len(sel) == 15 and "stratified" in note
    fit1, sel1, note1 = inner_split(np.arange(3), seed=0)  # K = 1: nothing can be held out
    assert len(sel1) == 0 and len(fit1) == 3 and note1.startswith("no selection")
    fit2, sel2, note2 = inner_split(np.array([0, 0, 1, 1, 2]), seed=0)  # class 2 has one: kept, said so
    assert 4 in fit2 and 4 not in sel2 and "fallback" in note2


def test_labels_record_says_what_trained_the_final_model():
    rec = labels_record(3, None, 12, 0, "no selection (fixed recipe)", "abc", np.array([5, 1]))
    assert rec["per_class"] == 3 and rec["train_final_model"] == 12 and rec["validation"] == 0
    assert rec["budget_per_class"] == 3 and rec["indices"] == [5, 1] and rec["indices_fingerprint"] == "abc"
    assert labels_record(3, 2, 12, 8, "x")["budget_per_class"] == 5
    assert labels_record(None, None, 100, 10, "x")["indices"] is None
