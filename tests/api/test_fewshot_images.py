"""Few-shot on images: the same prototypes / SetFit-style / episodes jobs with an image backbone."""

from __future__ import annotations

import json

import pytest

import transferkit as tk
from transferkit.backbones import create_backbone


@pytest.mark.parametrize("method", ["prototypes", "setfit", "episodes"])
def test_fewshot_methods_run_on_images(fashion_npz, method, tmp_path, single_thread):
    model = create_backbone("seed_cnn", pretrained=False)
    res = tk.fewshot(model, f"npz:{fashion_npz}", method=method, classes="0,1,7", labels_per_class=3, iterations=2,
                     n_way=3, n_query=5, episodes=100, out=tmp_path / method, progress=False)
    m = json.loads((tmp_path / method / "metrics.json").read_text())
    if method == "episodes":
        assert m["episodes"] == 100 and m["accuracy"] > 0.34  # random conv features still beat chance (1/3)
        return
    assert m["split"] == "test" and m["n"] == 120 and m["n_train"] == 9
    assert m["accuracy"] > 0.34
    loaded, meta = tk.load_bundle(tmp_path / method / "bundle")
    assert meta["classes"] == res.meta["classes"] and loaded.input_spec.modality == "image"
    assert loaded.head_kind == ("cosine" if method == "prototypes" else "linear")
