"""Datasets by name, splits and k-per-class sampling, and fast in-memory batches.

``get_dataset("fashion_mnist", "train")`` returns an :class:`ImageSet`; :mod:`~transferkit.data.splits`
carves honest train/validation sets from a training split; :mod:`~transferkit.data.prepare` turns images
into the tensors a backbone expects.
"""

from transferkit.data import image_list as _image_list  # noqa: F401  (CSV lists of labelled images)
from transferkit.data import images as _images  # noqa: F401  (registers the built-in datasets)
from transferkit.data import shifted as _shifted  # noqa: F401  (domain-shifted Fashion-MNIST)
from transferkit.data import text as _text  # noqa: F401  (text tables, AG News)
from transferkit.data.base import AnyDataset, ImageSet, TextSet
from transferkit.data.download import DatasetNotFoundError, data_root
from transferkit.data.prepare import TensorBatches, make_loader, prepare_images, to_batches
from transferkit.data.registry import DatasetInfo, get_dataset, has_split, list_datasets, register_dataset
from transferkit.data.splits import (
    align_classes,
    check_trainable,
    k_per_class,
    labelled_budget_split,
    parse_classes,
    select_classes,
    train_val_split,
)

__all__ = [
    "AnyDataset", "DatasetInfo", "align_classes", "check_trainable",
    "DatasetNotFoundError", "ImageSet", "TensorBatches", "TextSet", "data_root",
    "get_dataset", "has_split",
    "k_per_class", "labelled_budget_split", "list_datasets", "make_loader", "parse_classes", "prepare_images",
    "register_dataset", "select_classes", "to_batches", "train_val_split",
]
