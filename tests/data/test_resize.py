"""The evaluation transform (squash / shorter side + centre crop) and the bordered training store."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from transferkit.backbones.base import InputSpec
from transferkit.data import ImageSet, TensorBatches, prepare_images, to_batches
from transferkit.data.augment import augmented
from transferkit.data.resize import (
    describe_resize,
    inner_box,
    keeps_whole,
    resize_images,
    resized_shape,
    scale_size,
)

CROP = InputSpec(channels=3, size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, resize="shorter_crop", crop_pct=0.875)
SQUASH = dataclasses.replace(CROP, resize="squash", crop_pct=1.0)


def _bordered_photo(h: int = 40, w: int = 64) -> np.ndarray:
    """A grey square centre between red side bands (what a squash keeps and a centre crop drops)."""
    img = np.full((h, w, 3), 128, np.uint8)
    band = (w - h) // 2
    img[:, :band] = img[:, w - band :] = (255, 0, 0)
    return img


def test_scale_size_and_resized_shape_follow_timm_and_torchvision():
    assert scale_size((224, 224), 0.875) == (256, 256)
    assert scale_size((96, 96), 0.875) == (109, 109)  # floor(109.7), as timm's transforms_factory
    assert scale_size((224, 224), 224 / 232) == (232, 232)  # no float rounding down
    assert resized_shape(427, 640, (224, 224), 0.875) == (256, 383)  # torchvision Resize(256): int(256·640/427)
    assert resized_shape(640, 427, (224, 224), 0.875) == (383, 256)


@pytest.mark.parametrize(("interpolation", "mode"), [("bilinear", InterpolationMode.BILINEAR),
                                                     ("bicubic", InterpolationMode.BICUBIC)])
@pytest.mark.parametrize("shape", [(45, 70), (70, 45), (33, 33), (100, 61)])
def test_shorter_crop_is_torchvisions_resize_then_centre_crop(shape, interpolation, mode):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 3, *shape), dtype=torch.uint8, generator=g)
    spec = dataclasses.replace(CROP, interpolation=interpolation)
    got = resize_images(x, spec)
    tv = v2.Compose([v2.Resize(36, interpolation=mode, antialias=True), v2.CenterCrop(32)])
    want = tv(x.float()).round().clamp(0, 255).to(torch.uint8)
    assert got.shape == (1, 3, 32, 32)
    assert int((got.int() - want.int()).abs().max()) <= 1  # same geometry; float vs float rounding only


def test_a_non_square_photo_is_centre_cropped_not_squashed():
    ds = ImageSet([_bordered_photo()], np.array([0]), ["x"], "t")
    cropped, squashed = prepare_images(ds, CROP)[0], prepare_images(ds, SQUASH)[0]

    def red(t: torch.Tensor) -> int:
        return int(((t[0] > 200) & (t[1] < 50)).sum())

    assert red(squashed) > 0.3 * 32 * 32  # the squash keeps the side bands (and stretches the square)
    assert red(cropped) == 0 and float(cropped.float().std()) < 2  # the crop is the grey centre only


def test_squash_is_the_default_and_keeps_the_plain_resize():
    spec = InputSpec()  # what every bundle without the new fields gets
    assert (spec.resize, spec.crop_pct, spec.interpolation) == ("squash", 1.0, "bilinear")
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    big = dataclasses.replace(spec, size=(40, 40))
    want = torch.nn.functional.interpolate(x.float(), size=(40, 40), mode="bilinear", antialias=True,
                                           align_corners=False).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(resize_images(x, big), want)
    assert torch.equal(resize_images(x, spec), x)  # already at size: untouched
    assert inner_box(spec) is None


@pytest.mark.parametrize("shape", [(40, 64), (64, 41), (37, 37), (50, 90), (91, 50), (20, 31)])
def test_bordered_training_store_serves_exactly_the_evaluation_crop(shape):
    g = np.random.default_rng(sum(shape))
    images = [g.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(3)]
    ds = ImageSet(images, np.zeros(3, np.int64), ["x"], "t")
    data = to_batches(ds, CROP)
    assert data.view == inner_box(CROP) == (2, 2, 32, 32) and tuple(data.x.shape[-2:]) == (36, 36)
    assert data.image_size == (32, 32)
    direct = prepare_images(ds, CROP)  # the evaluation transform, as predict runs it
    assert torch.equal(data.x[..., 2:34, 2:34], direct)
    plain = TensorBatches(direct, data.y, CROP.mean, CROP.std)
    assert torch.equal(data.__getitems__([0, 1, 2])[0], plain.__getitems__([0, 1, 2])[0])


def test_small_squares_are_resized_whole_and_keep_the_old_pipeline():
    """MNIST-like squares (no larger than the input) are not cropped under shorter_crop: the same pixels as squash,
    no border, the old augmentation presets; in a mixed folder they get a reflected border instead."""
    g = np.random.default_rng(0)
    grey = g.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    ds = ImageSet(grey, np.zeros(6, np.int64), ["x"], "fmnist-like")
    crop_spec = dataclasses.replace(CROP, channels=1, mean=(0.5,), std=(0.5,))
    squash_spec = dataclasses.replace(crop_spec, resize="squash", crop_pct=1.0)
    assert keeps_whole(28, 28, (32, 32)) and keeps_whole(32, 32, (32, 32)) and not keeps_whole(33, 33, (32, 32))
    assert torch.equal(prepare_images(ds, crop_spec), prepare_images(ds, squash_spec))
    data = to_batches(ds, crop_spec)
    assert data.view is None and tuple(data.x.shape[-2:]) == (32, 32)
    crop = augmented(data, "light").transform.transform.transforms[1]
    assert crop.padding == [4, 4, 4, 4]  # the pad-and-crop preset of plain images, unchanged
    timm_way = resize_images(torch.from_numpy(grey).unsqueeze(1), crop_spec, whole_squares=False)
    assert not torch.equal(timm_way, prepare_images(ds, squash_spec))  # what the exemption avoids
    mixed = ImageSet([grey[0], g.integers(0, 256, (40, 64), dtype=np.uint8)], np.zeros(2, np.int64), ["x"], "m")
    both = to_batches(mixed, crop_spec)
    assert both.view == (2, 2, 32, 32) and tuple(both.x.shape[-2:]) == (36, 36)
    assert torch.equal(both.x[..., 2:34, 2:34], prepare_images(mixed, crop_spec))  # the square: whole, padded


def test_augmentation_crops_the_bordered_image_and_none_serves_the_centre():
    ds = ImageSet([_bordered_photo(40, 48)] * 4, np.zeros(4, np.int64), ["x"], "t")
    data = to_batches(ds, CROP)
    assert augmented(data, "none") is data
    for preset in ("light", "standard", "strong"):
        xb = augmented(data, preset).__getitems__([0, 1, 2, 3])[0]
        assert xb.shape == (4, 3, 32, 32), preset
    # light = random crops of the bordered image: translations within the 4-px border, no padding
    torch.manual_seed(0)
    crops = augmented(data, "light").transform(data.x)
    assert crops.shape == (4, 3, 32, 32) and crops.dtype == torch.uint8


def test_squash_data_keep_the_old_presets():
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    ds = ImageSet(x[:, 0].numpy(), np.zeros(6, np.int64), ["x"], "t")
    data = to_batches(ds, InputSpec())
    assert data.view is None
    crop = augmented(data, "light").transform.transform.transforms[1]
    assert isinstance(crop, v2.RandomCrop) and crop.padding == [4, 4, 4, 4]  # the pad-and-crop of plain images


def test_describe_resize_says_how_to_reproduce_it():
    text = describe_resize(dataclasses.replace(CROP, size=(224, 224)))
    assert "shorter side is 256" in text and "centre 224×224 crop" in text and "bilinear" in text
    assert "except a square image no larger than 224×224: resize it to 224×224 whole" in text
    assert "ignoring the aspect ratio" in describe_resize(SQUASH)


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match=r"input_spec.resize.*squash, shorter_crop"):
        dataclasses.replace(CROP, resize="crop")
    with pytest.raises(ValueError, match=r"input_spec.crop_pct.*\(0, 1\]"):
        dataclasses.replace(CROP, crop_pct=1.2)
    with pytest.raises(ValueError, match=r"input_spec.interpolation.*bilinear, bicubic"):
        dataclasses.replace(CROP, interpolation="nearest")
    with pytest.raises(ValueError, match="needs a fixed size"):
        dataclasses.replace(CROP, size=None)


def test_small_from_scratch_backbones_keep_squash():
    from transferkit.backbones import create_backbone

    for name in ("seed_cnn", "lenet", "resnet_small"):
        spec = create_backbone(name, num_classes=2).input_spec
        assert (spec.resize, spec.crop_pct) == ("squash", 1.0), name
    spec = create_backbone("seed_cnn", num_classes=2).input_spec
    photo = ImageSet([_bordered_photo()[..., 0]], np.array([0]), ["x"], "t")  # non-square grey: squashed to 28²
    data = to_batches(photo, spec)
    assert data.view is None and tuple(data.x.shape) == (1, 1, 28, 28)
