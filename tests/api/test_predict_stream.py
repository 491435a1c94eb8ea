"""Streaming batch prediction (``api.predict`` / ``transferkit predict``) on real Fashion-MNIST images saved as
PNG files in a nested folder tree, with broken files among them, a CSV list, and both output formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit import api
from transferkit.api import predict_batches, use
from transferkit.backbones import create_backbone
from transferkit.bundle import save_bundle
from transferkit.cli.main import main
from transferkit.data.images import FASHION_CLASSES
from transferkit.inference import BadImage, TorchPredictor, decode_image, predict_batch


@pytest.fixture(scope="module")
def tree(fashion_npz, tmp_path_factory):
    """A tiny seed_cnn bundle, a nested folder of 30 real images plus broken ones, and a CSV list."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    bundle = save_bundle(create_backbone("seed_cnn", num_classes=10).eval(),
                         {"classes": FASHION_CLASSES, "lineage": {"test": True}}, root / "bundle")
    z = np.load(fashion_npz)
    imgs = root / "imgs"
    good = []
    for i in range(30):
        sub = imgs / ("a/b" if i < 12 else "a" if i < 20 else "c")
        sub.mkdir(parents=True, exist_ok=True)
        f = sub / f"{i:02d}.png"
        Image.fromarray(z["x_test"][i * 13]).save(f)
        good.append(f)
    corrupt = imgs / "a" / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, "PNG")
    truncated = imgs / "c" / "truncated.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    colour = imgs / "colour.png"
    Image.fromarray(np.dstack([z["x_test"][1]] * 3)).save(colour)
    (imgs / ".hidden.png").write_text("skipped: hidden")
    lists = root / "lists"
    lists.mkdir()
    listed = [good[0], good[25]]
    missing = lists / "missing.png"
    with (lists / "list.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "path"])
        w.writerow(["x", "../imgs/a/b/00.png"])  # relative to the CSV's folder
        w.writerow(["y", str(good[25])])  # absolute
        w.writerow(["z", "missing.png"])
    return {"bundle": bundle, "imgs": imgs, "good": good, "bad": [corrupt, truncated], "colour": colour,
            "csv": lists / "list.csv", "listed": listed, "missing": missing}


def expected(bundle: Path, files: list[Path], k: int) -> dict[str, dict]:
    """What the shared inference core predicts for each file on its own."""
    predictor = TorchPredictor.load(bundle)
    return {str(f): predict_batch(predictor, [decode_image(f.read_bytes(), str(f))], k)[0] for f in files}


def check_good(row: dict, want: dict, k: int) -> None:
    assert row["predicted_class"] == want["predicted_class"] and not row["error"]
    assert float(row["probability"]) == pytest.approx(want["probability"], abs=1e-5)
    for i, t in enumerate(want["top"], 1):
        assert row[f"top{i}_class"] == t["class"] and int(row[f"top{i}_index"]) == t["index"]
        assert float(row[f"top{i}_probability"]) == pytest.approx(t["probability"], abs=1e-5)
    assert f"top{k + 1}_class" not in row


def test_folders_and_csv_lists_to_csv_with_errors_in_place(tree, tmp_path, single_thread):
    out = tmp_path / "pred.csv"
    summary = api.predict(tree["bundle"], [tree["imgs"], tree["csv"]], output=out, top_k=3, batch_size=4,
                          progress=False)
    rows = list(csv.DictReader(out.open(newline="")))
    assert list(rows[0]) == ["path", "predicted_class", "probability", "top1_class", "top1_index",
                             "top1_probability", "top2_class", "top2_index", "top2_probability", "top3_class",
                             "top3_index", "top3_probability", "error"]
    by_path = {}
    for r in rows:
        by_path.setdefault(r["path"], r)
    # the folder walk: sorted, recursive, hidden files skipped; then the CSV list's rows in their order
    walked = sorted([*map(str, tree["good"]), *map(str, tree["bad"]), str(tree["colour"])],
                    key=lambda p: Path(p).parts)
    listed = [str(tree["csv"].parent / "../imgs/a/b/00.png"), str(tree["good"][25]), str(tree["missing"])]
    assert [r["path"] for r in rows] == walked + listed
    assert summary["images"] == len(rows) == 36 and summary["errors"] == 4 and summary["predicted"] == 32
    assert summary["output"] == str(out) and summary["format"] == "csv" and len(summary["preview"]) == 20
    want = expected(tree["bundle"], tree["good"], 3)
    for f in tree["good"]:
        check_good(by_path[str(f)], want[str(f)], 3)
    check_good(rows[-3], want[str(tree["good"][0])], 3)  # the CSV list's relative path, resolved
    for bad, reason in ((tree["bad"][0], "not a readable image"), (tree["bad"][1], "not a readable image"),
                        (tree["colour"], "colour channels"), (tree["missing"], "no such file")):
        row = by_path[str(bad)]
        assert str(bad) in row["error"] and reason in row["error"], row
        assert all(row[c] == "" for c in row if c not in ("path", "error"))
    assert "list.csv" in by_path[str(tree["missing"])]["error"]
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]  # no temporary file left behind


