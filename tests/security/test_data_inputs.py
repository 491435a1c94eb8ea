"""Hostile and malformed inputs to the data readers (issue 25): each must end in a clear error naming the file,
line or field — or be handled — never a raw traceback or a meaningless result such as a one-class "accuracy 1.0".

Every fixture is made here, in ``tmp_path``: tiny PNGs written with PIL, CSV/JSONL/npz files written by hand.
"""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import transferkit as tk
from transferkit.api import use
from transferkit.backbones import create_backbone
from transferkit.bundle import save_bundle
from transferkit.data import get_dataset, labelled_budget_split, select_classes
from transferkit.data.class_map import apply_class_map
from transferkit.data.images import read_image_list
from transferkit.data.splits import align_classes, check_trainable, k_per_class, train_val_split
from transferkit.data.text import MAX_CSV_FIELD, MAX_TEXT_CHARS


def png(path, value=0, size=(28, 28)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)
    return path


def folder(root, classes=("cat", "dog"), n=3):
    for c, name in enumerate(classes):
        for i in range(n):
            png(root / name / f"{i}.png", 40 * c + i)
    return root


# ------------------------------------------------------------------------------------------------------------------
# 1. fewer than two classes: refused for training (after --classes and class maps too), fine for evaluate/predict


def test_one_class_image_folder_is_refused_for_training_naming_folder_and_class(tmp_path):
    spec = f"image_folder:{folder(tmp_path / 'one', ('cat',))}"
    ds = get_dataset(spec)  # loading is fine: evaluate and zero-shot may read one class
    for draw in (lambda: train_val_split(ds, 0.2, 0), lambda: k_per_class(ds, 1, 0),
                 lambda: labelled_budget_split(ds, 1, None, 0.1, 0),
                 lambda: labelled_budget_split(ds, None, None, 0.3, 0)):
        with pytest.raises(ValueError, match=r"one.*1 class with examples \('cat'\).*at least 2 classes"):
            draw()


def test_one_class_refused_through_the_training_api(tmp_path, single_thread):
    spec = f"image_folder:{folder(tmp_path / 'one', ('cat',))}"
    with pytest.raises(ValueError, match=r"\('cat'\).*at least 2 classes"):
        tk.pretrain(data=spec, backbone="seed_cnn", epochs=1, out=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"\('cat'\).*at least 2 classes"):  # --cv draws its pool differently
        tk.transfer(source="seed_cnn", data=spec, cv=2, out=tmp_path / "cv", progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cv").exists()


def test_one_class_after_selection_or_merge_and_for_npz_and_text(tmp_path):
    three = get_dataset(f"image_folder:{folder(tmp_path / 'three', ('a', 'b', 'c'))}")
    with pytest.raises(ValueError, match=r"\('b'\)"):
        train_val_split(select_classes(three, [1]), 0.2, 0)
    merged = apply_class_map(three, {"a": "all", "b": "all", "c": "all"})
    with pytest.raises(ValueError, match=r"\('all'\)"):
        train_val_split(merged, 0.2, 0)
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 5, 5), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"one\.npz.*\('0'\)"):
        train_val_split(get_dataset(f"npz:{tmp_path / 'one.npz'}"), 0.25, 0)
    # two declared classes, one with examples: still one class to learn from
    np.savez(tmp_path / "half.npz", x=np.zeros((4, 5, 5), np.uint8), y=np.zeros(4, np.int64), classes=["a", "b"])
    with pytest.raises(ValueError, match=r"1 class with examples \('a'\) of its 2 classes"):
        train_val_split(get_dataset(f"npz:{tmp_path / 'half.npz'}"), 0.25, 0)
    (tmp_path / "one.csv").write_text("text,label\nhello,x\nworld,x\nagain,x\n")
    with pytest.raises(ValueError, match=r"one\.csv.*\('x'\)"):
        train_val_split(get_dataset(f"text:{tmp_path / 'one.csv'}"), 0.3, 0)
    check_trainable(three)  # two or more: fine


def test_a_class_without_examples_next_to_others_is_a_warning(tmp_path, caplog):
    np.savez(tmp_path / "gap.npz", x=np.zeros((4, 5, 5), np.uint8), y=np.array([0, 0, 2, 2]))
    with caplog.at_level(logging.WARNING):
        train_val_split(get_dataset(f"npz:{tmp_path / 'gap.npz'}"), 0.5, 0)
    assert "'1'" in caplog.text and "never trained" in caplog.text


