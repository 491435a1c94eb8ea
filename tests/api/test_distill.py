"""The distill job on small real data: three models compared, lineage, hidden labels, bad input."""

import json

import pytest
import torch

import transferkit as tk
from transferkit import api
from transferkit.bundle import load_bundle
from transferkit.data.prepare import TensorBatches


@pytest.fixture(scope="module")
def teacher(fashion_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    api.pretrain(data=f"npz:{fashion_npz}", backbone="seed_cnn", epochs=2, out=out, progress=False)
    return out


def test_distill_compares_teacher_kd_student_and_labels_only_student(teacher, fashion_npz, tmp_path):
    res = api.distill(teacher, "lenet", f"npz:{fashion_npz}", labels_per_class=10, unlabelled=300,
                      hint_layer="stages.conv2.0", teacher_layer="stages.conv2.0", epochs=2, batch_size=64,
                      out=tmp_path / "kd", progress=False)
    m = json.loads((tmp_path / "kd" / "metrics.json").read_text())
    names = [e["model"] for e in m["models"]]
    assert names == ["teacher", "student (KD)", "student (labels only)"]
    assert all(e["params"] > 0 and e["latency"]["batch_64"]["median_ms"] > 0 for e in m["models"])
    assert m["n_labelled"] == 100 and m["n_unlabelled"] == 300
    assert "hint" in m["fit"] or m["fit"]["epochs_run"] == 2
    model, meta = load_bundle(tmp_path / "kd")
    assert meta["lineage"]["kind"] == "distill" and meta["lineage"]["teacher"] == str(teacher)
    assert meta["lineage"]["teacher_lineage"]["kind"] == "pretrain" and model.arch == "lenet"
    assert "student (labels only)" in (tmp_path / "kd" / "report.md").read_text()
    assert res.metrics["accuracy"] == pytest.approx(m["models"][1]["accuracy"])


def test_distill_bad_input(teacher, fashion_npz, tmp_path):
    data = f"npz:{fashion_npz}"
    with pytest.raises(ValueError, match=r"teacher_layer: expected a module name beside hint_layer, got None; hint "
                       "distillation needs both"):
        api.distill(teacher, "lenet", data, hint_layer="stages.conv2", out=tmp_path / "x")
    with pytest.raises(ValueError, match="unlabelled: expected 0 without labels_per_class, got 10"):
        api.distill(teacher, "lenet", data, unlabelled=10, out=tmp_path / "x")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        api.distill(teacher, "lenet", data, temperature=0, out=tmp_path / "x")
    with pytest.raises(ValueError, match="the model has 10 classes .* has 2 classes"):
        api.distill(teacher, "lenet", data, classes="0,1", out=tmp_path / "x")
    with pytest.raises(ValueError, match="stages.conv"):  # an unknown student module lists the near names
        api.distill(teacher, "lenet", data, labels_per_class=5, hint_layer="stages.convX",
                    teacher_layer="stages.conv2", epochs=1, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_public_job_functions_survive_importing_the_method_packages():
    import transferkit.adaptation  # noqa: F401
    import transferkit.distillation  # noqa: F401

    assert callable(tk.adapt) and callable(tk.distill) and tk.adapt.__module__ == "transferkit.api.adapt_job"


def test_tensor_batches_serve_extras_after_the_labels():
    b = TensorBatches(torch.zeros(4, 2), torch.arange(4), extras=(torch.arange(4) * 10,))
    x, y, e = b.__getitems__([1, 3])
    assert y.tolist() == [1, 3] and e.tolist() == [10, 30]
    with pytest.raises(ValueError, match="one row per item"):
        TensorBatches(torch.zeros(4, 2), torch.arange(4), extras=(torch.zeros(3),))