def test_jsonl_output_convert_channels_and_the_returned_rows(tree, tmp_path, single_thread):
    out = tmp_path / "pred.jsonl"
    summary = api.predict(tree["bundle"], [tree["imgs"]], output=out, top_k=2, batch_size=7, progress=False,
                          convert_channels=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == summary["images"] == 33 and summary["errors"] == 2 and summary["format"] == "jsonl"
    assert set(rows[0]) == set(use.predict_fields(2))
    colour = next(r for r in rows if r["path"] == str(tree["colour"]))
    assert colour["error"] is None and colour["predicted_class"] in FASHION_CLASSES
    bad = [r for r in rows if r["error"]]
    assert {r["path"] for r in bad} == set(map(str, tree["bad"]))
    assert all(r["predicted_class"] is None and r["top1_index"] is None for r in bad)
    # without an output the same rows come back as a list
    listed = api.predict(tree["bundle"], [tree["imgs"]], top_k=2, batch_size=7, progress=False,
                         convert_channels=True)
    assert listed == rows
    # --format overrides the extension; an unknown extension without --format is refused
    api.predict(tree["bundle"], [tree["good"][3]], output=tmp_path / "p.txt", format="jsonl", progress=False)
    row = json.loads((tmp_path / "p.txt").read_text())
    check_good(row, expected(tree["bundle"], [tree["good"][3]], 1)[str(tree["good"][3])], 1)
    with pytest.raises(ValueError, match="cannot tell the format"):
        api.predict(tree["bundle"], [tree["good"][3]], output=tmp_path / "p.out", progress=False)
    assert not (tmp_path / "p.out").exists()


def test_memory_is_bounded_by_one_batch_and_rows_are_written_as_they_come(tree, tmp_path, monkeypatch):
    """Spy on the decoder and the predictor: never more than ``batch_size`` decoded images are alive, and
    earlier batches' rows are already in the (temporary) output file while later ones are predicted."""
    decoded, in_flight, written = [0], [], []
    real_decode, real_predict = predict_batches.decode_to_size, predict_batches.predict_batch
    out = tmp_path / "pred.csv"

    def spy_decode(*args, **kwargs):
        decoded[0] += 1
        return real_decode(*args, **kwargs)

    def spy_predict(predictor, images, top_k=1):
        in_flight.append(decoded[0])
        decoded[0] = 0  # this batch's images are predicted (or were refused) and released
        tmp = list(tmp_path.glob(".pred.csv.*.tmp"))
        assert len(tmp) == 1 and not out.exists()
        written.append(len(tmp[0].read_text().splitlines()) - 1)
        return real_predict(predictor, images, top_k)

    monkeypatch.setattr(predict_batches, "decode_to_size", spy_decode)
    monkeypatch.setattr(predict_batches, "predict_batch", spy_predict)
    summary = api.predict(tree["bundle"], [tree["imgs"]], output=out, batch_size=3, progress=False)
    assert summary["images"] == 33 and len(in_flight) == 11
    assert max(in_flight) <= 3 and sum(in_flight) == 33  # every file decoded once (the colour one too)
    assert written == [3 * i for i in range(11)]  # batch n starts with n earlier batches on disk


def test_strict_stops_at_the_first_bad_image_naming_it(tree, tmp_path):
    out = tmp_path / "pred.csv"
    with pytest.raises(BadImage, match="corrupt.png"):
        api.predict(tree["bundle"], [tree["imgs"]], output=out, strict=True, convert_channels=True, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(BadImage, match="missing.png"):
        api.predict(tree["bundle"], [tree["csv"]], strict=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        api.predict(tree["bundle"], [tmp_path / "nowhere"], progress=False)


def test_an_interrupted_run_leaves_the_previous_output_untouched(tree, tmp_path, monkeypatch):
    out = tmp_path / "pred.csv"
    previous = "path,predicted_class,probability,error\nold.png,cat,0.9,\n"  # an earlier run's predictions
    out.write_text(previous)
    calls = [0]
    real_predict = predict_batches.predict_batch

    def interrupt(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(predict_batches, "predict_batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.predict(tree["bundle"], [tree["imgs"]], output=out, batch_size=4, progress=False)
    assert out.read_text() == previous and [p.name for p in tmp_path.iterdir()] == ["pred.csv"]


def test_cli_streams_to_jsonl_and_prints_a_summary(tree, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(tree["bundle"]), str(tree["imgs"]), str(tree["csv"]), "--output", str(out),
                 "--top-k", "3", "--batch-size", "5", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 36 and sum(bool(r["error"]) for r in rows) == 4 and rows[0]["top3_class"]
    text = " ".join(capsys.readouterr().out.split())
    assert "32 input(s) predicted, 4 error(s)" in text and str(out) in text
    assert main(["predict", str(tree["bundle"]), str(tree["imgs"]), "--strict", "--no-progress"]) == 2
    assert main(["predict", str(tree["bundle"]), str(tree["good"][0]), "--backend", "onnx", "--no-progress"]) == 2


def test_onnx_backend_predicts_like_torch(tree, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        from transferkit.bundle import load_bundle
        from transferkit.exporting import export_onnx

        model, meta = load_bundle(tree["bundle"])
        export_onnx(model, meta, tmp_path / "onnx" / "model.onnx")
    except Exception as exc:  # noqa: BLE001 — the exporter is optional here; torch is the tested backend
        pytest.skip(f"no ONNX export available ({exc.__class__.__name__}: {exc})")
    files = tree["good"][:9]
    rows = api.predict(tmp_path / "onnx", files, backend="onnx", top_k=2, batch_size=4, progress=False)
    want = expected(tree["bundle"], files, 2)
    for row in rows:
        assert row["predicted_class"] == want[row["path"]]["predicted_class"]
        assert row["probability"] == pytest.approx(want[row["path"]]["probability"], abs=1e-4)


def test_predict_takes_its_options_once_and_the_default_pixel_limit_is_the_decoders():
    import inspect

    from transferkit.errors import ConfigError
    from transferkit.inference import DEFAULT_MAX_PIXELS
    from transferkit.options import PredictConfig

    assert list(inspect.signature(api.predict).parameters) == ["args", "config", "console", "options"]
    assert PredictConfig().max_pixels == DEFAULT_MAX_PIXELS
    with pytest.raises(ConfigError, match="model"):
        api.predict(inputs=["x.png"])
    with pytest.raises(ConfigError, match="top_k"):
        api.predict(config=PredictConfig(model="m", inputs=("x.png",), top_k=0))
    with pytest.raises(ValueError, match="unknown option.*valid:.*max_pixels"):
        api.predict("m", ["x.png"], max_pixel=10)
