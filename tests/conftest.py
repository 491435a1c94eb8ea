"""Shared fixtures. No test touches the network: downloads are disabled and data roots point into tmp."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ["TRANSFERKIT_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "data-root"
    monkeypatch.setenv("TRANSFERKIT_DATA", str(root))
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")


@pytest.fixture
def single_thread():
    """Tiny tensors run fastest on one intra-op thread (and far faster when other jobs load the CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fashion_available() -> bool:
    from transferkit.data import get_dataset

    try:
        get_dataset("fashion_mnist", "test")
        return True
    except FileNotFoundError:
        return False


requires_fashion = pytest.mark.skipif(
    not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file() and not os.environ.get("TRANSFERKIT_DATA_REAL"),
    reason="Fashion-MNIST not installed (make setup installs Debian's dataset-fashion-mnist)",
)


@pytest.fixture(scope="session")
def fashion_npz(tmp_path_factory) -> Path:
    """A small real Fashion-MNIST subset as npz: 120 train + 40 test images per class, all 10 classes."""
    from transferkit.data import get_dataset

    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed")
    rng = np.random.default_rng(0)
    out = {}
    for split, per_class, (xk, yk) in (("train", 120, ("x", "y")), ("test", 40, ("x_test", "y_test"))):
        ds = get_dataset("fashion_mnist", split)
        idx = np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), per_class, replace=False) for c in range(10)])
        out[xk], out[yk] = ds.images[idx], ds.labels[idx]
    out["classes"] = np.array(ds.classes)
    path = tmp_path_factory.mktemp("fmnist") / "fmnist_small.npz"
    np.savez(path, **out)
    return path
