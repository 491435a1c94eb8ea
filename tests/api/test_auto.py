"""``auto``: budget parsing, refusals, an end-to-end search within a small budget, and an interrupted search."""

import json

import pytest
from rich.console import Console

import transferkit as tk
from transferkit.api import auto_stages, auto_trials
from transferkit.api.auto_job import parse_budget
from transferkit.errors import ConfigError
from transferkit.tuning.auto_plan import Clock, first_rung
from transferkit.tuning.halving import Config, fit_rung


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1.5h", 5400), (30, 30), ("45", 45)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "0s", "-5m", "5d"])
def test_bad_budget_is_refused(bad):
    with pytest.raises(ValueError, match="^budget: expected a"):
        parse_budget(bad)


@pytest.fixture(scope="module")
def source(tmp_path_factory, fashion_npz):
    out = tmp_path_factory.mktemp("auto") / "src"
    tk.pretrain(data=f"npz:{fashion_npz}", classes="0,1,5,8,9", epochs=2, out=out, progress=False)
    return out


def test_too_few_examples_for_validation_suggests_cv(fashion_npz, tmp_path):
    with pytest.raises(ValueError, match=r"at least 200 .*cv=5"):  # a separate validation set: K + V per class
        tk.auto(f"npz:{fashion_npz}", candidates="random:seed_cnn", labels_per_class=100, val_per_class=100,
                budget="1m", out=tmp_path / "a")
    # K is the budget
    with pytest.raises(ValueError, match=r"labels_per_class: expected at most \d+, got 10000; class 0 .* has only"):
        tk.auto(f"npz:{fashion_npz}", candidates="random:seed_cnn", labels_per_class=10000, budget="1m",
                out=tmp_path / "a")
    assert not (tmp_path / "a").exists()  # refused before anything was written


