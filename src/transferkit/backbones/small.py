"""Small CNNs for 28–32 px images, trained from scratch or on a source task with ``transferkit pretrain``."""

from __future__ import annotations

from torch import nn

from transferkit.backbones.base import Backbone, InputSpec
from transferkit.backbones.registry import register_backbone
from transferkit.errors import ConfigError


def _check_size(arch: str, img_size: int, minimum: int) -> None:
    if img_size < minimum:
        raise ConfigError("image_size", f"at least {minimum} px for {arch}", img_size)


class SeedCNN(Backbone):
    """The reference CNN of the classic MNIST → Fashion-MNIST transfer tutorial (Keras ``mnist_transfer_cnn``).

    ``conv1`` (Conv 32 3×3, ReLU, MaxPool 2) → ``conv2`` (Conv 64 3×3, ReLU, MaxPool 2, Flatten: 1600 values
    at 28 px) → ``fc`` (Dense 64, ReLU) → head (Dense ``num_classes``). Feature transfer reads the Flatten
    output (``default_probe_layer = "conv2"``), as in the tutorial.
    """

    default_probe_layer = "conv2"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:
        super().__init__("seed_cnn", {"in_chans": in_chans, "img_size": img_size})
        _check_size("seed_cnn", img_size, 10)
        self.input_spec = InputSpec(channels=in_chans, size=(img_size, img_size), mean=(0.5,) * in_chans,
                                    std=(0.5,) * in_chans, min_size=10)
        self.stages["conv1"] = nn.Sequential(nn.Conv2d(in_chans, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.stages["conv2"] = nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                             nn.Flatten())
        self._register_dims()
        self.stages["fc"] = nn.Sequential(nn.Linear(self.stage_dims["conv2"], 64), nn.ReLU(inplace=True))
        self._register_dims()
        self.reset_classifier(num_classes)


class LeNet(Backbone):
    """LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition"), ReLU variant.

    ``conv1`` (6 5×5, pad 2, pool) → ``conv2`` (16 5×5, pool, flatten) → ``fc`` (120, 84) → head.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:
        super().__init__("lenet", {"in_chans": in_chans, "img_size": img_size})
        _check_size("lenet", img_size, 12)
        self.input_spec = InputSpec(channels=in_chans, size=(img_size, img_size), mean=(0.5,) * in_chans,
                                    std=(0.5,) * in_chans, min_size=12)
        self.stages["conv1"] = nn.Sequential(nn.Conv2d(in_chans, 6, 5, padding=2), nn.ReLU(inplace=True),
                                             nn.MaxPool2d(2))
        self.stages["conv2"] = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                             nn.Flatten())
        self._register_dims()
        self.stages["fc"] = nn.Sequential(nn.Linear(self.stage_dims["conv2"], 120), nn.ReLU(inplace=True),
                                          nn.Linear(120, 84), nn.ReLU(inplace=True))
        self._register_dims()
        self.reset_classifier(num_classes)


class BasicBlock(nn.Module):
    """Residual block of two 3×3 convolutions (He et al., 2016, "Deep Residual Learning for Image Recognition")."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetSmall(Backbone):
    """A CIFAR-style ResNet for 28–32 px images (He et al., 2016): stem, three stages of ``depth`` blocks
    (16, 32, 64 channels), global average pooling. ``depth=1`` is ResNet-8 (≈78k parameters).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28, depth: int = 1,
                 width: int = 16) -> None:
        super().__init__("resnet_small", {"in_chans": in_chans, "img_size": img_size, "depth": depth, "width": width})
        _check_size("resnet_small", img_size, 8)
        self.input_spec = InputSpec(channels=in_chans, size=(img_size, img_size), mean=(0.5,) * in_chans,
                                    std=(0.5,) * in_chans, min_size=8)
        self.stages["stem"] = nn.Sequential(nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                            nn.ReLU(inplace=True))
        cin = width
        for i, mult in enumerate((1, 2, 4)):
            cout, blocks = width * mult, []
            for j in range(depth):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
            if i == 2:
                blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            self.stages[f"layer{i + 1}"] = nn.Sequential(*blocks)
        self._register_dims()
        self.reset_classifier(num_classes)


@register_backbone("seed_cnn", "Conv32-Conv64-Dense64 CNN of the MNIST→Fashion-MNIST transfer tutorial",
                   default_size=28)
def seed_cnn(num_classes: int = 10, pretrained: bool = False, in_chans: int = 1, img_size: int = 28) -> Backbone:
    return SeedCNN(num_classes, in_chans, img_size)


@register_backbone("lenet", "LeNet-5 (ReLU), 28 px", default_size=28)
def lenet(num_classes: int = 10, pretrained: bool = False, in_chans: int = 1, img_size: int = 28) -> Backbone:
    return LeNet(num_classes, in_chans, img_size)


@register_backbone("resnet_small", "CIFAR-style ResNet-8 for 28-32 px images", default_size=28)
def resnet_small(num_classes: int = 10, pretrained: bool = False, in_chans: int = 1, img_size: int = 28,
                 depth: int = 1, width: int = 16) -> Backbone:
    return ResNetSmall(num_classes, in_chans, img_size, depth, width)
