"""The adapt job on small real data: outputs, honesty (no target labels), bundles, comparison, bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from transferkit import api
from transferkit.bundle import load_bundle
from transferkit.cli.main import main
from transferkit.data import get_dataset
from transferkit.engine import adapt as engine_adapt

from ..conftest import requires_fashion

SMALL = {"source": "fashion_mnist", "target": "fashion_mnist_inv", "classes": "0,1,7", "source_per_class": 40,
         "target_limit": 200, "target_val": 60, "test_limit": 150, "epochs": 2, "batch_size": 32, "bottleneck": 32,
         "progress": False}


@requires_fashion
def test_adapt_run_writes_everything_and_never_shows_target_labels(tmp_path, monkeypatch):
    seen = {}
    real = engine_adapt.fit_adapt

    def spy(net, method, groups, source, target, val_sets, *args, **kwargs):
        seen["target_y"] = target.y
        seen["val_y"] = [v.y is None for v in val_sets]
        return real(net, method, groups, source, target, val_sets, *args, **kwargs)

    monkeypatch.setattr("transferkit.api.adapt_job.fit_adapt", spy)
    res = api.adapt(method="dann", out=tmp_path / "run", **SMALL)
    assert seen["target_y"] is None and seen["val_y"] == [False, True, True]  # source val labelled; target not
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["method"] == "dann" and m["selection"] == "source_val" and not m["oracle_selection"]
    assert set(m["by_criterion"]) == {"source_val", "target_entropy", "dev"}
    assert 0 <= m["target_accuracy"] <= 1 and m["n_target_test"] == 150 and m["n_target_val"] == 60
    assert set(m["diagnostics"]) == {"before", "after"} and 0 <= m["diagnostics"]["after"]["proxy_a_distance"] <= 2
    for f in ("report.md", "config.yaml", "learning_curves.png", "confusion_matrix.png", "tsne_before.png",
              "tsne_after.png"):
        assert (tmp_path / "run" / f).is_file(), f
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Target labels were never used" in report and "proxy_a_distance" in report
    # the bundle holds the selected checkpoint, with its bottleneck head, and predicts like the run said
    model, meta = load_bundle(tmp_path / "run")
    assert meta["lineage"]["method"] == "dann" and model.head_hidden == 32
    assert meta["metrics"]["accuracy"] == pytest.approx(m["target_accuracy"])
    assert res.model is not None


@requires_fashion
def test_oracle_selection_and_target_oracle_are_labelled_as_such(tmp_path):
    api.adapt(method="coral", oracle_selection=True, out=tmp_path / "o", diagnostics=False, plots=False, **SMALL)
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["selection"] == "oracle" and m["by_criterion"]["oracle"]["uses_target_labels"] is True
    assert "ORACLE" in (tmp_path / "o" / "report.md").read_text()
    api.adapt(method="target_oracle", out=tmp_path / "t", diagnostics=False, plots=False, **SMALL)
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["reference"] is True and "UPPER REFERENCE" in (tmp_path / "t" / "report.md").read_text()


@requires_fashion
def test_adabn_changes_only_batchnorm_statistics(tmp_path):
    a = api.adapt(method="source_only", out=tmp_path / "s", diagnostics=False, plots=False, **SMALL)
    b = api.adapt(method="adabn", out=tmp_path / "a", diagnostics=False, plots=False, **SMALL)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    differs = {k for k in sa if not np.allclose(sa[k].numpy(), sb[k].numpy())}
    assert differs and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in differs)
    assert b.metrics["adabn"]["applied"] is True


@requires_fashion
def test_frozen_features_adapt_only_the_head(tmp_path):
    src = api.pretrain(data="fashion_mnist", classes="0,1,7", steps=30, out=tmp_path / "src", progress=False)
    res = api.adapt(method="dan", backbone=str(src.run_dir), frozen=True, out=tmp_path / "f", diagnostics=False,
                    plots=False, **SMALL)
    before, after = src.model.state_dict(), res.model.state_dict()
    body = [k for k in after if not k.startswith("head.")]
    assert body and all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in body)
    assert res.metrics["frozen"] is True and res.metrics["backbone"].startswith("bundle:")


@requires_fashion
def test_comparison_table_gap_closed_and_resume(tmp_path):
    kw = {**SMALL, "diagnostics": True}
    out = tmp_path / "cmp"
    first = api.adapt_compare(["source_only", "coral", "target_oracle"], seeds=[0, 1], out=out, **kw)
    summary = {r["method"]: r for r in first.metrics["summary"]}
    assert summary["source_only"]["gap_closed"] == pytest.approx(0.0)
    assert summary["target_oracle"]["gap_closed"] == pytest.approx(1.0) and summary["target_oracle"]["reference"]
    report = (out / "report.md").read_text()
    assert "upper reference" in report and "gap closed" in report and (out / "adaptation.png").is_file()
    again = api.adapt_compare(["source_only", "coral", "target_oracle"], seeds=[0, 1], out=out, **kw)
    assert json.loads((out / "metrics.json").read_text())["cells_reused"] == 6
    assert again.metrics["summary"] == first.metrics["summary"]


@requires_fashion
def test_bad_input_is_refused_with_the_names_and_choices(tmp_path):
    with pytest.raises(ValueError, match=r"different classes: source \['T-shirt/top'.*target \['0', '1'"):
        api.adapt(source="fashion_mnist", target="digits", out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"a/train has images of size \(28, 28\) but target .*b/train has \(20, 20\)"
                                         r".*resize=True"):
        _mismatched_sizes(tmp_path)
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        api.adapt(**{**SMALL, "target_limit": 20, "batch_size": 64}, out=tmp_path / "x")
    with pytest.raises(ValueError, match="peeks at target labels.*oracle_selection=True"):
        api.adapt(**SMALL, selection="oracle", out=tmp_path / "x")
    with pytest.raises(ValueError, match="unknown selection criterion 'best'; valid selection criteria: source_val"):
        api.adapt(**SMALL, selection="best", out=tmp_path / "x")
    with pytest.raises(ValueError, match="frozen=True .* pretrained=True"):
        api.adapt(**SMALL, frozen=True, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _mismatched_sizes(tmp_path):
    """Two image folders with the same classes and different image sizes."""
    for name, size in (("a", 28), ("b", 20)):
        for split in ("train", "test"):
            for c in ("cat", "dog"):
                d = tmp_path / name / split / c
                d.mkdir(parents=True)
                for i in range(3):
                    Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(d / f"{i}.png")
    api.adapt(source=f"image_folder:{tmp_path / 'a'}", target=f"image_folder:{tmp_path / 'b'}",
              out=tmp_path / "x", progress=False)


@requires_fashion
def test_two_image_folders_adapt_after_resize(tmp_path):
    fm = get_dataset("fashion_mnist", "train")
    rng = np.random.default_rng(0)
    for name, size, invert in (("src", 28, False), ("tgt", 24, True)):
        for split in ("train", "test"):
            for c in (0, 1):
                d = tmp_path / name / split / fm.classes[c].replace("/", "-")
                d.mkdir(parents=True)
                for i in rng.choice(np.flatnonzero(fm.labels == c), 40, replace=False):
                    img = Image.fromarray(255 - fm.images[i] if invert else fm.images[i]).resize((size, size))
                    img.save(d / f"{i}.png")
    res = api.adapt(source=f"image_folder:{tmp_path / 'src'}", target=f"image_folder:{tmp_path / 'tgt'}",
                    method="coral", resize=True, epochs=1, batch_size=16, target_val=10, bottleneck=16,
                    out=tmp_path / "run", progress=False, diagnostics=False, plots=False)
    assert res.metrics["n_target_test"] == 80 and 0 <= res.metrics["target_accuracy"] <= 1


@requires_fashion
def test_divergence_keeps_the_previous_run_and_cli_reports_it(tmp_path, capsys):
    out = tmp_path / "run"
    api.adapt(method="source_only", out=out, diagnostics=False, plots=False, **SMALL)
    before = (out / "metrics.json").read_text()
    with pytest.raises(engine_adapt.DivergenceError, match="diverged at step 0.*lower lr="):
        api.adapt(method="dann", options={"trade_off": float("nan")}, out=out, diagnostics=False, plots=False,
                  **SMALL)
    assert (out / "metrics.json").read_text() == before  # the earlier run is intact


@requires_fashion
def test_cli_adapt_single_run_and_list(tmp_path, capsys):
    assert main(["adapt", "--list-methods"]) == 0
    assert "cdan+e" in capsys.readouterr().out
    rc = main(["adapt", "--source", "fashion_mnist", "--target", "fashion_mnist_inv", "--classes", "0,1,7",
               "--method", "coral", "--source-per-class", "30", "--target-limit", "120", "--target-val", "40",
               "--test-limit", "90", "--epochs", "1", "--batch-size", "32", "--bottleneck", "16", "--no-plots",
               "--no-diagnostics", "--no-progress", "--out", str(tmp_path / "cli")])
    assert rc == 0 and json.loads((tmp_path / "cli" / "metrics.json").read_text())["method"] == "coral"
    assert main(["adapt", "--method", "nope", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown adaptation method 'nope'" in capsys.readouterr().out


@requires_fashion
def test_same_seed_same_result_whatever_ran_before(tmp_path):
    """A cell of a comparison must equal the same run on its own: the initialisation depends on the seed alone."""
    kw = {**SMALL, "epochs": 1, "diagnostics": False, "plots": False}
    a = api.adapt(method="dann", seed=3, out=tmp_path / "a", **kw)
    import torch

    torch.manual_seed(12345)  # disturb the global generator
    torch.rand(100)
    b = api.adapt(method="dann", seed=3, out=tmp_path / "b", **kw)
    assert a.metrics["target_accuracy"] == b.metrics["target_accuracy"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
