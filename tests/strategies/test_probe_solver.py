"""The solved linear probe: L-BFGS logistic regression against scikit-learn, the choice of C by stratified CV and its
fallbacks, bad features, the head folded onto raw features, speed, and the strategy end to end (engine, multi-task,
run directory, predict, export)."""

import json
import time

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.config import TrainConfig
from transferkit.data.prepare import TensorBatches
from transferkit.engine import train as train_with
from transferkit.engine.multitask import train_multitask
from transferkit.multi_task.weighting import FixedWeighting
from transferkit.strategies import get_strategy
from transferkit.strategies.probe_solver import (
    DEFAULT_C,
    cv_folds,
    fit_logistic,
    principal_basis,
    solve_probe,
    standardise,
)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny problems: one intra-op thread is fastest, above all on a shared CPU."""


def blobs(n_per: int, k: int, d: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` Gaussian classes of ``n_per`` points in ``d`` dimensions, centres ``spread`` apart (scale and offset
    that are not standardised, so the folding onto raw features matters)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * spread
    y = torch.arange(k).repeat_interleave(n_per)
    x = centres[y] + torch.randn(len(y), d, generator=g)
    return x * torch.linspace(0.1, 10, d) + 3.0, y


def logits(sol, x: torch.Tensor) -> torch.Tensor:
    return x @ sol.weight.T + sol.bias


@pytest.mark.parametrize("n_per,d,c", [(30, 8, 0.05), (30, 8, 10.0), (6, 40, 0.3)])  # N > D and N < D (row space)
@pytest.mark.parametrize("per_feature", [False, True])
def test_fixed_c_matches_scikit_learn_logistic_regression(n_per, d, c, per_feature):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(n_per, 3, d, spread=0.7)
    xn = x.double().numpy()
    if per_feature:  # scikit-learn's StandardScaler
        z = StandardScaler().fit_transform(xn)
    else:  # centred, one scale for every feature
        z = (xn - xn.mean(0)) / np.sqrt(((xn - xn.mean(0)) ** 2).mean())
    ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(z, y.numpy())
    sol = solve_probe(x, y, 3, C=c, per_feature=per_feature)
    assert sol.record["C"] == c and sol.record["chosen_by"] == "given"
    proba = torch.softmax(logits(sol, x), 1).numpy()
    np.testing.assert_allclose(proba, ref.predict_proba(z), atol=2e-4)
    assert (proba.argmax(1) == ref.predict(z)).all()


def test_the_saved_head_on_raw_features_equals_standardise_then_solve():
    x, y = blobs(10, 4, 30, spread=0.5)
    sol = solve_probe(x, y, 4, C=1.0)
    mean, std = standardise(x.double())
    assert (std == std[0]).all() and standardise(x.double(), per_feature=True)[1].unique().numel() == 30
    z = (x.double() - mean) / std
    fit = fit_logistic(z, y, 4, 1.0)
    np.testing.assert_allclose(logits(sol, x).numpy(), (z @ fit.weight.T + fit.bias).numpy(), atol=1e-3)
    assert sol.weight.dtype == torch.float32 and sol.weight.shape == (4, 30)


def test_principal_basis_solves_the_same_problem_with_fewer_unknowns():
    x, y = blobs(4, 3, 50, spread=0.5)
    z = x.double()
    z = (z - z.mean(0)) / z.std(0)
    full = fit_logistic(z, y, 3, 2.0, tol=1e-9)
    coords, v, var = principal_basis(z)
    assert coords.shape[0] == 12 and coords.shape[1] <= 12 and v.shape == (50, coords.shape[1])
    torch.testing.assert_close(coords @ v.T, z)  # the rows, rotated
    assert (var[:-1] >= var[1:]).all()
    small = fit_logistic(coords, y, 3, 2.0, tol=1e-9)
    np.testing.assert_allclose((small.weight @ v.T).numpy(), full.weight.numpy(), atol=1e-5)
    assert small.loss == pytest.approx(full.loss, abs=1e-9)


def test_cross_validation_regularises_noise_strongly_and_separable_data_weakly():
    g = torch.Generator().manual_seed(1)
    noise = solve_probe(torch.randn(60, 50, generator=g), torch.arange(3).repeat(20), 3)
    x, y = blobs(20, 3, 10, spread=3.0)
    separable = solve_probe(x, y, 3)
    assert noise.record["C"] <= 1e-2 < 1.0 <= separable.record["C"]
    for r in (noise.record, separable.record):
        assert r["folds"] == 5 and r["fallback"] is None and len(r["cv_log_loss"]) == len(r["grid"]) == 9
        assert r["chosen_by"].startswith("stratified 5-fold cross-validation")
    assert float((logits(separable, x).argmax(1) == y).float().mean()) == 1.0


def test_one_label_per_class_takes_the_default_c_and_says_so():
    x, y = blobs(1, 4, 16, spread=1.0)
    with pytest.warns(UserWarning, match="no cross-validation: no class has two or more training examples"):
        sol = solve_probe(x, y, 4, name="digits training features")
    r = sol.record
    assert r["C"] == DEFAULT_C and r["folds"] == 0 and "not cross-validated" in r["fallback"]
    assert (logits(sol, x).argmax(1) == y).all()


def test_a_class_too_small_to_hold_out_stays_in_every_training_part_and_it_is_said():
    y = np.array([0] * 4 + [1] * 4 + [2] * 1)
    folds, note = cv_folds(y, seed=0)
    assert len(folds) == 4 and "fallback: class(es) [2]" in note
    assert all(8 in tr and set(y[te]) == {0, 1} for tr, te in folds)
    x, _ = blobs(3, 3, 6, spread=2.0)
    with pytest.warns(UserWarning, match=r"fallback: class\(es\) \[2\] have one example"):
        sol = solve_probe(x[:9], torch.from_numpy(y), 3)
    assert "fallback" in sol.record["fallback"] and sol.record["folds"] == 4


def test_absent_classes_are_never_predicted():
    x, y = blobs(5, 3, 6, spread=2.0)
    sol = solve_probe(x, y * 2, 6)  # classes 0, 2, 4 of 6
    assert sol.record["absent_classes"] == [1, 3, 5]
    assert set(logits(sol, x).argmax(1).tolist()) <= {0, 2, 4}


def test_non_finite_features_are_an_error_naming_the_data():
    x, y = blobs(5, 2, 4, spread=1.0)
    x[3, 1], x[7, 0] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"fashion_mnist training features: 2 NaN/inf value\(s\) in 2 of 10 feature"):
        solve_probe(x, y, 2, name="fashion_mnist training features")


def test_bad_options_name_the_option_and_the_valid_values():
    with pytest.raises(ValueError, match="option solver: unknown 'newton'; valid choices: lbfgs, sgd"):
        get_strategy("linear_probe", solver="newton")
    with pytest.raises(ValueError, match="option C: expected 'auto' .* or a positive number .* got -1"):
        get_strategy("linear_probe", C=-1)
    with pytest.raises(ValueError, match="C applies to solver=lbfgs"):
        get_strategy("linear_probe", solver="sgd", C=0.1)
    assert get_strategy("linear_probe", C="1e-3").options["C"] == 1e-3  # YAML reads 1e-3 as text


def test_fit_time_for_ten_classes_of_fifty_examples_of_1280_features():
    import sklearn.model_selection  # noqa: F401 — imported once per process, not part of a fit

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 1280, generator=g) * 0.1
    y = torch.arange(10).repeat_interleave(50)
    # ReLU features, as a CNN's pooled output, with variances over three decades (pretrained features span four)
    x = torch.relu(centres[y] + torch.randn(500, 1280, generator=g)) * torch.arange(1, 1281).pow(-0.5)
    start = time.perf_counter()
    sol = solve_probe(x, y, 10)
    elapsed = time.perf_counter() - start
    print(f"solved probe, 10 classes x 50 examples x 1280 features: {elapsed:.2f} s "
          f"(C={sol.record['C']:g}, {sol.record['iterations']} L-BFGS iterations over 5 folds x 9 C + refit)")
    assert elapsed < 5.0  # goal 2 s on 2 idle cores; generous for a shared machine


# -- the strategy, through the engine ------------------------------------------------------------------------------

def test_strategy_solves_the_head_without_epochs(source, data):
    val = TensorBatches(data.x[:8], data.y[:8])
    cfg = TrainConfig(epochs=7, lr=0.3, progress=False, checkpoints=False)
    out = train_with(get_strategy("linear_probe"), source, 3, data, val, cfg)
    fit = out.fit
    assert fit.epochs_run == 0 and fit.best_epoch == 0 and len(fit.history) == 1
    row = fit.history[0]
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(row) and fit.best_score == row["val_loss"]
    assert fit.solver["C"] > 0 and fit.solver["ignored"] == ["epochs=7", "lr=0.3"]
    assert fit.to_dict()["solver"] is fit.solver
    assert out.options == {"layer": "conv2", "solver": "lbfgs", "C": "auto"}
    stepped = train_with(get_strategy("linear_probe", solver="sgd"), source, 3, data, val, cfg)
    assert stepped.fit.solver is None and stepped.fit.epochs_run == 7 and "solver" not in stepped.fit.to_dict()


def test_strategy_refuses_nan_features_naming_the_data(source):
    bad = TensorBatches(torch.full((6, 1, 28, 28), float("nan")), torch.arange(6) % 2, key="abc123")
    cfg = TrainConfig(progress=False, checkpoints=False)
    with pytest.raises(ValueError, match=r"the training features \(seed_cnn at layer conv2; data abc123\): 9600 NaN"):
        train_with(get_strategy("linear_probe"), source, 2, bad, None, cfg)


def test_a_fusion_layer_with_projections_is_refused_with_the_fix():
    from transferkit.backbones import create_backbone
    from transferkit.backbones.fused import FeatureFusionBackbone

    torch.manual_seed(0)
    fused = FeatureFusionBackbone([create_backbone("seed_cnn"), create_backbone("lenet")], "sum", 8)
    x = TensorBatches(torch.zeros(4, 1, 28, 28), torch.arange(4) % 2)
    with pytest.raises(ValueError, match="trainable layers before its classifier.*option solver=sgd"):
        train_with(get_strategy("linear_probe"), fused, 2, x, None, TrainConfig(progress=False, checkpoints=False))


@pytest.mark.filterwarnings("ignore:.*have one example")  # a class of 1 example in a task: said, tested above
def test_multitask_heads_are_solved_per_task_on_their_labelled_rows(source, data):
    n = len(data)
    y = torch.full((n, 2), -1, dtype=torch.long)
    y[: n // 2 + 4, 0] = data.y[: n // 2 + 4]  # task a: 3 classes, the first rows
    y[n // 2 - 4:, 1] = data.y[n // 2 - 4:] % 2  # task b: 2 classes, the last rows (some rows have both)
    mt = TensorBatches(data.x, y)
    cfg = TrainConfig(progress=False, checkpoints=False)
    out = train_multitask(get_strategy("linear_probe"), source, [slice(0, 3), slice(3, 5)], ["a", "b"], mt, mt, cfg,
                          FixedWeighting(2))
    assert set(out.fit.solver["tasks"]) == {"a", "b"} and out.fit.epochs_run == 0
    assert {"val_loss_a", "val_acc_b", "val_loss", "val_acc"} <= set(out.fit.history[0])
    probe = train_with(get_strategy("linear_probe"), source, 3, TensorBatches(data.x[y[:, 0] >= 0], y[y[:, 0] >= 0, 0]),
                       None, cfg)  # task a alone: the same head block
    torch.testing.assert_close(out.model.head.weight[:3], probe.model.head.weight)


def test_transfer_writes_the_choice_and_predict_and_export_work_unchanged(tmp_path):
    from PIL import Image

    src = tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=tmp_path / "src",
                      progress=False)
    res = tk.transfer(src.run_dir, data="digits", classes="5-9", labels_per_class=6, strategy="linear_probe",
                      seed=100, out=tmp_path / "lp", progress=False)
    m = json.loads((tmp_path / "lp" / "metrics.json").read_text())
    assert m["accuracy"] == res.metrics["accuracy"]
    solver = m["fit"]["solver"]
    assert solver["C"] in solver["grid"] and solver["folds"] == 5 and solver["fallback"] is None
    assert m["options"]["solver"] == "lbfgs" and m["accuracy"] > 0.5  # 5 classes: chance 0.2
    report = (tmp_path / "lp" / "report.md").read_text()
    assert f"C = {solver['C']:.3g}" in report and "cross-validation (C: held-out log-loss / accuracy)" in report
    assert not (tmp_path / "lp" / "learning_curves.png").exists()
    ev = tk.evaluate(tmp_path / "lp", "digits", classes="5-9")
    assert ev["accuracy"] == pytest.approx(m["accuracy"], abs=1e-6)
    test = tk.get_dataset("digits", "test")
    paths = []
    for i in np.flatnonzero(test.labels >= 5)[:4]:
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i]).save(paths[-1])
    preds = tk.predict(tmp_path / "lp", paths, progress=False)
    assert len(preds) == 4 and all(p["predicted_class"] in {"5", "6", "7", "8", "9"} for p in preds)
    exported = tk.export(tmp_path / "lp", format="torchscript")
    assert exported["path"].endswith("model.pt")
