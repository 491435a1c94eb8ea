"""``transfer(cv=K)``: stratified K-fold cross-validation on the labelled training set (digits, seed_cnn)."""

import importlib
import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.data.cv_folds import check_cv, cv_folds
from transferkit.data.job_task import load_task

cv_mod = importlib.import_module("transferkit.api.cv")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("cv") / "src"
    return tk.pretrain(data="digits", classes="0-4", backbone="seed_cnn", epochs=1, seed=0, out=out, progress=False)


def _check_partition(folds, labels):
    everything = np.arange(len(labels))
    evals = [f.eval for f in folds]
    assert np.array_equal(np.sort(np.concatenate(evals)), everything)  # held-out folds cover the pool once
    for f in folds:
        assert not set(f.val) & set(f.eval) and not set(f.train) & set(f.eval) and not set(f.train) & set(f.val)
        assert np.array_equal(np.sort(np.concatenate([f.train, f.val, f.eval])), everything)
        assert set(labels[f.train]) == set(labels)  # every class trains in every fold


def test_folds_are_stratified_disjoint_and_validation_comes_from_the_training_part():
    labels = np.repeat([0, 1, 2], [10, 10, 7])
    folds = cv_folds(labels, 5, seed=3)
    assert len(folds) == 5
    _check_partition(folds, labels)
    for f in folds:
        assert np.bincount(labels[f.eval], minlength=3).min() >= 1  # stratified: every class held out
        assert set(labels[f.val]) == {0, 1, 2}  # at least one validation image per class
    # seeded: same seed → same folds, other seed → other folds
    assert all(np.array_equal(a.eval, b.eval) for a, b in zip(folds, cv_folds(labels, 5, seed=3), strict=True))
    assert not all(np.array_equal(a.eval, b.eval) for a, b in zip(folds, cv_folds(labels, 5, seed=4), strict=True))
    fixed = cv_folds(labels, 3, seed=0, val_per_class=2)
    assert all(np.array_equal(np.bincount(labels[f.val]), [2, 2, 2]) for f in fixed)
    with pytest.raises(ValueError, match=r"val_per_class: expected at most 3, got 5; fold 1 of cv 3 has only 4"):
        cv_folds(np.repeat([0, 1], [6, 6]), 3, seed=0, val_per_class=5)


def test_bad_k_names_cv_the_value_and_the_limit():
    labels, classes = np.repeat([0, 1], [6, 4]), ["a", "b"]
    for k in (1, 0, -2, True, 2.5):
        with pytest.raises(ValueError, match=r"^cv: expected at least 2 folds"):
            check_cv(k, labels, classes)
    with pytest.raises(ValueError, match=r"cv: expected at most 4 folds, got 5; .*class 'b' has 4\); use 2 to 4 folds"):
        check_cv(5, labels, classes)
    check_cv(4, labels, classes)


def test_bad_k_fails_before_anything_loads_or_trains(source, tmp_path, monkeypatch):
    monkeypatch.setattr(cv_mod, "train", lambda *a, **k: pytest.fail("trained despite a bad --cv"))
    with pytest.raises(ValueError, match=r"^cv: expected at least 2 folds .*got 1"):
        tk.transfer("no-such-source", data="digits", cv=1, out=tmp_path / "x")
    with pytest.raises(ValueError, match=r"cv: expected at most 4 folds, got 5; .*has 4\); use 2 to 4 folds"):
        tk.transfer("no-such-source", data="digits", classes="5-7", labels_per_class=4, cv=5, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_transfer_cv_scores_every_fold_without_the_test_split(source, tmp_path, monkeypatch):
    splits, trained = [], []
    real_load, real_train = cv_mod.load_task, cv_mod.train
    monkeypatch.setattr(cv_mod, "load_task", lambda data, split, *a, **k: (splits.append(split),
                                                                           real_load(data, split, *a, **k))[1])
    monkeypatch.setattr(cv_mod, "train", lambda *a, **k: (trained.append(len(a[3])), real_train(*a, **k))[1])
    out = tmp_path / "cv"
    res = tk.transfer(source.run_dir, data="digits", classes="5-7", labels_per_class=6, cv=3, strategy="linear_probe",
                      epochs=2, out=out, progress=False)
    assert splits == ["train"]  # the test split is never read
    m = res.metrics
    assert m["cv"] == 3 and len(m["folds"]) == 3 and m["n_pool"] == 18 and m["test_split_used"] is False
    accs = [f["accuracy"] for f in m["folds"]]
    assert m["accuracy"] == pytest.approx(np.mean(accs)) and m["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert m["macro_f1"] == pytest.approx(np.mean([f["macro_f1"] for f in m["folds"]]))
    assert [f["n_eval"] for f in m["folds"]] == [6, 6, 6] and trained == [f["n_train"] for f in m["folds"]]
    assert m["out_of_fold"]["n"] == 18 and np.array(m["out_of_fold"]["confusion_matrix"]).sum() == 18
    # fold indices are positions in the training split: held-out folds partition the labelled pool
    folds = json.loads((out / "folds.json").read_text())["folds"]
    pool = json.loads((out / "folds.json").read_text())["pool"]
    assert sorted(i for f in folds for i in f["eval"]) == sorted(pool) and len(pool) == 18
    for f in folds:
        assert not set(f["val"]) & set(f["eval"]) and not set(f["train"]) & set(f["eval"])
        assert set(f["train"]) | set(f["val"]) | set(f["eval"]) == set(pool)
    labels = load_task("digits", "train", "5-7").labels  # positions in the task's training split (after classes)
    assert np.array_equal(np.bincount(labels[pool]), [6, 6, 6])
    assert res.model is None and not (out / "bundle").exists()
    assert {"config.yaml", "metrics.json", "report.md", "folds.json", "folds.png"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "test split was not used" in report and "No bundle was written" in report and "mean ± std" in report


def test_an_interrupted_cv_keeps_its_finished_folds_and_a_rerun_reuses_them(source, tmp_path, monkeypatch):
    real, calls = cv_mod.train, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cv_mod, "train", interrupted)
    out = tmp_path / "cv"
    kw = dict(data="digits", classes="5-7", labels_per_class=6, cv=3, strategy="linear_probe", out=out,
              progress=False)
    with pytest.raises(KeyboardInterrupt):
        tk.transfer(source.run_dir, **kw)
    work = tmp_path / ".cv.work"
    assert not out.exists() and sorted(p.name for p in work.glob("fold-*.json")) == ["fold-1.json", "fold-2.json"]
    assert (work / "config.yaml").is_file()  # written before the first fold trained
    calls.clear()
    res = tk.transfer(source.run_dir, **kw)
    assert len(calls) == 1 and len(res.metrics["folds"]) == 3  # only the unfinished fold trained
    assert not work.exists() and (out / "metrics.json").is_file()  # the finished job cleans its work up
    monkeypatch.setattr(cv_mod, "train", real)
    again = tk.transfer(source.run_dir, **{**kw, "out": tmp_path / "cv2"}).metrics  # reused = computed afresh
    assert [f["accuracy"] for f in again["folds"]] == [f["accuracy"] for f in res.metrics["folds"]]
