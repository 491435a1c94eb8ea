"""The fuse job on small real data: every method is a bundle that evaluate reads; soups; bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit import api
from transferkit.bundle import load_bundle, save_bundle
from transferkit.fusion.model import FusedModel


@pytest.fixture(scope="module")
def members(fashion_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    data = f"npz:{fashion_npz}"
    api.pretrain(data=data, classes="0,1,2,3", backbone="seed_cnn", epochs=1, out=root / "src", progress=False)
    runs = []
    for seed in (0, 1, 2):
        api.transfer(source=root / "src", data=data, classes="4,5,6,7", labels_per_class=15, strategy="finetune",
                     epochs=3, seed=seed, out=root / f"ft{seed}", progress=False)
        runs.append(root / f"ft{seed}")
    return data, runs, root


def test_fuse_writes_a_bundle_per_method_that_evaluate_reads(members, tmp_path):
    data, runs, _ = members
    res = api.fuse(runs, data, classes="4,5,6,7", fit_per_class=20, out=tmp_path / "fuse", gate_epochs=50)
    m = json.loads((tmp_path / "fuse" / "metrics.json").read_text())
    names = [r["model"] for r in m["rows"]]
    assert names[3:] == ["average", "weighted", "stacking", "gating", "soup_uniform", "soup_greedy"]
    assert m["fit_set"]["members_not_excluded"] == [] and m["fit_set"]["n"] == 80
    rows = {r["model"]: r for r in m["rows"]}
    for method in names[3:]:
        ev = api.evaluate(tmp_path / "fuse" / "bundles" / method, data, classes="4,5,6,7")
        assert ev["accuracy"] == pytest.approx(rows[method]["test_accuracy"], abs=2e-3), method
    # the greedy soup never does worse than its best ingredient on the fit set (by construction)
    assert rows["soup_greedy"]["fit_accuracy"] >= max(r["fit_accuracy"] for r in m["rows"][:3])
    assert m["greedy_soup_kept"] and set(m["greedy_soup_kept"]) <= {str(r) for r in runs}
    _, meta = load_bundle(tmp_path / "fuse")
    assert meta["lineage"]["kind"] == "fuse" and meta["lineage"]["method"] == m["selected"]
    assert res.metrics["selected"] == m["selected"]


def test_fused_average_of_identical_members_equals_the_member(members):
    _, runs, _ = members
    member, _ = load_bundle(runs[0])
    fused = FusedModel([member, member], "average").eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        ref = torch.log_softmax(member((x - 0.5) / 0.5), 1)
        assert torch.allclose(fused(x), ref, atol=1e-5)


def test_fused_bundle_round_trip_with_stacking_buffers(members, tmp_path):
    _, runs, _ = members
    a, _ = load_bundle(runs[0])
    b, _ = load_bundle(runs[1])
    fused = FusedModel([a, b], "stacking")
    fused.stack_coef.copy_(torch.randn_like(fused.stack_coef))
    save_bundle(fused, {"classes": ["a", "b", "c", "d"]}, tmp_path / "b")
    again, _ = load_bundle(tmp_path / "b")
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fused.eval()(x), again(x), atol=1e-6)


def test_fuse_bad_input(members, tmp_path):
    data, runs, root = members
    with pytest.raises(ValueError, match="unknown fusion method"):
        api.fuse(runs, data, classes="4,5,6,7", methods=["median"], out=tmp_path / "x")
    with pytest.raises(ValueError, match="at least 2 members"):
        api.fuse(runs[:1], data, classes="4,5,6,7", out=tmp_path / "x")
    with pytest.raises(ValueError, match="T-shirt"):  # different class sets: both lists named
        api.fuse([runs[0], root / "src"], data, classes="4,5,6,7", out=tmp_path / "x")
    # a soup needs one architecture and one initialisation: refused with the reason when it is all that was asked
    lenet = tmp_path / "lenet"
    other = tmp_path / "other_src"
    api.pretrain(data=data, classes="0,1,2,3", backbone="lenet", epochs=1, out=other, progress=False)
    api.transfer(source=other, data=data, classes="4,5,6,7", labels_per_class=15, epochs=1, out=lenet,
                 progress=False)
    with pytest.raises(ValueError, match="soup_uniform"):
        api.fuse([runs[0], lenet], data, classes="4,5,6,7", methods=["soup_uniform"], fit_per_class=20,
                 out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_predict_reads_fused_bundles_like_any_other(members, tmp_path, fashion_npz):
    data, runs, _ = members
    api.fuse(runs, data, classes="4,5,6,7", methods=["stacking", "soup_uniform"], fit_per_class=20,
             out=tmp_path / "f", gate_epochs=10)
    z = np.load(fashion_npz)
    imgs = z["x_test"][np.isin(z["y_test"], [4, 5, 6, 7])][:6]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"{i}.png")
    for method in ("stacking", "soup_uniform"):
        rows = sorted(api.predict(tmp_path / "f" / "bundles" / method, [folder]), key=lambda r: r["path"])
        model, meta = load_bundle(tmp_path / "f" / "bundles" / method)
        spec = model.input_spec
        x = (torch.from_numpy(imgs).float().div(255).unsqueeze(1) - spec.mean[0]) / spec.std[0]
        with torch.no_grad():
            expected = [meta["classes"][i] for i in model(x).argmax(1).tolist()]
        assert [r["predicted_class"] for r in rows] == expected, method


def test_fit_on_the_members_shared_validation_split(members, tmp_path):
    data, runs, root = members
    # issue 26: K is the whole budget, so a shared validation split exists only where --val-per-class asked for one
    with pytest.raises(ValueError, match="one shared validation split"):
        api.fuse(runs[:2], data, classes="4,5,6,7", fit_on="validation", out=tmp_path / "none")
    pair = [tmp_path / "ft0_v", tmp_path / "ft0_lr"]
    for run, lr in zip(pair, (None, 3e-4), strict=True):
        api.transfer(source=root / "src", data=data, classes="4,5,6,7", labels_per_class=15, val_per_class=15,
                     strategy="finetune", epochs=2, seed=0, lr=lr, out=run, progress=False)
    api.fuse(pair, data, classes="4,5,6,7", methods=["average", "weighted"], fit_on="validation",
             out=tmp_path / "v")
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert m["fit_set"]["on"] == "validation" and m["fit_set"]["n"] == 15 * 4  # their 15/class validation images
    with pytest.raises(ValueError, match="one shared validation split"):  # seeds 0 and 1 drew other images
        api.fuse(runs[:2], data, classes="4,5,6,7", fit_on="validation", out=tmp_path / "x")
    with pytest.raises(ValueError, match="one of held_out, validation"):
        api.fuse(runs[:2], data, classes="4,5,6,7", fit_on="test", out=tmp_path / "x")


def test_member_split_follows_the_recorded_validation_size(members):
    from transferkit.data.fuse_fit_set import _member_split
    from transferkit.data.job_task import load_task

    data, _, _ = members
    full = load_task(data, "train", "4,5,6,7")
    lineage = {"data": data, "classes": [4, 5, 6, 7], "labels_per_class": 3, "val_per_class": 7, "seed": 2}
    tr, va = _member_split(full, lineage, data, [4, 5, 6, 7])
    assert len(tr) == 12 and len(va) == 28 and not set(tr) & set(va)
