"""Augmentation presets, Mixup/CutMix targets, class weights and the balanced sampler (no training here)."""

import lightning as L
import pytest
import torch

from transferkit.config import AUGMENT_PRESETS as CONFIG_PRESETS
from transferkit.data import TensorBatches, make_loader
from transferkit.data.augment import AUGMENT_PRESETS, MixupCutmix, augmentation, augmented
from transferkit.data.balance import balanced_sampler, class_weights


def images(n=16, c=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g)


def test_presets_match_the_config_choices():
    assert AUGMENT_PRESETS == CONFIG_PRESETS


@pytest.mark.parametrize("preset", ["light", "standard", "strong"])
@pytest.mark.parametrize("c,size", [(1, 28), (3, 96)])
def test_presets_keep_shape_and_dtype_and_change_images(preset, c, size):
    x = images(8, c, size)
    before = x.clone()
    L.seed_everything(0, verbose=False)
    out = augmentation(preset, c, (size, size))(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(x, before)  # the input (possibly a view of the dataset) is never modified
    changed = [not torch.equal(a, b) for a, b in zip(out, x, strict=True)]
    assert sum(changed) >= 4  # light leaves an image as it is only when flip and crop both draw the identity


def test_none_is_identity():
    data = TensorBatches(images(), torch.zeros(16, dtype=torch.long), [0.5], [0.25])
    assert augmentation("none", 1, (28, 28)) is None
    assert augmented(data, "none") is data
    with pytest.raises(ValueError, match="augment: expected one of none, light, .*got 'heavy'"):
        augmentation("heavy", 1, (28, 28))


@pytest.mark.parametrize("preset", ["light", "standard", "strong"])
def test_each_image_of_a_batch_gets_its_own_random_draw(preset):
    # one asymmetric image repeated: a shared draw would give identical outputs
    x = images(1, 3, 32).expand(16, -1, -1, -1).contiguous()
    L.seed_everything(0, verbose=False)
    out = augmentation(preset, 3, (32, 32))(x)
    distinct = {out[i].numpy().tobytes() for i in range(16)}
    assert len(distinct) >= (4 if preset == "light" else 12)


def test_same_seed_same_augmented_batch_and_another_seed_differs():
    data = augmented(TensorBatches(images(32), torch.zeros(32, dtype=torch.long), [0.5], [0.25]), "strong")

    def batch(seed):
        L.seed_everything(seed, verbose=False)
        return data.__getitems__(list(range(32)))[0]

    assert torch.equal(batch(0), batch(0))
    assert not torch.equal(batch(0), batch(1))


def test_with_transform_returns_an_augmented_copy_and_leaves_the_original_alone():
    x = images(12)
    data = TensorBatches(x, torch.arange(12), [0.5], [0.25])
    plain = data.__getitems__(list(range(12)))[0]
    train = augmented(data, "standard")
    assert train is not data and train.x is data.x and data.transform is None
    L.seed_everything(0, verbose=False)
    aug = train.__getitems__(list(range(12)))[0]
    assert aug.dtype == torch.float32 and aug.shape == plain.shape and not torch.equal(aug, plain)
    assert torch.equal(data.__getitems__(list(range(12)))[0], plain)  # original batches unchanged
    assert torch.equal(data.x, x)


def test_batches_with_repeated_indices_are_gathered_not_sliced():
    data = TensorBatches(torch.arange(5.0).view(5, 1), torch.arange(5))
    assert data.__getitems__([0, 0, 2])[1].tolist() == [0, 0, 2]
    assert data.__getitems__([1, 2, 3])[1].tolist() == [1, 2, 3]


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_cutmix_give_soft_targets_that_sum_to_one(mixup, cutmix):
    L.seed_everything(0, verbose=False)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 4, (16,))
    xm, t = MixupCutmix(4, mixup, cutmix)(x, y)
    assert xm.shape == x.shape and t.shape == (16, 4)
    assert torch.allclose(t.sum(1), torch.ones(16)) and (t >= 0).all()
    assert not torch.equal(xm, x)
    assert (t[torch.arange(16), y] >= t.max(1).values - 1e-6).any()  # the own label keeps its share


def test_mixup_works_on_features_but_cutmix_refuses():
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    L.seed_everything(0, verbose=False)
    xm, t = MixupCutmix(3, mixup=0.4)(x, y)
    assert xm.shape == (8, 5) and torch.allclose(t.sum(1), torch.ones(8))
    with pytest.raises(ValueError, match="cutmix=.* needs image batches"):
        MixupCutmix(3, mixup=0.4, cutmix=1.0)(x, y)
    with pytest.raises(ValueError, match="mixup > 0 or cutmix > 0"):
        MixupCutmix(3)


def test_class_weights_are_balanced_inverse_frequencies_with_mean_one():
    y = torch.tensor([0] * 90 + [1] * 10)
    w = class_weights(y, 2)
    assert torch.allclose(w, torch.tensor([100 / (2 * 90), 100 / (2 * 10)]))
    assert torch.isclose(w[y].mean(), torch.tensor(1.0))
    assert torch.isclose(w[0] * 90, w[1] * 10)  # every class carries the same total weight


def test_class_without_examples_gets_weight_zero_and_a_warning():
    y = torch.tensor([0] * 6 + [2] * 2)
    with pytest.warns(UserWarning, match=r"class\(es\) \[1\] have no training examples"):
        w = class_weights(y, 3)
    assert w[1] == 0 and torch.isclose(w[y].mean(), torch.tensor(1.0))
    assert torch.allclose(w[[0, 2]], torch.tensor([8 / (2 * 6), 8 / (2 * 2)]))


def test_balanced_sampler_draws_classes_equally_often_and_is_seeded():
    y = torch.tensor([0] * 900 + [1] * 100)
    data = TensorBatches(torch.arange(1000.0).view(-1, 1), y)

    def epoch(seed):
        loader = make_loader(data, 64, shuffle=True, seed=seed, sampler="balanced")
        xs, ys = zip(*loader, strict=True)
        return torch.cat(xs).flatten().long(), torch.cat(ys)

    idx, labels = epoch(0)
    assert len(labels) == 1000  # an epoch keeps its length
    assert torch.equal(y[idx], labels)  # rows and labels stay paired (repeats are gathered)
    assert 0.44 < labels.float().mean().item() < 0.56  # minority class: 10 % of the data, ~50 % of the draws
    assert torch.equal(epoch(0)[0], idx)
    assert not torch.equal(epoch(1)[0], idx)
    assert len(balanced_sampler(y, 0)) == 1000
    with pytest.raises(ValueError, match="^sampler: expected one of random, balanced, got 'weighted'"):
        make_loader(data, 64, shuffle=True, sampler="weighted")
