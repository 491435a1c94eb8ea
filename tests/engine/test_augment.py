"""Training with augmentation, Mixup/CutMix and class-imbalance handling through the engine."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.backbones import create_backbone
from transferkit.config import TrainConfig
from transferkit.data import TensorBatches
from transferkit.engine import fit
from transferkit.engine import train as train_with
from transferkit.engine.module import TransferModule
from transferkit.strategies import get_strategy


class SpyBatches(TensorBatches):
    """Records, for every batch fetched, which object served it and whether it carried a transform."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list[tuple[int, bool]] = []  # shared with copies made by with_transform

    def _fetch(self, idx, seed=None):
        self.log.append((id(self), self.transform is not None))
        return super()._fetch(idx, seed)


def fake_images(n, seed, cls=SpyBatches):
    """Three classes of 28-px gray images: a bright bar at the top, middle or bottom, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randint(0, 60, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    for c in range(3):
        x[y == c, :, 4 + 8 * c : 10 + 8 * c, 4:24] = 230
    return cls(x, y, (0.2,), (0.3,))


def small_cnn():
    torch.manual_seed(0)
    return create_backbone("seed_cnn", num_classes=3, in_chans=1)


def cfg(**kw):
    base = dict(epochs=2, batch_size=16, lr=2e-3, seed=0, progress=False, checkpoints=False, patience=None)
    return TrainConfig(**{**base, **kw})


def fit_cnn(c, train=None, val=None):
    model = small_cnn()
    train = train if train is not None else fake_images(48, 0)
    val = val if val is not None else fake_images(24, 1)
    return fit(model, [{"params": list(model.parameters()), "lr": c.lr}], train, val, c), model


def test_fit_with_strong_augment_mixup_and_cutmix_trains_and_never_augments_validation():
    train, val = fake_images(48, 0), fake_images(24, 1)
    result, _ = fit_cnn(cfg(augment="strong", mixup=0.2, cutmix=1.0), train, val)
    assert len(result.history) == 2
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in result.history)
    val_fetches = [aug for owner, aug in val.log if owner == id(val)]
    assert val_fetches and not any(val_fetches)  # validation batches were served, never transformed
    train_fetches = [aug for owner, aug in train.log if owner != id(train)]
    assert train_fetches and all(train_fetches)  # training batches came from the augmented copy
    assert train.transform is None  # the caller's data object is left as it was


def test_augmented_training_is_reproducible_for_a_seed():
    a, _ = fit_cnn(cfg(epochs=1, augment="light", mixup=0.4))
    b, _ = fit_cnn(cfg(epochs=1, augment="light", mixup=0.4))
    c, _ = fit_cnn(cfg(epochs=1, augment="light", mixup=0.4, seed=1))
    assert a.history == b.history and a.history != c.history


def test_training_step_uses_soft_targets_and_class_weights_but_validation_stays_plain():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 0, 0, 0, 1, 2])
    soft = torch.tensor([[0.7, 0.3, 0.0]] * 3 + [[0.2, 0.0, 0.8]] * 3)
    w = torch.tensor([0.5, 2.0, 2.0])
    seen = {}

    def term(m, xb, yb, logits):
        seen["x"], seen["y"] = xb, yb
        return torch.zeros(())

    module = TransferModule(model, [], cfg(), loss_terms=[term], class_weights=w,
                            mixer=lambda xb, yb: (xb * 2, soft))
    loss = module.training_step((x, y), 0)
    logits = model(2 * x)
    assert torch.isclose(loss, -(w * soft * logits.log_softmax(1)).sum(1).mean())
    assert torch.equal(seen["x"], 2 * x) and torch.equal(seen["y"], y)  # mixed inputs, original hard labels
    assert module.train_sums.total[1] == (logits.argmax(1) == soft.argmax(1)).sum()  # train accuracy vs the soft argmax

    plain = TransferModule(model, [], cfg(), class_weights=w)
    assert torch.isclose(plain.training_step((x, y), 0), F.cross_entropy(model(x), y, weight=w))
    plain.validation_step((x, y), 0)
    assert torch.isclose(plain.val_sums.total[0].float(), F.cross_entropy(model(x), y, reduction="sum"))  # unweighted


def imbalanced_blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.15).long()  # ~15 % minority class
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])[y] + 0.8 * torch.randn(n, 2, generator=g)
    return TensorBatches(x, y)


def test_class_weight_balanced_trains_and_validation_loss_stays_unweighted():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    val = imbalanced_blobs(80, 1)
    c = cfg(epochs=4, batch_size=32, lr=0.05, class_weight="balanced")
    result = fit(model, [{"params": list(model.parameters()), "lr": 0.05}], imbalanced_blobs(200, 0), val, c)
    with torch.no_grad():
        plain = F.cross_entropy(model(val.x), val.y).item()
    assert abs(plain - min(r["val_loss"] for r in result.history)) < 1e-5


def test_balanced_sampler_fit_is_deterministic():
    def run():
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        c = cfg(epochs=2, batch_size=32, lr=0.05, sampler="balanced")
        return fit(model, [{"params": list(model.parameters()), "lr": 0.05}], imbalanced_blobs(200, 0),
                   imbalanced_blobs(80, 1), c).history

    assert run() == run()


def test_pixel_options_on_feature_data_fail_before_training(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("trainer.fit must not be reached")

    monkeypatch.setattr(L.Trainer, "fit", no_training)
    source = small_cnn()
    train, val = fake_images(24, 0, TensorBatches), fake_images(12, 1, TensorBatches)
    with pytest.raises(ValueError, match=r"augment=light: augmentation needs image batches.*linear_probe trains "
                                         r"a head on cached features.*use finetune.*augment=none"):
        train_with(get_strategy("linear_probe"), source, 3, train, val, cfg(augment="light"))
    features = TensorBatches(torch.randn(20, 5), torch.arange(20) % 3)
    with pytest.raises(ValueError, match=r"cutmix=1: .*5 feature vectors.*cutmix=0"):
        fit(nn.Linear(5, 3), [], features, None, cfg(cutmix=1.0))


def test_mixup_on_feature_data_trains():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    features = TensorBatches(torch.randn(40, 5), torch.arange(40) % 3)
    result = fit(model, [{"params": list(model.parameters()), "lr": 0.01}], features, None,
                 cfg(mixup=0.4, class_weight="balanced"))
    assert len(result.history) == 2 and all(math.isfinite(r["train_loss"]) for r in result.history)


@pytest.mark.parametrize("augment", ["none", "light", "standard", "strong"])
def test_bordered_training_data_feed_the_served_size(augment):
    """A shorter_crop spec's training data hold a border (32 px around a 28-px view): every preset, and none,
    hands the model 28-px batches (seed_cnn's flatten would fail on 32), validation the centre view."""
    plain = fake_images(48, 0)
    bordered = SpyBatches(F.pad(plain.x, (2, 2, 2, 2), mode="reflect"), plain.y, (0.2,), (0.3,), view=(2, 2, 28, 28))
    val = fake_images(24, 1)
    val = TensorBatches(F.pad(val.x, (2, 2, 2, 2)), val.y, (0.2,), (0.3,), view=(2, 2, 28, 28))
    result, _ = fit_cnn(cfg(epochs=1, augment=augment), bordered, val)
    assert math.isfinite(result.history[0]["train_loss"]) and math.isfinite(result.history[0]["val_loss"])
    assert torch.equal(val.__getitems__([0, 1])[0], fake_images(24, 1).__getitems__([0, 1])[0])
