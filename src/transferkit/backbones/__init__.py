"""Pretrained feature extractors behind one interface (:class:`Backbone`), created by name.

``create_backbone("seed_cnn", num_classes=5)``; ``create_backbone("mobilenet_v2", pretrained=True)`` (ImageNet,
offline); ``create_backbone("timm:resnet18", weights="resnet18.safetensors")`` for any timm/torchvision model.
``list_backbones()`` shows the built-ins, ``list_backbone_families()`` the library prefixes.
``FeatureFusionBackbone([a, b], mode="concat")`` fuses several backbones' features for one head.
Text: ``create_backbone("minilm", pretrained=True)`` (all-MiniLM-L6-v2, offline) and ``hf:<folder>`` encoders
(:class:`~transferkit.backbones.text.TextEncoder`).
"""

from transferkit.backbones import external as _external  # noqa: F401  (registers timm: and torchvision:)
from transferkit.backbones import imagenet as _imagenet  # noqa: F401  (registers the ImageNet CNNs)
from transferkit.backbones import small as _small  # noqa: F401  (registers the built-ins)
from transferkit.backbones import text as _text  # noqa: F401  (registers minilm and hf:)
from transferkit.backbones.base import Backbone, CosineClassifier, InputSpec, ParamGroup
from transferkit.backbones.cache import cache_root, cached_features, weights_hash
from transferkit.backbones.external import ExternalBackbone, PretrainedWeightsUnavailable
from transferkit.backbones.fused import (
    FUSION_MODES,
    FeatureCombiner,
    FeatureFusionBackbone,
    joint_input_spec,
    member_input,
)
from transferkit.backbones.imagenet import imagenet_classes
from transferkit.backbones.registry import (
    BackboneFamily,
    BackboneInfo,
    backbone_info,
    build_from_config,
    create_backbone,
    is_backbone_name,
    list_backbone_families,
    list_backbones,
    register_backbone,
    register_backbone_family,
)
from transferkit.backbones.text import TextEncoder
from transferkit.backbones.weights import UnsafeCheckpointError, WeightsMismatchError, read_state_dict

__all__ = [
    "FUSION_MODES", "Backbone", "BackboneFamily", "BackboneInfo", "CosineClassifier", "ExternalBackbone",
    "FeatureCombiner", "FeatureFusionBackbone", "InputSpec", "ParamGroup", "PretrainedWeightsUnavailable",
    "TextEncoder", "UnsafeCheckpointError", "WeightsMismatchError", "backbone_info", "build_from_config", "cache_root",
    "cached_features", "create_backbone", "imagenet_classes", "is_backbone_name", "joint_input_spec",
    "list_backbone_families", "list_backbones", "member_input", "read_state_dict", "register_backbone",
    "register_backbone_family", "weights_hash",
]