def test_refusals_name_the_parameter(fashion_npz, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^val_per_class: expected ≥ 1, got 0; auto chooses on a separate") as exc:
        tk.auto(f"npz:{fashion_npz}", candidates="random:seed_cnn", labels_per_class=5, val_per_class=0,
                budget="1m", out=tmp_path / "a")
    assert exc.value.as_flag().startswith("--val-per-class: expected ≥ 1, got 0")
    monkeypatch.setattr("transferkit.tuning.auto_plan.list_backbones", lambda: [])  # no pretrained backbone here
    with pytest.raises(ConfigError, match=r"^candidates: expected one or more candidate sources .*got None; none "
                                          r"was given and no pretrained image backbone is installed") as exc:
        tk.auto(f"npz:{fashion_npz}", labels_per_class=5, budget="1m", out=tmp_path / "a")
    assert exc.value.as_flag().startswith("--candidates: expected")
    assert not (tmp_path / "a").exists()


def test_auto_search_within_budget(fashion_npz, source, tmp_path, single_thread):
    budget = 60
    res = tk.auto(f"npz:{fashion_npz}", candidates=[str(source), "random:seed_cnn"], classes="2,3,4,6,7",
                  labels_per_class=10, budget=budget, keep=2, finalists=1, out=tmp_path / "auto")
    m = res.metrics
    assert res.model is not None and res.model.num_classes == 5
    assert m["wall_s"] <= budget * 1.25  # the budget holds (the benchmark measures it precisely)
    assert [r["candidate"] for r in m["ranking"]] and len(m["ranking"]) == 2
    assert len(m["probes"]) == 2 and all("val_accuracy" in p for p in m["probes"])
    assert any(c["rungs"] for c in m["configs"])
    assert all(c["stopped"] for c in m["configs"])  # every configuration says why it stopped
    # 50 labelled images at batch 32 = two optimiser steps per epoch: rung 1 is 5 epochs (--first-steps 10)
    assert (m["first_rung"]["epochs"], m["first_rung"]["steps_per_epoch"]) == (5, 2)
    assert all(r["epochs"] == 5 for c in m["configs"] for r in c["rungs"][:1])
    # K = 10 is the whole budget: an inner split chooses, the winner is refit on all 50 labelled images
    lab = m["labels"]
    fit, sel = lab["inner_split"]["fit"], lab["inner_split"]["selection"]
    assert (len(fit), len(sel)) == (40, 10) and not set(fit) & set(sel)
    assert m["refit"]["done"] and lab["train_final_model"] == 50 and lab["indices"] == sorted(fit + sel)
    assert lab["budget_per_class"] == 10 and lab["validation"] == 0 and "refit on all K" in lab["selection"]
    assert all(p["n_train"] == 40 for p in m["probes"])  # every probe and trial trained on the fit part only
    refit = json.loads((tmp_path / "auto" / "final_refit" / "metrics.json").read_text())
    assert refit["n_train"] == 50 and refit["labels"]["indices"] == lab["indices"]
    for c in m["configs"]:  # the last one standing trains with early stopping
        if c["stopped"].startswith("last one standing"):
            assert c["rungs"][-1]["early_stopping"] and len(c["rungs"]) > 1
    chosen = m["chosen"]
    assert chosen["val_accuracy"] == max([p["val_accuracy"] for p in m["probes"]]
                                         + [c["best_val_accuracy"] for c in m["configs"] if c["rungs"]])
    assert m["test"]["n"] == 200 and 0.2 < m["test"]["accuracy"] <= 1  # five classes: above chance
    out = tmp_path / "auto"
    meta = json.loads((out / "bundle" / "transferkit.json").read_text())
    assert meta["classes"] == ["Pullover", "Dress", "Coat", "Shirt", "Sneaker"]
    assert not list(out.rglob("*.ckpt"))  # trials are never resumed: their Lightning checkpoints are removed
    report = (out / "report.md").read_text()
    for section in ("Stage 1", "Stage 2", "Stage 3", "Rung 1: 5 epochs", "why it stopped", "test accuracy"):
        assert section in report
    with pytest.raises(ValueError, match="overwrite=True"):
        tk.auto(f"npz:{fashion_npz}", candidates=str(source), labels_per_class=10, budget=10, out=out)


def test_interrupted_search_keeps_the_best_bundle(fashion_npz, source, tmp_path, monkeypatch, single_thread):
    real = auto_stages.transfer  # every run of the stages goes through api/auto_stages or api/auto_trials
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if kwargs.get("strategy") != "linear_probe":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(auto_stages, "transfer", flaky)
    monkeypatch.setattr(auto_trials, "transfer", flaky)
    with pytest.raises(KeyboardInterrupt):
        tk.auto(f"npz:{fashion_npz}", candidates=str(source), classes="2,3,4,6,7", labels_per_class=10,
                budget=120, out=tmp_path / "auto")
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert m["interrupted"] and m["test"] is None and m["chosen"] is not None
    assert (tmp_path / "auto" / "bundle" / "model.safetensors").is_file()
    assert "interrupted" in (tmp_path / "auto" / "report.md").read_text()


def test_one_label_per_class_means_no_selection_the_top_source_default_finetune(fashion_npz, source, tmp_path,
                                                                                single_thread):
    m = tk.auto(f"npz:{fashion_npz}", candidates=[str(source), "random:seed_cnn"], classes="2,3,4,6,7",
                labels_per_class=1, budget=30, out=tmp_path / "k1").metrics
    assert m["chosen"]["stage"] == "default" and m["chosen"]["source"] == m["ranking"][0]["candidate"]
    assert m["probes"] == [] and m["configs"] == [] and m["labels"]["selection"].startswith("no selection")
    assert m["labels"]["train_final_model"] == 5 and m["test"]["n"] > 0
    assert "no other choice was possible" in (tmp_path / "k1" / "report.md").read_text()


def test_tight_budget_cuts_runs_and_says_so(fashion_npz, source, tmp_path, single_thread):
    budget = 20
    m = tk.auto(f"npz:{fashion_npz}", candidates=str(source), classes="2,3,4,6,7", labels_per_class=10,
                budget=budget, first_epochs=200, out=tmp_path / "auto").metrics
    assert m["wall_s"] <= budget * 1.25
    reasons = [c["stopped"] for c in m["configs"]]
    assert any(r.startswith("budget") for r in reasons), reasons
    assert m["chosen"] is not None and (tmp_path / "auto" / "bundle").is_dir()


def test_auto_on_text_without_a_label_budget(topics_dir, tmp_path, single_thread):
    res = tk.auto(f"text:{topics_dir}", candidates="minilm", budget=30, val_fraction=0.25, finalists=1,
                  max_length=24, out=tmp_path / "txt")
    m = res.metrics
    assert m["wall_s"] <= 30 * 1.25
    assert [r["candidate"] for r in m["ranking"]] == ["minilm"]
    assert m["probes"][0]["val_accuracy"] > 0.5 and m["test"]["n"] == 24
    assert (tmp_path / "txt" / "bundle" / "tokenizer.json").is_file()
    assert res.model.input_spec.extra["max_length"] == 24  # --max-length reached the chosen model


def test_max_length_on_image_data_is_refused_before_anything_is_written(fashion_npz, tmp_path):
    with pytest.raises(ValueError, match=r"max_length: expected text data, got 32; .* holds image"):
        tk.auto(f"npz:{fashion_npz}", candidates="random:seed_cnn", labels_per_class=5, max_length=32,
                out=tmp_path / "a")
    with pytest.raises(ValueError, match=r"max_length: expected text data, got 32"):
        tk.select(["random:seed_cnn"], f"npz:{fashion_npz}", max_length=32, out=tmp_path / "s")
    assert not (tmp_path / "a").exists() and not (tmp_path / "s").exists()


def _cfg(strategy: str = "finetune", seconds_per_epoch: float | None = None) -> Config:
    cfg = Config("src", strategy, strategy, {})
    if seconds_per_epoch is not None:
        cfg.rungs.append({"epochs_run": 4, "train_time_s": 4 * seconds_per_epoch, "val_accuracy": 0.5})
    return cfg


@pytest.mark.parametrize(("n_train", "first_epochs", "epochs", "steps"), [
    (32, None, 10, 1),     # AG News at 8 labels per class: one step per epoch → 10 epochs for 10 steps
    (100, None, 3, 4),     # Fashion-MNIST at 10 per class, batch 32: 4 steps per epoch
    (5000, None, 2, 157),  # plenty of data: never fewer than 2 epochs
    (32, 3, 3, 1),         # --first-epochs wins when given
])
def test_first_rung_is_sized_in_optimiser_steps(n_train, first_epochs, epochs, steps):
    rung = first_rung([_cfg("finetune"), _cfg("lora")], n_train, first_epochs, first_steps=10)
    assert (rung["epochs"], rung["steps_per_epoch"], rung["batch_size"]) == (epochs, steps, 32)


def test_a_rung_that_does_not_fit_is_shortened_then_thinned():
    a, b = _cfg(seconds_per_epoch=1.0), _cfg(seconds_per_epoch=2.0)  # best-ranked first
    assert fit_rung([a, b], 30, 10, left=100.0) == ([a, b], 30)  # 90 s: fits as planned
    assert fit_rung([a, b], 30, 10, left=60.0) == ([a, b], 20)   # shortened, still longer than before
    assert fit_rung([a, b], 30, 10, left=25.0) == ([a], 25)      # b would get < 10 epochs: dropped
    assert fit_rung([a, b], 30, 10, left=9.0) == ([], 0)         # nobody can train longer than before
    a.rungs[-1]["wall_s"] = a.rungs[-1]["train_time_s"] + 15.0  # 15 s per run outside training (model, data, bundle)
    assert fit_rung([a], 30, 10, left=40.0) == ([a], 25)
    assert fit_rung([a], 30, 10, left=24.0) == ([], 0)
    assert (a.cost_s(10), a.cost_s(10, per_epoch=2.0), b.cost_s(0)) == (25.0, 35.0, 0.0)


def test_inference_cost_separates_the_fixed_part(fashion_npz):
    from transferkit.data.job_task import load_task

    full = load_task(f"npz:{fashion_npz}", "train", None, False)
    costs = auto_trials.inference_cost(["random:seed_cnn"], full, {"image_size": None, "max_length": None}, seed=0)
    fixed, per_item = costs["random:seed_cnn"]
    assert fixed >= 0 and 0 < per_item < 0.05  # a small CNN on 28 px images: well under 50 ms per image
    tiny = full.subset(list(range(10)))  # fewer examples than either timing sample
    assert auto_trials.inference_cost(["random:seed_cnn"], tiny, {"image_size": None, "max_length": None},
                                      seed=0)["random:seed_cnn"][1] > 0


def test_a_cheap_refit_is_not_skipped_for_the_test_reserve_floor(tmp_path, monkeypatch):
    """The test evaluation's reserve has a floor (4 % of the budget) to keep the halving's deadline still; the refit
    is weighed against the test's predicted cost instead, so a 1-s probe refit runs with seconds left."""
    from pathlib import Path

    import numpy as np

    calls = []

    def fake_transfer(source, out, **kwargs):
        calls.append(out)
        (Path(out) / "bundle").mkdir(parents=True)
        (Path(out) / "bundle" / "transferkit.json").write_text("{}")

    monkeypatch.setattr(auto_trials, "transfer", fake_transfer)
    clock = Clock(600.0)
    clock.start -= 590.0  # 10 s of the budget left
    split = (np.arange(80), np.arange(80, 100))
    state = {"best": {"name": "x · linear_probe", "source": "x", "strategy": "linear_probe", "options": {}},
             "best_run": {"fit": {"solver": "lbfgs", "epochs_run": 0}, "train_time_s": 0.5, "total_time_s": 1.0},
             "test_reserve_s": 24.0, "test_predicted_s": 3.0}
    common = {"split_indices": split, "seed": 0}
    auto_trials.refit(state, tmp_path, clock, common, {"image_size": None, "max_length": None}, 1, 10,
                      Console(quiet=True), lambda *a: None)
    assert state["refit"]["done"] and len(calls) == 1
    state["test_predicted_s"] = 9.9  # now the refit (≈1.1 s) no longer fits: the selection-run model is kept
    auto_trials.refit(state, tmp_path / "again", clock, common, {"image_size": None, "max_length": None}, 1, 10,
                      Console(quiet=True), lambda *a: None)
    assert not state["refit"]["done"] and "were left" in state["refit"]["why"] and len(calls) == 1
