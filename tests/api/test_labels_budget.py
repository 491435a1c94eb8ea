"""Issue 26: ``--labels-per-class K`` is the whole labelled budget, runs record which labels trained the final model
and how selection was done, and a model at chance level is flagged "did not learn" and never ranked."""

import importlib
import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.cli.main import main
from transferkit.data.job_task import load_task
from transferkit.data.splits import k_per_class
from transferkit.report.metrics import comparison_sentence, did_not_learn, majority_rate

grid_mod = importlib.import_module("transferkit.api.grid")
train_mod = importlib.import_module("transferkit.api.train_run")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("budget") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)


def _collapsed(real):
    """``train`` whose model then predicts one class for everything (every parameter zero: equal logits)."""
    def run(*args, **kwargs):
        trained = real(*args, **kwargs)
        for p in trained.model.parameters():
            p.data.zero_()
        return trained
    return run


def test_transfer_with_k3_trains_on_exactly_those_labels_and_says_how(source, tmp_path, single_thread):
    res = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=3, strategy="finetune",
                      epochs=2, seed=1, out=tmp_path / "ft", progress=False)
    m = res.metrics
    assert m["n_train"] == 9 and m["n_val"] == 0 and m["validation"] is None and m["split"] == "test"
    labels = m["labels"]
    expected = k_per_class(load_task("digits", "train", "5-7"), 3, seed=1)  # the plain 3-shot draw, nothing else
    assert labels["indices"] == expected.tolist() and labels["train_final_model"] == 9
    assert labels["per_class"] == 3 and labels["budget_per_class"] == 3 and labels["validation"] == 0
    assert labels["selection"].startswith("no selection (fixed recipe)")
    saved = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert saved["labels"] == labels and saved["validation"] is None
    report = (tmp_path / "ft" / "report.md").read_text()
    assert "all 3 labelled examples per class (9 in total)" in report and "budget 3 per class in total" in report
    assert "best epoch" not in report and "Early stopping" not in report and "nothing was selected" in report
    assert res.meta["lineage"]["labels_rule"] == "k-total"


def test_val_per_class_adds_a_separate_validation_set_and_says_k_plus_v(source, tmp_path, single_thread):
    m = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=3, val_per_class=2,
                    strategy="finetune", epochs=2, out=tmp_path / "v", progress=False).metrics
    assert m["n_train"] == 9 and m["n_val"] == 6 and m["validation"]["n"] == 6
    assert m["labels"]["budget_per_class"] == 5 and "validation set (6 examples)" in m["labels"]["selection"]
    assert not set(m["labels"]["indices"]) & set(k_per_class(load_task("digits", "train", "5-7"), 2, 0 + 7919))
    assert "budget 3 + 2 per class" in (tmp_path / "v" / "report.md").read_text()


def test_probe_cross_validates_c_on_the_k_labels_and_k1_records_no_selection(source, tmp_path, single_thread):
    m = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=4, strategy="linear_probe",
                    out=tmp_path / "p4", progress=False).metrics
    assert "cross-validation" in m["labels"]["selection"] and m["labels"]["selection_estimate"]["accuracy"] >= 0
    assert "held-out estimate (selection)" in (tmp_path / "p4" / "report.md").read_text()
    with pytest.warns(UserWarning, match="no cross-validation"):
        one = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=1, strategy="linear_probe",
                          out=tmp_path / "p1", progress=False).metrics
    assert one["n_train"] == 3 and one["labels"]["selection"].startswith("no selection")
    assert "selection_estimate" not in one["labels"]
    assert "| selection | no selection" in (tmp_path / "p1" / "report.md").read_text()


def test_k_larger_than_a_class_is_an_error_naming_it(source, tmp_path):
    with pytest.raises(ValueError, match=r"labels_per_class: expected at most \d+, got 500; class 0 \('5'\) of digits"):
        tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=500, out=tmp_path / "x",
                    progress=False)


def test_did_not_learn_is_a_binomial_test_against_the_majority_rate():
    assert did_not_learn(0.34, 300, 1 / 3) and not did_not_learn(0.9, 300, 1 / 3)
    assert did_not_learn(0.7, 10, 0.5)  # 7 of 10 against 0.5: p ≈ 0.17, not evidence
    assert did_not_learn(0.7, 100, 0.7)  # all on the majority class of a 70/30 test set
    assert did_not_learn(float("nan"), 0, 0.5) and not did_not_learn(0.8, 100, 0.5)
    assert majority_rate([0, 0, 1]) == pytest.approx(2 / 3) and majority_rate([[3, 1], [0, 1]]) == pytest.approx(0.8)
    assert comparison_sentence("finetune", "scratch", 0.4, 0.01, 3, False, True) == \
        "finetune vs scratch: not compared — scratch did not learn"
    assert comparison_sentence("finetune", "scratch", 0.4, 0.01, 3, False, False) == "finetune beats scratch"


def test_compare_with_a_chance_level_baseline_flags_it_and_claims_no_win(source, tmp_path, monkeypatch, capsys):
    real = grid_mod.train
    monkeypatch.setattr(grid_mod, "train", lambda s, *a, **k: (_collapsed(real) if s.name == "scratch" else real)(
        s, *a, **k))
    out = tmp_path / "cmp"
    assert main(["compare", "--source", str(source.run_dir), "--data", "digits", "--classes", "5-7",
                 "--strategies", "scratch,linear_probe", "--labels-per-class", "4", "--seeds", "2", "--epochs", "1",
                 "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long cells and lines
    saved = json.loads((out / "metrics.json").read_text())
    rows = {r["strategy"]: r for r in saved["summary"]}
    assert rows["scratch"]["did_not_learn"] and not rows["linear_probe"]["did_not_learn"]
    assert saved["findings"] == ["4 labels/class: linear_probe vs scratch: not compared — scratch did not learn "
                                 + saved["findings"][0].split("did not learn ", 1)[1]]
    report = (out / "report.md").read_text()
    assert "(did not learn) |" in report  # the scratch row of the table
    assert "not compared — scratch did not learn" in printed
    assert not any(w in f for f in saved["findings"] for w in ("beats", "loses to", "within one std"))
    assert "K labelled training-split images per class in total" in report
    assert all(c["n_val"] == 0 and c["n_train"] == 12 for c in saved["cells"])


def test_run_report_flags_a_model_at_chance(source, tmp_path, monkeypatch, single_thread):
    monkeypatch.setattr(train_mod, "train", _collapsed(train_mod.train))
    m = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=2, strategy="finetune", epochs=1,
                    out=tmp_path / "dead", progress=False).metrics
    assert m["did_not_learn"] and np.isclose(m["accuracy"], max(np.sum(m["confusion_matrix"], 1)) / m["n"])
    assert "**Did not learn**" in (tmp_path / "dead" / "report.md").read_text()


def test_cv_folds_train_on_their_part_of_the_k_labels_without_validation(source, tmp_path, single_thread):
    res = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=4, cv=2, strategy="finetune",
                      epochs=1, out=tmp_path / "cv", progress=False)
    m = res.metrics
    assert m["n_pool"] == 12 and all(f["n_val"] == 0 and f["n_train"] == 6 and f["n_eval"] == 6 for f in m["folds"])
    assert m["labels"]["per_class"] == 4 and m["labels"]["budget_per_class"] == 4 and len(m["labels"]["indices"]) == 12
    assert "no selection (fixed recipe)" in m["labels"]["selection"]
    report = (tmp_path / "cv" / "report.md").read_text()
    assert "Validation: none" in report and "- (fixed recipe)" in report
