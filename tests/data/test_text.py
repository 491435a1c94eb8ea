"""Text tables (``text:PATH``, :func:`read_text_table`) and AG News, all from small files written here."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import transferkit.data.text  # noqa: F401  (registers text: and ag_news)
from transferkit.data import DatasetNotFoundError, get_dataset, has_split, list_datasets
from transferkit.data.splits import k_per_class, select_classes
from transferkit.data.text import AG_NEWS_CLASSES, read_text_table


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_joins_text_columns_and_records_rows(tmp_path):
    f = write(tmp_path / "news.csv", 'title,description,label\nBig win,"Team A, at home",sport\n'
                                     '  Rates up ,Banks react  ,money\nGoal!,"two\nlines",sport\n')
    ds = read_text_table(f, text_columns=["title", "description"])
    assert ds.texts == ["Big win Team A, at home", "Rates up  Banks react", "Goal! two\nlines"]
    assert ds.classes == ["money", "sport"]
    assert ds.labels.tolist() == [1, 0, 1] and ds.labels.dtype == np.int64
    assert ds.rows == ["news.csv:2", "news.csv:3", "news.csv:4"]
    assert ds.modality == "text"


def test_tsv_with_bom_and_default_sentence_column(tmp_path):
    f = tmp_path / "sst.tsv"
    f.write_bytes("\ufeffsentence\tlabel\ngreat film\t1\nawful, truly\t0\n".encode())
    ds = read_text_table(f)
    assert ds.texts == ["great film", "awful, truly"]
    assert ds.classes == ["0", "1"] and ds.labels.tolist() == [1, 0]


def test_jsonl_reads_objects_and_numeric_labels(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "a", "label": 2}\n\n{"text": "b", "label": 10}\n'
                                    '{"text": "c", "label": 1}\n')
    ds = read_text_table(f)
    assert ds.classes == ["1", "2", "10"]  # numeric order, not "1" < "10" < "2"
    assert ds.labels.tolist() == [1, 2, 0]
    assert ds.rows == ["d.jsonl:1", "d.jsonl:3", "d.jsonl:4"]


def test_integer_labels_in_csv_sort_numerically(tmp_path):
    f = write(tmp_path / "n.csv", "text,label\nx,10\ny,2\nz,1\n")
    assert read_text_table(f).classes == ["1", "2", "10"]


def test_given_classes_fix_the_label_order_and_reject_others(tmp_path):
    f = write(tmp_path / "c.csv", "text,label\nx,pos\ny,neg\n")
    ds = read_text_table(f, classes=["pos", "neg", "neutral"])
    assert ds.classes == ["pos", "neg", "neutral"] and ds.labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"c\.csv:3: label 'neg' is not one of the valid classes: pos, neutral"):
        read_text_table(f, classes=["pos", "neutral"])


def test_non_utf8_file_names_line_and_suggests_iconv(tmp_path):
    f = write(tmp_path / "latin.csv", "text,label\nfine,a\ncaf\u00e9 au lait,b\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin\.csv:3: not UTF-8 .*iconv -f latin1 -t utf-8"):
        read_text_table(f)


def test_empty_texts_and_labels_are_skipped_and_counted(tmp_path, caplog):
    f = write(tmp_path / "e.csv", "text,label\nok,a\n   ,a\nalso ok,\n,\nfine,b\n")
    with caplog.at_level(logging.WARNING, logger="transferkit.data.text"):
        ds = read_text_table(f)
    assert ds.texts == ["ok", "fine"] and ds.rows == ["e.csv:2", "e.csv:6"]
    assert "3 rows skipped (empty text: 2, empty label: 1)" in caplog.text
    with pytest.raises(ValueError, match=r"e\.csv:3: empty text \(strict"):
        read_text_table(f, strict=True)


def test_file_without_usable_rows_is_an_error(tmp_path):
    f = write(tmp_path / "blank.csv", "text,label\n ,a\n")
    with pytest.raises(ValueError, match="no usable rows"):
        read_text_table(f)


def test_missing_columns_list_the_files_columns(tmp_path):
    f = write(tmp_path / "m.csv", "body,topic\nx,a\n")
    with pytest.raises(ValueError, match=r"m\.csv: no 'text' or 'sentence' column.*'body', 'topic'"):
        read_text_table(f)
    with pytest.raises(ValueError, match=r"m\.csv: no label column 'label'; the file's columns are: 'body', 'topic'"):
        read_text_table(f, text_columns=["body"])
    with pytest.raises(ValueError, match=r"no text column 'title'.*'body', 'topic'"):
        read_text_table(f, text_columns=["title"], label_column="topic")
    assert read_text_table(f, text_columns=["body"], label_column="topic").classes == ["a"]


@pytest.mark.parametrize("bad, why", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_bad_jsonl_line_is_an_error_with_its_line(tmp_path, bad, why):
    f = write(tmp_path / "b.jsonl", f'{{"text": "a", "label": "x"}}\n{bad}\n')
    with pytest.raises(ValueError, match=rf"b\.jsonl:2: {why}"):
        read_text_table(f)


def test_text_spec_file_with_options_and_splits(tmp_path):
    f = write(tmp_path / "t.csv", "title,body,topic\nA,a,x\nB,b,y\n")
    spec = f"text:{f}?text=title+body&label=topic"
    ds = get_dataset(spec, "train")
    assert ds.texts == ["A a", "B b"] and ds.classes == ["x", "y"]
    assert ds.name == f"text:{f}?text=title+body&label=topic/train"
    assert has_split(spec, "train") and not has_split(spec, "test")
    with pytest.raises(ValueError, match=r"has no 'test' split \(found: train\)"):
        get_dataset(spec, "test")
    info = {d.name: d for d in list_datasets()}["text"]
    assert info.modality == "text" and info.usage == "text:PATH[?text=COL+COL&label=COL]"


def test_text_spec_unknown_option_lists_valid_ones(tmp_path):
    f = write(tmp_path / "t.csv", "text,label\nA,x\n")
    with pytest.raises(ValueError, match=r"unknown option 'column'; valid options: text, label"):
        get_dataset(f"text:{f}?column=text", "train")


def test_text_spec_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        get_dataset(f"text:{tmp_path / 'nowhere'}", "train")


def test_text_folder_maps_test_labels_onto_train_classes(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,10\nb,2\nc,2\n")
    write(tmp_path / "test.jsonl", '{"text": "d", "label": "10"}\n')
    spec = f"text:{tmp_path}"
    assert has_split(spec, "test") and not has_split(spec, "val")
    train, test = get_dataset(spec, "train"), get_dataset(spec, "test")
    assert train.classes == test.classes == ["2", "10"]
    assert test.labels.tolist() == [1]  # "10" keeps the train split's id even though it is the only test label
    write(tmp_path / "val.tsv", "text\tlabel\ne\t7\n")
    with pytest.raises(ValueError, match=r"val\.tsv:2: label '7' is not one of the valid classes: 2, 10"):
        get_dataset(spec, "val")


def test_text_folder_with_two_files_for_a_split_is_an_error(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,x\n")
    write(tmp_path / "train.jsonl", '{"text": "a", "label": "x"}\n')
    with pytest.raises(ValueError, match=r"several files for the 'train' split \(train\.csv, train\.jsonl\)"):
        get_dataset(f"text:{tmp_path}", "train")


def test_k_per_class_and_select_classes_work_on_text(tmp_path):
    lines = "".join(f"text {i},{c}\n" for i in range(5) for c in ("a", "b", "c"))
    f = write(tmp_path / "k.csv", "text,label\n" + lines)
    ds = get_dataset(f"text:{f}", "train")
    sub = ds.subset(k_per_class(ds, 2, seed=0))
    assert np.array_equal(sub.class_counts(), [2, 2, 2]) and len(sub.rows) == len(sub.texts) == 6
    with pytest.raises(ValueError, match="has only 5 images"):
        k_per_class(ds, 6, seed=0)
    picked = select_classes(ds, [2, 0])
    assert picked.classes == ["c", "a"] and len(picked) == 10
    assert {picked.texts[i] for i in np.flatnonzero(picked.labels == 0)} == {f"text {i}" for i in range(5)}
    assert picked.rows[:2] == ["k.csv:2", "k.csv:4"]  # "text 0,a" then "text 0,c"


_AG_ROWS = [
    ("3", "Wall St. Bears", "Short-sellers, Wall Street's dwindling\\band of ultra-cynics"),
    ("1", "Talks stall", "A second\\team joins"),
    ("2", "Cup final", "Home side wins"),
    ("4", "New chip", "Faster \\\\ cheaper"),
    ("1", "Summit", "Leaders meet"),
    ("2", "Record run", "Sprinter sets mark"),
]


def _ag_csv(header: bool) -> str:
    body = "".join(",".join(f'"{v}"' for v in row) + "\n" for row in _AG_ROWS)
    return ("label,title,description\n" if header else "") + body


@pytest.fixture
def fresh_registry_cache(monkeypatch):
    """Built-in datasets are cached per process by ``get_dataset``; each test here writes its own files."""
    from transferkit.data import registry

    monkeypatch.setattr(registry, "_CACHE", {})


@pytest.mark.parametrize("header", [True, False])
def test_ag_news_from_local_copy(tmp_path, monkeypatch, fresh_registry_cache, header):
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path))
    (tmp_path / "ag_news").mkdir()
    write(tmp_path / "ag_news" / "test.csv", _ag_csv(header))
    ds = get_dataset("ag_news", "test")
    assert ds.classes == AG_NEWS_CLASSES == ["World", "Sports", "Business", "Sci/Tech"]
    assert ds.labels.tolist() == [2, 0, 1, 3, 0, 1]
    assert ds.texts[0] == "Wall St. Bears Short-sellers, Wall Street's dwindling band of ultra-cynics"
    assert ds.texts[1] == "Talks stall A second team joins"
    assert ds.texts[3] == "New chip Faster cheaper"
    assert ds.rows[0] == f"test.csv:{2 if header else 1}"
    assert ds.name == "ag_news/test"


def test_ag_news_kaggle_header_in_another_column_order(tmp_path):
    from transferkit.data.text import read_ag_news

    f = write(tmp_path / "train.csv", 'Title,Description,Class Index\n"Cup final","Home side wins",2\n')
    ds = read_ag_news(f)
    assert ds.texts == ["Cup final Home side wins"] and ds.labels.tolist() == [1] and ds.rows == ["train.csv:2"]


def test_ag_news_label_out_of_range_names_the_line(tmp_path):
    from transferkit.data.text import read_ag_news

    f = write(tmp_path / "train.csv", '"1","a","b"\n"5","c","d"\n')
    with pytest.raises(ValueError, match=r"train\.csv:2: label '5' is not an AG News class 1\.\.4"):
        read_ag_news(f)


def test_ag_news_absent_offline_says_where_to_put_files(tmp_path, monkeypatch, fresh_registry_cache):
    monkeypatch.setenv("TRANSFERKIT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)ag_news.*TRANSFERKIT_DATA/ag_news/train\.csv") as exc:
        get_dataset("ag_news", "train")
    assert str(tmp_path / "ag_news") in str(exc.value)
