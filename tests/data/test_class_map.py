"""Label mapping: renaming/merging target classes from a file, matching names to the source, head-row init."""

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.data.base import ImageSet
from transferkit.data.class_map import apply_class_map, load_class_map, match_classes
from transferkit.engine.head_init import init_head_rows


def toy():
    return ImageSet(np.zeros((6, 4, 4), np.uint8), np.array([0, 1, 2, 0, 1, 2]), ["Sandal", "Sneaker", "Ankle boot"],
                    "toy")


def test_rename_and_merge_keep_order_and_relabel():
    ds = apply_class_map(toy(), {"Sneaker": "footwear", "Ankle boot": "footwear", "0": "sandal"})
    assert ds.classes == ["sandal", "footwear"] and ds.labels.tolist() == [0, 1, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="'Boot' is not a class of toy; valid names: Sandal, Sneaker, Ankle boot"):
        apply_class_map(toy(), {"Boot": "x"})


def test_class_map_files_fail_clearly(tmp_path):
    good = tmp_path / "map.yaml"
    good.write_text("Sneaker: running shoe\n")
    assert load_class_map(good) == {"Sneaker": "running shoe"}
    (tmp_path / "m.json").write_text('{"Sandal": "sandal"}')
    assert load_class_map(tmp_path / "m.json") == {"Sandal": "sandal"}
    for text, message in (("[a, b]", "expected a non-empty mapping"), ("a: [1]", "a new class name for entry 'a'"),
                          ("a: b: c", "not valid YAML")):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ValueError, match=message):
            load_class_map(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="--class-map .*missing.yaml: cannot read"):
        load_class_map(tmp_path / "missing.yaml")


def test_match_by_name_synonym_case_and_separators():
    source = ["tench", "jersey, T-shirt, tee shirt", "running shoe", "sandal"]
    assert match_classes(["T-Shirt", "Running_shoe", "Sandal", "Bag"], source) == {0: 1, 1: 2, 2: 3}
    assert match_classes(["x"], source) == {}


def test_head_rows_copied_only_where_matched_and_widths_agree():
    torch.manual_seed(0)
    src, new = nn.Linear(8, 4), nn.Linear(8, 3)
    before = new.weight.detach().clone()
    rep = init_head_rows(new, src, {0: 2, 2: 1}, ["a", "b", "c", "d"], ["C", "X", "B"])
    assert rep["applied"] and rep["matched"] == {"C": "c", "B": "b"}
    assert torch.equal(new.weight[0], src.weight[2]) and torch.equal(new.bias[2], src.bias[1])
    assert torch.equal(new.weight[1], before[1])  # unmatched row untouched
    rep = init_head_rows(nn.Linear(5, 3), src, {0: 1})
    assert not rep["applied"] and "different features (5 vs the source's 8)" in rep["reason"]
    assert init_head_rows(nn.Linear(8, 3), src, {})["reason"].startswith("no target class")
    with pytest.raises(ValueError, match="outside the heads"):
        init_head_rows(nn.Linear(8, 3), src, {0: 9})