def test_evaluate_and_predict_still_work_on_one_class(tmp_path, single_thread):
    torch.manual_seed(0)
    bundle = save_bundle(create_backbone("seed_cnn", num_classes=2).eval(), {"classes": ["cat", "dog"]},
                         tmp_path / "bundle")
    # a held-out test folder holding only 'dog': labels keep the training folder's class ids
    nested = tmp_path / "nested"
    folder(nested / "train")
    folder(nested / "test", ("dog",))
    test = get_dataset(f"image_folder:{nested}", "test")
    assert test.classes == ["cat", "dog"] and set(test.labels) == {1}
    m = tk.evaluate(bundle, f"image_folder:{nested}", split="test")
    assert m["split"] == "test" and 0.0 <= m["accuracy"] <= 1.0
    # a flat labelled folder with one class is mapped onto the model's classes by name
    flat = get_dataset(f"image_folder:{folder(tmp_path / 'flat', ('dog',))}")
    aligned = align_classes(flat, ["cat", "dog"])
    assert aligned.classes == ["cat", "dog"] and set(aligned.labels) == {1}
    m = tk.evaluate(bundle, f"image_folder:{tmp_path / 'flat'}", split="train")
    assert m["split"] == "train" and 0.0 <= m["accuracy"] <= 1.0
    # predict on unlabelled images needs no classes at all
    rows = tk.predict(bundle, [png(tmp_path / "loose" / "a.png")], progress=False)
    assert len(rows) == 1 and rows[0]["error"] is None and rows[0]["predicted_class"] in ("cat", "dog")


def test_held_out_folder_with_a_class_training_lacks_is_refused(tmp_path):
    folder(tmp_path / "d" / "train")
    folder(tmp_path / "d" / "test", ("cat", "zebra"))
    with pytest.raises(ValueError, match=r"\['zebra'\].*lacks"):
        get_dataset(f"image_folder:{tmp_path / 'd'}", "test")


# ------------------------------------------------------------------------------------------------------------------
# 2. image folders


def test_image_folder_without_images_or_with_an_empty_class(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"none: no class subfolders"):
        get_dataset(f"image_folder:{tmp_path / 'none'}")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "b").mkdir()
    with pytest.raises(ValueError, match=r"noimg: no readable images"):
        get_dataset(f"image_folder:{tmp_path / 'noimg'}")
    root = folder(tmp_path / "gap")
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"without a readable image: .*empty \(no files\); .*junk \(1 unreadable"):
        get_dataset(f"image_folder:{root}")


# ------------------------------------------------------------------------------------------------------------------
# 3. npz archives


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((3, 4, 4), np.uint8)}, r"split 'train' needs arrays 'x' and 'y'; the file has \['x'\]"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 1])}, r"'x' holds 3 images but 'y' 2 labels"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, 1, 5]), "classes": np.array(["a", "b"])},
     r"'y\[2\]' is 5 but 'classes' names only 2 classes"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, -1, 1])}, r"'y\[1\]' is -1; class ids start at 0"),
    ({"x": np.array([[[0.5, np.nan]]] * 3, np.float32), "y": np.array([0, 1, 1])}, r"'x' holds 3 NaN or infinite"),
    ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0.5, 1.0, 0.0])},
     r"'y' must hold integer class ids; 'y\[0\]' is 0.5"),
    ({"x": np.zeros((3, 16), np.uint8), "y": np.array([0, 1, 1])}, r"'x' must hold images of shape .* \(3, 16\)"),
    ({"x": np.array([None, 1, 2], object), "y": np.array([0, 1, 1])}, r"array 'x' cannot be read without pickle"),
    ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, np.int64)}, r"'x' holds no images"),
])
def test_bad_npz_archives_name_the_file_and_array(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"npz:.*bad\.npz: " + message):
        get_dataset(f"npz:{path}")


def test_npz_that_is_not_an_archive_and_split_classes_agree(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.npz: not a NumPy \.npz archive"):
        get_dataset(f"npz:{tmp_path / 'text.npz'}")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"one\.npy: a single \.npy array"):
        get_dataset(f"npz:{tmp_path / 'one.npy'}")
    # without 'classes' the class count comes from every split's labels, so train and test agree
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 4, 4), np.uint8), y=np.array([0, 1, 2, 3]),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.array([0, 0]))
    assert get_dataset(f"npz:{tmp_path / 's.npz'}", "test").classes == ["0", "1", "2", "3"]


