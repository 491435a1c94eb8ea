"""Issue 25 (hostile-input probe): what ``--out``/``--output`` may replace, file permissions, resume trust, CSV
formula injection. Each test first reproduces the attack or fault, then checks that nothing was written or lost."""

from __future__ import annotations

import csv
import json
import os
import socket
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk
from transferkit import atomic
from transferkit.cli.main import main
from transferkit.rundir import (
    MARKER_FILE,
    OutputPathError,
    UntrustedRunWarning,
    check_output_dir,
    output_kind,
    partial_dir,
    read_marker,
    run_session,
    write_marker,
)

# class names a spreadsheet would run as formulas (predict writes them into its CSV)
CLASSES = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(1)"]


def images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(CLASSES)), n_per_class)
    x = rng.integers(0, 60, (len(y), 28, 28)).astype(np.uint8)
    for c in range(len(CLASSES)):
        x[y == c, 6 * c:6 * c + 5, :] += 150
    return x, y


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-class 28×28 npz dataset and a 1-epoch source run trained on it (seconds)."""
    root = tmp_path_factory.mktemp("outpaths")
    (x, y), (xt, yt) = images(20, 0), images(5, 1)
    npz = root / "tiny.npz"
    np.savez(npz, x=x, y=y, x_test=xt, y_test=yt, classes=np.array(CLASSES))
    data = f"npz:{npz}"
    tk.pretrain(data=data, epochs=1, batch_size=32, out=root / "src", progress=False)
    return root, data


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (hidden ones too) with its content (``None`` for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def user_folder(parent: Path) -> Path:
    d = parent / "d"
    (d / "photos").mkdir(parents=True)
    (d / "thesis.txt").write_text("x\n")
    (d / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return d


def transfer_cli(root: Path, data: str, out: str, *extra: str) -> list[str]:
    return ["transfer", "--source", str(root / "src"), "--data", data, "--labels-per-class", "10", "--epochs", "1",
            "--batch-size", "16", "--no-progress", "--out", out, *extra]


# -- 1. --out never destroys what is there -----------------------------------------------------------------------

@pytest.mark.parametrize("overwrite", [False, True])
def test_out_on_a_folder_of_user_files_is_refused_and_nothing_is_touched(tiny, tmp_path, capsys, overwrite):
    root, data = tiny
    d = user_folder(tmp_path)
    before = snapshot(tmp_path)
    code = main(transfer_cli(root, data, str(d), *(["--overwrite"] if overwrite else [])))
    text = " ".join(capsys.readouterr().out.split())
    assert code == 2
    assert f"--out {d} is a folder that is not a transferkit output" in text and "thesis.txt" in text
    assert "even with --overwrite" in text and "nothing was written" in text
    assert snapshot(tmp_path) == before  # thesis.txt and photos/ intact; no lock, partial or .old- debris


def test_out_on_an_existing_file_is_refused(tiny, tmp_path, capsys):
    root, data = tiny
    f = tmp_path / "notes.txt"
    f.write_text("keep me\n")
    assert main(transfer_cli(root, data, str(f))) == 2
    assert "is an existing file" in " ".join(capsys.readouterr().out.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"] and f.read_text() == "keep me\n"


@pytest.mark.parametrize("where", ["same", "inside", "bundle", "holds"])
def test_out_is_never_the_source_inside_it_or_holding_it(tiny, tmp_path, capsys, where):
    root, data = tiny
    src = root / "src"
    before = snapshot(src)
    source = src / "bundle" if where == "holds" else src
    out = {"same": src, "inside": src / "child", "bundle": src / "bundle", "holds": src}[where]
    args = transfer_cli(root, data, str(out))
    args[args.index("--source") + 1] = str(source)
    assert main(args) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert "an input this job reads" in text and "nothing was written" in text
    assert snapshot(src) == before and not partial_dir(out).exists()


def test_an_empty_out_is_a_clear_error(tiny, capsys):
    root, data = tiny
    assert main(transfer_cli(root, data, "")) == 2
    out = capsys.readouterr()
    assert "--out '' is empty" in out.out and "Traceback" not in out.out + out.err


def test_a_run_replaces_its_own_and_a_legacy_run_marks_it_and_follows_the_umask(tiny, tmp_path):
    root, data = tiny
    out = tmp_path / "tgt"
    old = os.umask(0o027)
    try:
        tk.transfer(root / "src", data, labels_per_class=10, epochs=1, batch_size=16, out=out, progress=False)
        assert read_marker(out)["kind"] == "transfer" and read_marker(out)["host"] == socket.gethostname()
        (out / MARKER_FILE).unlink()  # a run written before the marker: config.yaml + metrics.json
        assert output_kind(out) == "transfer"
        tk.transfer(root / "src", data, labels_per_class=10, epochs=1, batch_size=16, out=out, progress=False)
    finally:
        os.umask(old)
    assert read_marker(out)["kind"] == "transfer"
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes["tgt"] == modes["tgt/bundle"] == 0o750  # was 0700: a service account could not read the bundle
    assert modes["tgt/bundle/model.safetensors"] == 0o640  # was 0600
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {0o750}
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {0o640}


def jobs(root: Path, data: str, out: Path) -> dict[str, object]:
    """Every job that writes a directory, aimed at ``out`` (arguments valid up to the output check)."""
    src = root / "src"
    return {
        "pretrain": lambda: tk.pretrain(data=data, epochs=1, out=out, progress=False),
        "transfer --cv": lambda: tk.transfer(src, data, labels_per_class=10, cv=2, epochs=1, out=out, progress=False),
        "adapt": lambda: tk.adapt(source=data, target=data, epochs=1, out=out, progress=False),
        "adapt --compare": lambda: tk.adapt_compare(["source_only"], [0], out=out, source=data, target=data),
        "distill": lambda: tk.distill(src, data=data, epochs=1, out=out, progress=False),
        "fuse": lambda: tk.fuse([src, src], data, out=out),
        "fewshot": lambda: tk.fewshot(src, data, method="prototypes", labels_per_class=2, out=out),
        "zeroshot": lambda: tk.zeroshot("minilm", labels="a,b", out=out),
        "multitask": lambda: tk.multitask({"tasks": [{"name": "t", "data": data}], "source": str(src)}, out=out),
        "compare": lambda: tk.compare(src, data, labels_per_class=(5,), seeds=(0,), out=out),
        "curve": lambda: tk.curve(src, data, labels_per_class="5", seeds=(0,), out=out),
        "tune": lambda: tk.tune(src, data, n_trials=1, epochs=1, out=out),
        "auto": lambda: tk.auto(data, candidates=str(src), budget=10, out=out, overwrite=True),
        "select": lambda: tk.select([str(src)], data, out=out),
        "lr-find": lambda: tk.lr_find(src, data, out=out),
        "merge": lambda: tk.merge(src, out=out),
        "evaluate": lambda: tk.evaluate(src, data, out=out),
        "demo": lambda: tk.demo(out=out),
    }


def test_every_job_refuses_a_folder_of_user_files_before_writing(tiny, tmp_path):
    root, data = tiny
    d = user_folder(tmp_path)
    before = snapshot(tmp_path)
    for name, job in jobs(root, data, d).items():
        with pytest.raises(OutputPathError, match="is a folder that is not a transferkit output"):
            job()
        assert snapshot(tmp_path) == before, name


def test_every_job_refuses_its_own_input_as_out(tiny):
    root, data = tiny
    src = root / "src"
    before = snapshot(src)
    for name, job in jobs(root, data, src).items():
        if name in ("pretrain", "adapt", "adapt --compare", "zeroshot", "demo", "auto"):
            continue  # their inputs are datasets or backbone names, not this run
        with pytest.raises(OutputPathError, match=r"is .*an input this job reads|holds a transferkit"):
            job()
        assert snapshot(src) == before, name


def test_export_and_predict_never_write_over_an_input_or_someone_elses_file(tiny, tmp_path):
    root, data = tiny
    src = root / "src"
    img = tmp_path / "imgs"
    img.mkdir()
    from PIL import Image

    Image.fromarray(images(1, 2)[0][0]).save(img / "a.png")
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\ndata,here\n")
    with pytest.raises(OutputPathError, match="exists and is not an earlier output"):
        tk.export(src, out=notes)
    with pytest.raises(OutputPathError, match="an input this job reads"):
        tk.export(src, out=src / "bundle" / "model.onnx")
    metrics = (src / "metrics.json").read_bytes()
    for write in (lambda: tk.export(src, out=src / "metrics.json", overwrite=True),  # the run's own files: never
                  lambda: tk.predict(src, [img], output=src / "metrics.json", overwrite=True, progress=False)):
        with pytest.raises(OutputPathError, match="a file of the transferkit .* output"):
            write()
    assert (src / "metrics.json").read_bytes() == metrics
    for output in (img / "a.png", img / "preds.csv"):  # onto an input, inside an input folder: even --overwrite
        with pytest.raises(OutputPathError, match="an input this job reads"):
            tk.predict(src, [img], output=output, overwrite=True, progress=False)
    with pytest.raises(OutputPathError, match="an input this job reads"):
        tk.predict(src, [img], output=src / "bundle" / "model.safetensors", overwrite=True, progress=False)
    with pytest.raises(OutputPathError, match="output=.*notes.csv exists .*overwrite=True"):
        tk.predict(src, [img], output=notes, progress=False)
    with pytest.raises(OutputPathError, match="output='' is empty"):
        tk.predict(src, [img], output="", progress=False)
    assert notes.read_text() == "my,own\ndata,here\n" and sorted(p.name for p in img.iterdir()) == ["a.png"]
    tk.predict(src, [img], output=notes, overwrite=True, progress=False)
    tk.predict(src, [img], output=notes, progress=False)  # an earlier predictions file: replaced without asking
    assert notes.read_text().startswith("path,predicted_class,")


def test_predict_csv_escapes_formula_cells_but_jsonl_keeps_values(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    from PIL import Image

    x, _ = images(2, 3)
    names = ["=1+2.png", "+x.png", "-y.png", "@z.png", "\tt.png"]
    for name, im in zip(names, x, strict=False):
        Image.fromarray(im).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)  # relative inputs: the path cell begins with the file name
    tk.predict(root / "src", names, output="out/p.csv", top_k=2, progress=False)
    tk.predict(root / "src", names, output="out/p.jsonl", top_k=2, progress=False)
    with open("out/p.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == ["'" + n for n in names]
    for r in rows:
        for key in ("predicted_class", "top1_class", "top2_class"):
            assert r[key].startswith("'") and r[key][1:] in CLASSES
        assert not r["probability"].startswith("'")  # numbers stay numbers
    raw = [json.loads(line) for line in Path("out/p.jsonl").read_text().splitlines()]
    assert [r["path"] for r in raw] == names and all(r["predicted_class"] in CLASSES for r in raw)


# -- the rule, its single place, and atomic.replace_dir as the last line of defence ------------------------------

def test_output_kind_recognises_marked_legacy_and_bundle_directories_only(tmp_path):
    marked, legacy, bundle, curve, user = (tmp_path / n for n in ("marked", "legacy", "bundle", "curve", "user"))
    for p in (marked, legacy, bundle / "x", curve, user):
        p.mkdir(parents=True)
    write_marker(marked, "compare")
    (legacy / "config.yaml").write_text("command: distill\n")
    (legacy / "metrics.json").write_text("{}")
    (bundle / "transferkit.json").write_text("{}")
    (bundle / "model.safetensors").write_bytes(b"")
    (curve / "curve.json").write_text("{}")
    (user / "config.yaml").write_text("mine: 1\n")  # config.yaml alone is not enough
    (user / MARKER_FILE).write_text("not json")
    assert [output_kind(p) for p in (marked, legacy, bundle, curve, user, tmp_path / "missing")] == \
        ["compare", "distill", "bundle", "curve", None, None]
    with pytest.raises(OutputPathError, match="bundle .*would replace it"):
        check_output_dir(bundle)  # a run directory never replaces another run's bundle/ (merge may)
    assert check_output_dir(bundle, bundle=True) == bundle
    with pytest.raises(OutputPathError, match="holds a transferkit compare output; curve writes into"):
        check_output_dir(marked, kind="curve")
    with pytest.raises(OutputPathError, match="name a folder of its own"):
        check_output_dir(".")


def test_replace_dir_never_replaces_a_user_folder_or_file(tmp_path):
    d = user_folder(tmp_path)
    f = tmp_path / "f.txt"
    f.write_text("x")
    for dest in (d, f):
        new = tmp_path / "new"
        new.mkdir()
        before = snapshot(tmp_path)
        with pytest.raises(OutputPathError, match="was not replaced; the new result is in"):
            atomic.replace_dir(new, dest)
        assert snapshot(tmp_path) == before
        new.rmdir()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_staged_directories_and_bundles_follow_the_umask(tiny, tmp_path, mask):
    root, _ = tiny
    old = os.umask(mask)
    try:
        with atomic.staged_dir(tmp_path / "staged") as tmp:
            (tmp / "f").write_text("x")
        model, meta = tk.load_bundle(root / "src")
        tk.save_bundle(model, meta, tmp_path / "bundle")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "staged").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o777 & ~mask
    for f in (tmp_path / "bundle").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f.name


# -- 4. resume trusts a pickle: warn when it is not the user's own -----------------------------------------------

def interrupted_run(out: Path, host: str | None = None) -> None:
    from transferkit.engine.checkpoints import AtomicCheckpointIO

    with pytest.raises(RuntimeError), run_session(out, config={"command": "transfer"}) as s:
        AtomicCheckpointIO().save_checkpoint({"x": 1}, s.path / "checkpoints" / "resume-000001-e000-s0000002.ckpt")
        raise RuntimeError("killed")
    if host is not None:
        marker = json.loads((partial_dir(out) / MARKER_FILE).read_text())
        (partial_dir(out) / MARKER_FILE).write_text(json.dumps({**marker, "host": host}))


def test_resume_warns_about_a_run_from_another_machine_or_user_and_not_about_ones_own(tmp_path, monkeypatch):
    own = tmp_path / "own"
    interrupted_run(own)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrustedRunWarning)
        with run_session(own, resume=True, config={"command": "transfer"}) as s:
            assert s.resume_from is not None
    foreign = tmp_path / "foreign"
    interrupted_run(foreign, host="elsewhere.example")
    with pytest.warns(UntrustedRunWarning, match=r"another machine \(elsewhere.example.*pickles.*arbitrary code"), \
            run_session(foreign, resume=True, config={"command": "transfer"}):
        pass
    other = tmp_path / "other"
    interrupted_run(other)
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)
    with pytest.warns(UntrustedRunWarning, match="owned by another user"), \
            run_session(other, resume=True, config={"command": "transfer"}):
        pass


def test_resume_help_says_checkpoints_run_code(capsys):
    with pytest.raises(SystemExit):
        main(["resume", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "pickles" in text and "another user" in text and "another machine" in text
