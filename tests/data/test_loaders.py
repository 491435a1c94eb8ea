import gzip
import hashlib
import struct

import numpy as np
import pytest
from PIL import Image

from transferkit.data import DatasetNotFoundError, get_dataset, has_split, list_datasets, prepare_images
from transferkit.data.download import download, verify
from transferkit.data.images import read_idx

from ..conftest import FMNIST_DIR, requires_fashion


@requires_fashion
def test_fashion_mnist_reads_real_idx_and_checksums_match():
    train = get_dataset("fashion_mnist", "train")
    test = get_dataset("fashion_mnist", "test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.array_equal(np.bincount(test.labels), [1000] * 10)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    from transferkit.data.images import _FASHION_FILES

    f = "t10k-labels-idx1-ubyte.gz"
    assert verify(FMNIST_DIR / f, _FASHION_FILES[f])


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'; valid datasets: .*fashion_mnist.*mnist"):
        get_dataset("cifar")
    assert {d.name for d in list_datasets()} >= {"fashion_mnist", "digits", "mnist", "kmnist", "usps",
                                                  "image_folder", "npz"}


def test_missing_dataset_offline_says_how_to_get_it():
    with pytest.raises(DatasetNotFoundError, match=r"(?s)dataset .kmnist. is not on this machine.*To get it"):
        get_dataset("kmnist", "train")


def test_read_idx_rejects_truncated_file(tmp_path):
    p = tmp_path / "bad-idx3-ubyte.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)


def test_download_is_checksummed_and_atomic(tmp_path, monkeypatch):
    monkeypatch.delenv("TRANSFERKIT_OFFLINE")
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello transfer")
    good = "sha256:" + hashlib.sha256(b"hello transfer").hexdigest()
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        download([src.as_uri()], dest, "sha256:" + "0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial file left behind
    assert download([src.as_uri()], dest, good).read_bytes() == b"hello transfer"


def test_digits_split_is_fixed_and_disjoint():
    tr, te = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert len(tr) + len(te) == 1797 and tr.images.shape[1:] == (8, 8)
    assert tr.images.max() == 255
    assert not {x.tobytes() for x in te.images[:50]} <= {x.tobytes() for x in tr.images}


def _write_folder(root, corrupt=True):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12 + i, 10, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    if corrupt:
        (root / "dog" / "broken.jpg").write_bytes(b"not an image")


def test_image_folder_skips_corrupt_files_by_path(tmp_path, caplog):
    _write_folder(tmp_path / "imgs")
    ds = get_dataset(f"image_folder:{tmp_path / 'imgs'}")
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    assert any("broken.jpg" in s for s in ds.skipped)
    assert "skipped 1 unreadable" in caplog.text
    with pytest.raises(ValueError, match=r"broken\.jpg: not a readable image"):
        get_dataset(f"image_folder:{tmp_path / 'imgs'}", strict=True)
    # varying sizes: preprocessing resizes each image to the model's size
    spec = type("S", (), {"channels": 1, "size": (8, 8), "mean": (0.5,), "std": (0.5,)})()
    assert prepare_images(ds, spec).shape == (6, 1, 8, 8)


def test_image_folder_train_test_layout(tmp_path):
    _write_folder(tmp_path / "d" / "train", corrupt=False)
    _write_folder(tmp_path / "d" / "test", corrupt=False)
    spec = f"image_folder:{tmp_path / 'd'}"
    assert has_split(spec, "test") and len(get_dataset(spec, "test")) == 6
    _write_folder(tmp_path / "flat", corrupt=False)
    with pytest.raises(ValueError, match="has no 'test' split"):
        get_dataset(f"image_folder:{tmp_path / 'flat'}", "test")


def test_npz_loader(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, x=np.zeros((4, 5, 5), np.uint8), y=np.array([0, 1, 1, 0]), classes=np.array(["no", "yes"]))
    ds = get_dataset(f"npz:{p}")
    assert ds.classes == ["no", "yes"] and ds.images.shape == (4, 5, 5)
    with pytest.raises(ValueError, match="needs arrays 'x_test' and 'y_test'"):
        get_dataset(f"npz:{p}", "test")