# ------------------------------------------------------------------------------------------------------------------
# 4. text tables


def test_text_field_over_128_kib_is_read_and_cut(tmp_path, caplog):
    path = tmp_path / "big.csv"
    path.write_text('text,label\n"' + "word " * 40_000 + '",x\nhello,y\n')  # a 200 KB field
    with caplog.at_level(logging.WARNING):
        ds = get_dataset(f"text:{path}")
    assert len(ds) == 2 and len(ds.texts[0]) == MAX_TEXT_CHARS and ds.texts[1] == "hello"
    assert "1 text(s) longer than" in caplog.text
    assert csv.field_size_limit() == 131072  # the raised limit did not leak out of the reader


def test_text_field_over_the_raised_limit_names_file_and_line(tmp_path):
    path = tmp_path / "huge.tsv"
    path.write_text("text\tlabel\nfine\tx\n" + "a" * (MAX_CSV_FIELD + 10) + "\ty\n")
    with pytest.raises(ValueError, match=r"huge\.tsv:3: not a readable CSV/TSV record \(a field is longer than"):
        get_dataset(f"text:{path}")


@pytest.mark.parametrize("name, content, message", [
    ("quote.csv", 'text,label\nok,a\n"never closed,b\nc,d\n', r"quote\.csv:3: a quoted field .* never closed"),
    ("empty.csv", "", r"empty\.csv: empty file"),
    ("header.csv", "text,label\n", r"header\.csv: no data rows"),
    ("nolabel.csv", "text\nhello\n", r"nolabel\.csv: no label column 'label'"),
    ("lines.jsonl", '{"text": "a", "label": "x"}\n[1, 2]\n', r"lines\.jsonl:2: expected a JSON object"),
])
def test_malformed_text_tables_name_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        get_dataset(f"text:{tmp_path / name}")


def test_predict_texts_with_a_huge_field(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text('text\n"' + "b" * 200_000 + '"\nshort\n')
    items = list(use.iter_text_inputs([path]))
    assert [len(i.text) for i in items] == [200_000, 5] and items[1].path == f"{path}:3"


# ------------------------------------------------------------------------------------------------------------------
# 5. CSV image lists (predict inputs)


def test_image_list_entries_folder_missing_and_outside(tmp_path):
    lists = tmp_path / "lists"
    a = png(lists / "img" / "a.png")
    (lists / "img" / "sub").mkdir()
    outside = png(tmp_path / "outside.png")
    path = lists / "list.csv"
    path.write_text(f"path\nimg/a.png\nimg/sub\n../outside.png\n{outside}\n../nowhere.png\n\n{'n' * 5000}.png\n")
    got = list(read_image_list(path))
    assert [(p, f) for p, f, e in got[:4] if e is None] == [(str(a), a), (str(lists / "../outside.png"), lists /
                                                            "../outside.png"), (str(outside), outside)]
    errors = [e for _, _, e in got if e]
    assert "a folder, not an image file (listed at" in errors[0] and "list.csv:3 as 'img/sub'" in errors[0]
    assert "no such file (listed at" in errors[1] and "list.csv:6 as '../nowhere.png'" in errors[1]
    assert "not a usable file name" in errors[2] and "list.csv:8" in errors[2]  # a name too long to look up
    # predict: error rows in place (or --strict stops at the first, naming it)
    rows = list(use.iter_predict_inputs([path]))
    assert [r.error is None for r in rows] == [True, False, True, True, False, False]


def test_image_list_that_is_not_utf8_or_malformed(tmp_path):
    png(tmp_path / "a.png")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path\na.png\ncaf\xe9.png\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv:3: not UTF-8 .* image lists must be UTF-8"):
        list(read_image_list(latin))
    quote = tmp_path / "quote.csv"
    quote.write_text('path\na.png\n"b.png\nc.png\n')
    with pytest.raises(ValueError, match=r"quote\.csv:3: a quoted field"):
        list(read_image_list(quote))
    for name, content in (("empty.csv", ""), ("header.csv", "path\n")):
        (tmp_path / name).write_text(content)
        assert list(read_image_list(tmp_path / name)) == []
