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
    with pytest.raises(ValueError, match="--classes"):
        parse_classes("a,b")


def test_select_classes_relabels_in_given_order():
    ds = toy()
    sub = select_classes(ds, [3, 1])
    assert sub.classes == ["c3", "c1"]
    assert len(sub) == 40
    # label 0 now means former class 3
    assert np.array_equal(sub.images[sub.labels == 0], ds.images[ds.labels == 3])


def test_select_classes_rejects_bad_indices_listing_valid():
    with pytest.raises(ValueError, match=r"out of range .* 0\.\.3"):
        select_classes(toy(), [0, 9])
    with pytest.raises(ValueError, match="duplicate"):
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
    with pytest.raises(ValueError, match="--val-fraction"):
        train_val_split(ds, 1.5, seed=0)


def test_labelled_budget_split_keeps_validation_apart_from_labels():
    ds = toy()
    train, val = labelled_budget_split(ds, labels_per_class=3, val_per_class=None, val_fraction=0.1, seed=0)
    assert np.array_equal(train.class_counts(), [3, 3, 3, 3])
    assert np.array_equal(val.class_counts(), [3, 3, 3, 3])
    train_px = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in train_px for im in val.images)
