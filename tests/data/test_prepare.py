import numpy as np
import torch

from transferkit.data import ImageSet, TensorBatches, make_loader, prepare_images


class Spec:
    def __init__(self, channels, size, mean, std):
        self.channels, self.size, self.mean, self.std = channels, size, mean, std


def test_grey_to_rgb_resize_and_normalise():
    images = np.full((3, 8, 8), 255, np.uint8)
    ds = ImageSet(images, np.array([0, 1, 0]), ["a", "b"], "t")
    x = prepare_images(ds, Spec(3, (16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.uint8 and int(x.min()) == 255
    data = TensorBatches(x, torch.tensor([0, 1, 0]), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    xb, yb = data.__getitems__([0, 2])
    assert torch.allclose(xb, torch.full_like(xb, 2.0))  # (1 - 0.5) / 0.25
    assert yb.tolist() == [0, 0]


def test_loader_shuffles_with_seed_and_covers_everything():
    data = TensorBatches(torch.arange(10).float().view(10, 1), torch.arange(10))
    order = [y.tolist() for _, y in make_loader(data, 4, shuffle=True, seed=1)]
    again = [y.tolist() for _, y in make_loader(data, 4, shuffle=True, seed=1)]
    assert order == again and sorted(sum(order, [])) == list(range(10))
