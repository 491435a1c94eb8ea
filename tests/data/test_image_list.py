"""``image_list:FILE.csv``: labelled images named by a CSV list (issue 29's lists), in memory or streamed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import lazy
from transferkit.data.registry import get_dataset, has_split


@pytest.fixture
def listed(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    rows = ["path,label,split"]
    for name in ["cat", "dog"]:
        for i in range(6):
            img = (rng.random((20 + i, 24, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / "imgs" / f"{name}{i}.png")
            rows.append(f"imgs/{name}{i}.png,{name},{'test' if i == 5 else ''}")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "elsewhere" / "x.png")
    rows += ["imgs/gone.png,cat,", "../elsewhere/x.png,dog,"]
    (tmp_path / "data" / "all.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "data" / "all.csv"


@pytest.mark.parametrize("stream", ["none", "0"])
def test_a_list_gives_its_splits_classes_and_skips_missing_files_by_line(listed, monkeypatch, caplog, stream):
    monkeypatch.setenv(lazy.ENV_STREAM, stream)
    with caplog.at_level(logging.INFO):
        train = get_dataset(f"image_list:{listed}", "train")
        test = get_dataset(f"image_list:{listed}", "test")
    assert train.classes == ["cat", "dog"] and len(train) == 11 and len(test) == 2
    assert isinstance(train.images, lazy.LazyImages) == (stream == "0")
    assert sorted(train.labels.tolist()) == [0] * 5 + [1] * 6
    assert "gone.png: no such file (listed at" in caplog.text and "all.csv:14" in caplog.text
    assert "1 entry lies outside the list's folder" in caplog.text and "../elsewhere/x.png (line 15)" in caplog.text
    assert has_split(f"image_list:{listed}", "test") and not has_split(f"image_list:{listed}", "val")
    with pytest.raises(ValueError, match="gone.png: no such file"):
        get_dataset(f"image_list:{listed}", "train", strict=True)


def test_bad_lists_are_errors_naming_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,cat\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: the header must name the columns 'path' and 'label'"):
        get_dataset(f"image_list:{bad}")
    bad.write_text("path,label,split\na.png,cat,\nb.png,cow,test\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: label 'cow' has no training row"):
        get_dataset(f"image_list:{bad}", "test")
    bad.write_text("path,label,split\na.png,cat,holdout\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: split 'holdout' is not one of train, val, test"):
        get_dataset(f"image_list:{bad}")
    with pytest.raises(FileNotFoundError, match="image_list:.*nope.csv: no such file"):
        get_dataset(f"image_list:{tmp_path / 'nope.csv'}")


def test_a_jsonl_list_reads_like_the_csv_one(listed, monkeypatch):
    import json

    rows = [line.split(",") for line in listed.read_text().splitlines()[1:]]
    jsonl = listed.with_suffix(".jsonl")
    jsonl.write_text("".join(json.dumps({"path": p, "label": lab, **({"split": sp} if sp else {})}) + "\n"
                             for p, lab, sp in rows))
    a, b = get_dataset(f"image_list:{listed}"), get_dataset(f"image_list:{jsonl}")
    assert a.paths == b.paths and a.labels.tolist() == b.labels.tolist() and a.classes == b.classes
    jsonl.write_text('{"file": "x.png", "label": "cat"}\n')
    with pytest.raises(ValueError, match=r"all.jsonl:1: each line needs the keys 'path' and 'label'"):
        get_dataset(f"image_list:{jsonl}")
