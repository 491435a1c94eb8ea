"""Image folders streamed from disk (issue 29): the same pixels, batches and features as in memory, checked once,
prepared once, and every bad input handled (unreadable files, full disk, Ctrl-C, another format, truncated entry)."""

from __future__ import annotations

import errno
import logging
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit import cachedir
from transferkit.data import lazy, prepared
from transferkit.data.augment import augmented
from transferkit.data.prepare import make_loader, to_batches
from transferkit.data.registry import get_dataset


class Spec:
    channels, size, mean, std = 3, (24, 24), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    resize, crop_pct, interpolation = "shorter_crop", 0.875, "bilinear"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch) -> Path:
    """3 classes × 10 JPEG/PNG photos of varying sizes, one garbage file and one truncated JPEG (and a cache folder of
    the test's own)."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(10):
            img = (rng.random((30 + 3 * i, 40, 3)) * 255).astype(np.uint8)
            img[..., c] = 220
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.{'png' if i % 4 == 0 else 'jpg'}")
    (root / "class0" / "garbage.jpg").write_bytes(b"not an image")
    whole = (root / "class1" / "1.jpg").read_bytes()
    (root / "class1" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def _load(folder: Path, stream: bool, monkeypatch, **kw):
    monkeypatch.setenv(lazy.ENV_STREAM, "0" if stream else "none")
    return get_dataset(f"image_folder:{folder}", "train", **kw)


def test_a_streamed_folder_serves_the_pixels_batches_and_augmentations_of_the_in_memory_one(folder, monkeypatch):
    monkeypatch.setenv(lazy.ENV_WORKERS, "2")
    memory, streamed = _load(folder, False, monkeypatch), _load(folder, True, monkeypatch)
    assert isinstance(streamed.images, lazy.LazyImages) and isinstance(memory.images, list)
    assert streamed.paths == memory.paths and streamed.labels.tolist() == memory.labels.tolist()
    assert len(streamed) == 30 and len(streamed.skipped) == 2  # the garbage and the truncated file, by name
    idx = np.random.default_rng(1).permutation(30)[:20]  # a split is a subset: the folder's entry serves it
    a, b = to_batches(memory.subset(idx), Spec), to_batches(streamed.subset(idx), Spec)
    assert isinstance(b.x, prepared.DiskImages) and b.x.workers == 2 and b.view == a.view
    assert torch.equal(b.x[:], a.x) and torch.equal(b.x[torch.tensor([5, 2, 3, 2])], a.x[[5, 2, 3, 2]])
    for aug in (None, "light"):
        ours = [batch for batch in make_loader(augmented(b, aug), 8, shuffle=True, seed=3)]  # in 2 workers
        ref = [batch for batch in make_loader(augmented(a, aug), 8, shuffle=True, seed=3)]
        assert len(ours) == len(ref) == 3
        assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(ours, ref, strict=True))
    from transferkit.backbones.features import batched_outputs

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    out_b = torch.cat(batched_outputs(net, b, net, 7))  # read by worker processes
    out_a = torch.cat(batched_outputs(net, a, net, 7))
    assert torch.equal(out_a, out_b)
    entries = list(cachedir.prepared_root().glob("*.tkdata"))
    assert len(entries) == 1  # one entry for the folder, whatever the subset
    again = to_batches(streamed.subset(idx[:5]), Spec)
    assert again.x.path == entries[0] and torch.equal(again.x[:], a.x[:5])


def test_unreadable_files_are_skipped_by_name_and_strict_stops_at_the_first(folder, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        ds = _load(folder, True, monkeypatch)
    assert "garbage.jpg" in caplog.text and "truncated.jpg" in caplog.text and "skipped 2 unreadable" in caplog.text
    assert not any("garbage" in p or "truncated" in p for p in ds.paths)
    with pytest.raises(ValueError, match="garbage.jpg|truncated.jpg"):
        _load(folder, True, monkeypatch, strict=True)


def test_an_unchanged_folder_is_not_checked_again_a_changed_file_is(folder, monkeypatch):
    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    first = _load(folder, True, monkeypatch)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(lazy, "check_image", no_decoding)
    second = _load(folder, True, monkeypatch)
    assert second.fingerprint() == first.fingerprint() and second.paths == first.paths
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "class2" / "3.jpg")  # new content, new mtime
    os.utime(folder / "class2" / "3.jpg", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        _load(folder, True, monkeypatch)
    monkeypatch.undo()
    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    third = _load(folder, True, monkeypatch)
    assert third.fingerprint() != first.fingerprint()
    assert third.subset([0, 1]).fingerprint() != third.subset([1, 2]).fingerprint()


def test_a_full_disk_is_refused_before_building_saying_how_much_is_needed(folder, monkeypatch):
    ds = _load(folder, True, monkeypatch)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(prepared.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match=r"needs .* in .*prepared but 1000 bytes is free.*TRANSFERKIT_CACHE") as err:
        to_batches(ds, Spec)
    assert err.value.errno == errno.ENOSPC
    assert not [p for p in cachedir.prepared_root().iterdir() if p.suffix in (".tkdata", ".tmp")]


def test_a_disk_filling_up_while_writing_leaves_no_half_built_entry(folder, monkeypatch):
    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    ds = _load(folder, True, monkeypatch)

    def disk_full(self, i):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepared._Resized, "__getitem__", disk_full)
    with pytest.raises(OSError, match="needs .* free some space"):
        to_batches(ds, Spec)
    assert not [p for p in cachedir.prepared_root().iterdir() if p.suffix in (".tkdata", ".tmp")]


def test_ctrl_c_while_building_leaves_nothing_and_the_next_run_builds_it(folder, monkeypatch):
    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    ds = _load(folder, True, monkeypatch)
    real = prepared._Resized.__getitem__
    monkeypatch.setattr(prepared._Resized, "__getitem__", lambda self, i: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        to_batches(ds, Spec)
    assert not [p for p in cachedir.prepared_root().iterdir() if p.suffix in (".tkdata", ".tmp")]
    monkeypatch.setattr(prepared._Resized, "__getitem__", real)
    assert to_batches(ds, Spec).x.shape == (30, 3, 27, 27)  # 24 px crop, border to floor(24 / 0.875)


def test_an_entry_of_another_format_is_rebuilt_and_said_so_a_truncated_one_too(folder, monkeypatch, caplog):
    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    ds = _load(folder, True, monkeypatch)
    before = to_batches(ds, Spec).x[:]
    monkeypatch.setattr(prepared, "FORMAT", prepared.FORMAT + 1)
    with caplog.at_level(logging.WARNING):
        after = to_batches(ds, Spec).x
    assert "prepared by another transferkit version" in caplog.text and torch.equal(after[:], before)
    with open(after.path, "r+b") as fh:
        fh.truncate(after.path.stat().st_size - 100)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = to_batches(ds, Spec).x
    assert "incomplete or from another format; rebuilding" in caplog.text and torch.equal(again[:], before)


def test_cache_list_and_clear_show_and_remove_prepared_entries(folder, monkeypatch):
    from transferkit.api import cache
    from transferkit.terminal import silent

    monkeypatch.setenv(lazy.ENV_WORKERS, "0")
    to_batches(_load(folder, True, monkeypatch), Spec)
    listed = cache("list", console=silent())["prepared"]
    assert len(listed["entries"]) == 1 and listed["entries"][0]["shape"] == [30, 3, 27, 27]
    assert listed["entries"][0]["name"].startswith("image_folder:")
    gone = cache("clear", console=silent())["prepared"]
    assert gone["kept"] == 0 and gone["freed_bytes"] >= 30 * 3 * 27 * 27
    assert not list(cachedir.prepared_root().glob("*.tkdata")) and not list(cachedir.prepared_root().glob("*.json"))


def test_small_folders_stay_in_memory_by_default(folder, monkeypatch):
    monkeypatch.delenv(lazy.ENV_STREAM, raising=False)
    assert isinstance(get_dataset(f"image_folder:{folder}", "train").images, list)
    for bad in ("-1", "lots"):
        monkeypatch.setenv(lazy.ENV_WORKERS, bad)
        with pytest.raises(ValueError, match="TRANSFERKIT_WORKERS"):
            lazy.default_workers()


def test_training_on_a_streamed_folder_in_workers_resumes_mid_epoch_exactly_as_in_memory(tmp_path, monkeypatch):
    """The order and every batch's augmentation seed come from the sampler in the training process, so worker
    processes change nothing: the streamed run equals the in-memory one bit for bit, and so does its resume after a
    crash in the middle of an epoch."""
    from lightning.pytorch.callbacks import Callback
    from torch import nn

    from transferkit.config import TrainConfig
    from transferkit.engine import fit
    from transferkit.engine.checkpoints import latest_good_checkpoint

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(lazy.ENV_WORKERS, "2")
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "grey" / f"c{c}").mkdir(parents=True)
        for i in range(40):
            img = rng.integers(0, 60, (12, 12)).astype(np.uint8)
            img[4 * c:4 * c + 3] += 150
            Image.fromarray(img).save(tmp_path / "grey" / f"c{c}" / f"{i}.png")

    class Grey:
        channels, size, mean, std, resize = 1, (12, 12), (0.5,), (0.25,), "squash"

    def data(stream: bool):
        ds = _load(tmp_path / "grey", stream, monkeypatch)
        return to_batches(ds.subset(np.arange(0, 120, 1)), Grey), to_batches(ds.subset(np.arange(0, 120, 3)), Grey)

    class Crash(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 11:  # 8 steps per epoch: in the middle of the second
                raise RuntimeError("simulated crash")

    def run(out, stream, callbacks=(), resume_from=None):
        torch.manual_seed(7)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                              nn.Linear(16, 3))
        cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=3, progress=False, patience=None, checkpoint_every=2,
                          resume_from=resume_from, augment="light", accelerator="cpu")
        train, val = data(stream)
        assert isinstance(train.x, prepared.DiskImages) == stream
        return model, fit(model, [{"params": list(model.parameters()), "lr": 0.05}], train, val, cfg, out,
                          callbacks=callbacks)

    ref_model, ref = run(tmp_path / "memory", False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "streamed", True, callbacks=[Crash()])
    ckpt, _ = latest_good_checkpoint(tmp_path / "streamed" / "checkpoints")
    model, resumed = run(tmp_path / "streamed", True, resume_from=str(ckpt))
    assert resumed.history == ref.history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values(),
                                                 strict=True))
