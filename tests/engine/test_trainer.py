import torch
from torch import nn

from transferkit.config import TrainConfig
from transferkit.data import TensorBatches
from transferkit.engine import fit


def blobs(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    x = centers[y] + 0.7 * torch.randn(n, 2, generator=g)
    return TensorBatches(x, y)


def train_once(seed, tmp_path=None, epochs=8, patience=None):
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, seed=seed, progress=False, patience=patience)
    result = fit(model, [{"params": list(model.parameters()), "lr": 0.05}], blobs(), blobs(90, 1), cfg, tmp_path)
    return model, result


def test_same_seed_same_metrics_different_seed_differs():
    _, a = train_once(0)
    _, b = train_once(0)
    _, c = train_once(1)
    assert a.history == b.history
    assert a.history != c.history
    assert a.history[-1]["val_acc"] > 0.85  # it really learned the blobs


def test_best_validation_weights_are_restored_and_logged(tmp_path):
    model, result = train_once(0, tmp_path, epochs=6)
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == min(range(len(losses)), key=losses.__getitem__)
    val = blobs(90, 1)
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(val.x), val.y).item()
    assert abs(loss - min(losses)) < 1e-5
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    csv = (tmp_path / "logs" / "metrics.csv").read_text()
    assert "val_loss" in csv and "train_loss" in csv


def test_early_stopping_stops_before_max_epochs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3))
    # a learning rate this large makes validation loss diverge, so patience 2 must end the run early
    cfg = TrainConfig(epochs=50, batch_size=32, lr=50.0, seed=0, progress=False, patience=2, optimizer="sgd")
    result = fit(model, [{"params": list(model.parameters()), "lr": 50.0}], blobs(), blobs(90, 1), cfg)
    assert result.stopped_early and result.epochs_run < 50
