"""The feature cache's size cap (least recently used entries evicted after a write) and ``transferkit cache``."""

import os
import time

import pytest
import torch

import transferkit as tk
from transferkit import cachedir
from transferkit.backbones import cached_features, create_backbone
from transferkit.cli.main import main
from transferkit.data.prepare import TensorBatches
from transferkit.errors import ConfigError


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(cachedir.ENV_MAX, raising=False)
    torch.manual_seed(0)
    model = create_backbone("seed_cnn", num_classes=3)
    x = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    return model, TensorBatches(x, None, (0.5,), (0.5,)), tmp_path / "cache"


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.parametrize(("text", "size"), [("10G", 10 * 2**30), ("500M", 500 * 2**20), ("2.5GB", int(2.5 * 2**30)),
                                            ("800KiB", 800 * 2**10), ("123", 123), ("none", None), (" 1 t ", 2**40)])
def test_sizes(text, size):
    assert cachedir.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5G", "1e9"])
def test_bad_sizes_name_the_variable_and_the_forms(text, monkeypatch):
    monkeypatch.setenv(cachedir.ENV_MAX, text or " ")
    with pytest.raises(ConfigError, match=f"{cachedir.ENV_MAX}: expected a size such as 10G"):
        cachedir.max_bytes()


def test_least_recently_used_entries_go_first_and_a_hit_counts_as_a_use(setup, monkeypatch):
    model, data, root = setup
    keys = ["a", "b", "c"]
    paths = {}
    for i, key in enumerate(keys):
        cached_features(model, data, key)
        paths[key] = max(root.glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
        _age(paths[key], 1000 - 100 * i)  # a oldest, then b, then c
    size = paths["a"].stat().st_size
    assert cached_features(model, data, "a")[1]  # a hit: a is now the most recently used
    monkeypatch.setenv(cachedir.ENV_MAX, str(3 * size))  # room for three: the fourth write evicts one
    cached_features(model, data, "d")
    left = {p.name for p in root.glob("*.safetensors")}
    assert paths["b"].name not in left and {paths["a"].name, paths["c"].name} <= left and len(left) == 3
    monkeypatch.setenv(cachedir.ENV_MAX, "1")  # smaller than one entry: only the entry just written stays
    feats, hit = cached_features(model, data, "e")
    assert not hit and feats.shape[0] == 40 and len(list(root.glob("*.safetensors"))) == 1
    monkeypatch.setenv(cachedir.ENV_MAX, "none")
    for key in keys:
        cached_features(model, data, key)
    assert len(list(root.glob("*.safetensors"))) == 4


def test_an_entry_evicted_by_another_process_is_a_miss_not_a_corrupt_entry(setup, caplog):
    from transferkit.backbones import cache

    model, data, root = setup
    cached_features(model, data, "a")
    (path,) = root.glob("*.safetensors")
    path.unlink()
    assert cache._read(path, 40) is None and "corrupt" not in caplog.text


def test_stale_temporary_files_are_removed_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / ".x.1.tmp", tmp_path / ".y.2.tmp"
    stale.write_bytes(b"1")
    fresh.write_bytes(b"2")
    _age(stale, cachedir.STALE_TMP_S + 10)
    cachedir.evict(tmp_path, ".safetensors", None)
    assert not stale.exists() and fresh.exists()  # a writer may still be writing the fresh one


def test_cache_list_and_clear(setup, capsys):
    model, data, root = setup
    for key in ("a", "b"):
        cached_features(model, data, key)
    old = max(root.glob("*.safetensors"), key=lambda p: p.stat().st_mtime_ns)
    _age(old, 3 * 86400)
    listed = tk.cache("list", console=tk.silent())
    assert len(listed["entries"]) == 2 and listed["cap_bytes"] == 10 * 2**30
    first = listed["entries"][0]
    assert first["path"] == str(old) and first["dataset"] == "b" and first["arch"] == "seed_cnn"
    assert first["shape"][0] == 40 and listed["total_bytes"] == sum(p.stat().st_size for p in root.iterdir())
    assert main(["cache", "list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 entries" in out and "seed_cnn" in out and "3 d ago" in out
    gone = tk.cache("clear", older_than_days=1, console=tk.silent())
    assert (gone["removed"], gone["kept"]) == (1, 1) and not old.exists()
    assert main(["cache", "clear"]) == 0
    assert not list(root.glob("*.safetensors")) and "removed 1 entries" in capsys.readouterr().out
    assert main(["cache", "list", "--older-than-days", "2"]) == 2  # only clear takes it
    assert "--older-than-days: expected a number of days ≥ 0, with clear" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exc:  # list or clear (tyro's own message)
        main(["cache", "purge"])
    assert exc.value.code == 2 and "Expected one of ('list', 'clear')" in " ".join(capsys.readouterr().err.split())


def test_cache_of_a_folder_that_does_not_exist_is_empty(tmp_path):
    assert tk.cache(cache_dir=str(tmp_path / "none"), console=tk.silent())["entries"] == []
    assert tk.cache("clear", cache_dir=str(tmp_path / "none"), console=tk.silent())["removed"] == 0
