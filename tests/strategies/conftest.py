"""Fixtures shared by the strategy tests: a tiny random image set and a fresh seed_cnn source."""

import pytest
import torch

from transferkit.backbones import create_backbone
from transferkit.data import TensorBatches


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return TensorBatches(torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 3, (32,), generator=g))


@pytest.fixture
def source():
    torch.manual_seed(0)
    return create_backbone("seed_cnn", num_classes=5)
