"""Domain-shifted Fashion-MNIST: same labels and splits, images changed deterministically, cached, clear errors."""

import numpy as np
import pytest

from transferkit.data import get_dataset, list_datasets
from transferkit.data import shifted as sh

from ..conftest import requires_fashion


def test_blend_is_mnist_m_absolute_difference_per_channel():
    img = np.array([[[0, 200]]], np.uint8)  # (1, 1, 2)
    patch = np.array([[[[10, 20, 30], [250, 100, 200]]]], np.uint8)  # (1, 1, 2, 3)
    assert sh.blend_mnist_m(img, patch).tolist() == [[[[10, 20, 30], [50, 100, 0]]]]


def test_photo_patches_are_seeded_and_come_from_real_photos():
    a, b = sh.photo_patches(50, seed=3), sh.photo_patches(50, seed=3)
    assert a.shape == (50, 28, 28, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, sh.photo_patches(50, seed=4)) and a.std() > 10


def test_usage_names_the_argument_and_bad_arguments_are_clear():
    usages = {i.usage for i in list_datasets()}
    assert {"fashion_mnist_m", "fashion_mnist_inv", "fashion_mnist_rot:DEG", "fashion_mnist_noise:SIGMA"} <= usages
    with pytest.raises(ValueError, match="needs an argument: 'fashion_mnist_rot:DEG'"):
        get_dataset("fashion_mnist_rot", "test")
    with pytest.raises(ValueError, match="'fashion_mnist_rot:abc': the angle in degrees must be a number"):
        get_dataset("fashion_mnist_rot:abc", "test")
    with pytest.raises(ValueError, match=r"sigma .* must lie in \[0, 1\]"):
        get_dataset("fashion_mnist_noise:2", "test")
    with pytest.raises(ValueError, match="takes no argument"):
        get_dataset("fashion_mnist_inv:1", "test")


@requires_fashion
def test_shifted_sets_keep_labels_and_change_images_deterministically(tmp_path, monkeypatch):
    base = get_dataset("fashion_mnist", "test")
    inv = get_dataset("fashion_mnist_inv", "test")
    assert np.array_equal(inv.images, 255 - base.images) and np.array_equal(inv.labels, base.labels)
    assert inv.classes == base.classes
    assert np.array_equal(get_dataset("fashion_mnist_rot:0", "test").images, base.images)
    r90 = get_dataset("fashion_mnist_rot:90", "test").images.astype(int)
    assert np.abs(r90 - np.rot90(base.images, 1, axes=(1, 2)).astype(int)).max() <= 1  # counter-clockwise
    noisy = get_dataset("fashion_mnist_noise:0.2", "test")
    assert np.array_equal(noisy.images, sh._noisy.__wrapped__("test", 0.2).images)  # seeded: rebuilt identically
    diff = noisy.images.astype(int) - base.images.astype(int)
    assert 20 < np.abs(diff).mean() < 51 and np.array_equal(noisy.labels, base.labels)


@requires_fashion
def test_fashion_mnist_m_is_colour_cached_and_reloaded(monkeypatch):
    m = get_dataset("fashion_mnist_m", "test")
    base = get_dataset("fashion_mnist", "test")
    assert m.images.shape == (*base.images.shape, 3) and m.channels == 3 and np.array_equal(m.labels, base.labels)
    cache = sh.data_root() / "fashion_mnist_m" / f"test-v{sh.MNIST_M_VERSION}.npz"
    assert cache.is_file()

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(sh, "photo_patches", no_rebuild)
    assert np.array_equal(sh.fashion_mnist_m("test").images, m.images)
