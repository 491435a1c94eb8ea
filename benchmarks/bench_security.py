"""Hostile-input probe for issue 25: bad output paths, crafted bundles, hostile HTTP bodies, bad data and CSV
lists, bad resumes — each one tried against the real command or service, and judged "handled cleanly" or not.

    .venv/bin/python benchmarks/bench_security.py [--only CATEGORY] [--json benchmarks/results/security.json]

What "handled cleanly" means (the same rule for every input of a category):

* **command line** (``transferkit …`` run in-process through ``transferkit.cli.main.main``): it refuses with a
  non-zero exit status and a one-line error (no exception escapes ``main``, no traceback printed), the error
  names the thing at fault (the path, file or option), and nothing that existed before is changed or gone (every
  file under the output path and the source run is hashed before and after). A crafted bundle also must not make
  transferkit open a socket (every ``connect`` is recorded) or open a file outside the bundle that the bundle named.
* **HTTP** (``transferkit.serve.create_app`` under Starlette's test client, the real app and model): the answer
  has the expected 4xx status and error code as JSON, and the next good request still gets 200.

The heavy-load half of the issue's goal (6 hostile clients beside 10 good ones) is measured by
``benchmarks/bench_serve_load.py`` (a real server process); see RESULTS.md.

Prints one table (category, inputs tried, handled cleanly) and every input that was not handled cleanly.
"""

from __future__ import annotations

import argparse
import base64
import builtins
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ["TRANSFERKIT_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")


@dataclass
class Outcome:
    category: str
    name: str
    clean: bool
    detail: str = ""


@dataclass
class Probe:
    work: Path
    outcomes: list[Outcome] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)

    def record(self, category: str, name: str, clean: bool, detail: str = "") -> None:
        self.outcomes.append(Outcome(category, name, clean, detail))
        mark = "ok  " if clean else "FAIL"
        print(f"  {mark} {category}: {name}" + ("" if clean else f" — {detail[:300]}"), flush=True)


# ----------------------------------------------------------------------------------------------- instrumentation
@contextlib.contextmanager
def watch(probe: Probe, outside: Path | None = None):
    """Record socket connections and opens of files under ``outside`` while the block runs."""
    real_connect, real_open = socket.socket.connect, builtins.open

    def connect(self, address):  # noqa: ANN001
        probe.connects.append(str(address))
        raise OSError("network disabled by the security probe")

    def opener(file, *args, **kwargs):  # noqa: ANN001
        if outside is not None and isinstance(file, (str, os.PathLike)) and str(outside) in str(Path(file)):
            probe.opened.append(str(file))
        return real_open(file, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    builtins.open = opener
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        builtins.open = real_open


class WouldServe(Exception):
    """Raised in place of starting the HTTP server: the bundle was accepted."""


@contextlib.contextmanager
def no_serving():
    """Replace ``uvicorn.run`` and ``uvicorn.Server.run`` so that ``transferkit serve`` on an accepted bundle
    returns (as an escaped :class:`WouldServe`) instead of serving forever."""
    import uvicorn

    real_run, real_server_run = uvicorn.run, uvicorn.Server.run

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise WouldServe("the service would have started on this bundle")

    uvicorn.run = refuse
    uvicorn.Server.run = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        uvicorn.run, uvicorn.Server.run = real_run, real_server_run  # type: ignore[method-assign]


def run_cli(argv: list[str]) -> tuple[int | None, str, str | None]:
    """(exit status, everything printed, the escaped exception's traceback or None)."""
    from transferkit.cli.main import main

    buf = io.StringIO()
    escaped = None
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own refusals (exit 2) are clean
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - an escaped exception is exactly what the probe looks for
            code, escaped = None, traceback.format_exc()
    return code, buf.getvalue(), escaped


def tree_hash(path: Path) -> dict[str, str]:
    """Every file (and empty folder) under ``path`` with its SHA-256; {} when ``path`` does not exist."""
    if not path.exists() and not path.is_symlink():
        return {}
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if rel.startswith(".transferkit") or "/." in "/" + rel and rel.endswith(".lock"):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def judge_refusal(code: int | None, printed: str, escaped: str | None, names: list[str],
                  before: dict[Path, dict[str, str]], may_succeed: bool = False) -> tuple[bool, str]:
    """Clean = refused with a one-line error naming one of ``names`` and nothing in ``before`` changed or lost
    (``may_succeed``: writing is also fine, as long as nothing that was there is changed or lost)."""
    if escaped is not None:
        return False, "exception escaped: " + escaped.strip().splitlines()[-1]
    if code == 0 and may_succeed:
        names = []
    elif code in (0, None):
        return False, f"exit status {code} (accepted): {printed.strip()[-200:]}"
    if "Traceback" in printed:
        return False, "traceback printed"
    for path, hashes in before.items():
        now = tree_hash(path)
        lost = [k for k in hashes if hashes[k] != now.get(k)]
        if lost:
            return False, f"{path}: changed or lost {lost[:4]}"
    flat = " ".join(printed.split())
    if names and not any(n in flat for n in names):
        return False, f"error does not name {names}: {flat[:200]}"
    return True, ""


# ----------------------------------------------------------------------------------------------------- fixtures
def make_source(work: Path, name: str = "src") -> Path:
    src = work / name
    code, printed, escaped = run_cli(["pretrain", "--data", "digits", "--backbone", "seed_cnn", "--epochs", "1",
                                      "--seed", "0", "--out", str(src), "--no-progress"])
    if code != 0:
        raise SystemExit(f"could not make the source run: {printed[-500:]} {escaped or ''}")
    return src


def write_png(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", value: int = 128) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def png_bytes(size: tuple[int, int] = (8, 8), mode: str = "L", value: int = 128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, value).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- output paths
def output_jobs(src: Path, src2: Path, work: Path) -> dict[str, Callable[[str], list[str]]]:
    """Each job that writes a directory (or file), as argv with its output path filled in; tiny settings."""
    img = write_png(work / "inputs" / "a.png")
    spec = work / "tasks.yaml"
    spec.write_text(f"data: digits\nsource: {src}\nepochs: 1\ntasks:\n  - name: fine\n    labels_per_class: 3\n"
                    "  - name: low\n    labels_per_class: 3\n    classes: 0,1,2\n")
    bundle = src / "bundle"
    d = ["--data", "digits"]
    tiny = ["--epochs", "1", "--no-progress"]
    return {
        "pretrain": lambda o: ["pretrain", *d, "--backbone", "seed_cnn", *tiny, "--out", o],
        "transfer": lambda o: ["transfer", "--source", str(src), *d, "--labels-per-class", "3", *tiny, "--out", o],
        "transfer --cv": lambda o: ["transfer", "--source", str(src), *d, "--labels-per-class", "4", "--cv", "2",
                                    *tiny, "--out", o],
        "compare": lambda o: ["compare", "--source", str(src), *d, "--labels-per-class", "3", "--seeds", "1",
                              "--epochs", "1", "--out", o],
        "curve": lambda o: ["curve", "--source", str(src), *d, "--labels-per-class", "3", "--seeds", "1",
                            "--epochs", "1", "--out", o],
        "lr-find": lambda o: ["lr-find", "--source", str(src), *d, "--labels-per-class", "3", "--out", o],
        "tune": lambda o: ["tune", "--source", str(src), *d, "--labels-per-class", "3", "--trials", "1",
                           "--epochs", "1", "--out", o],
        "adapt": lambda o: ["adapt", "--source", "digits", "--target", "digits", "--method", "source_only",
                            "--epochs", "1", "--out", o],
        "distill": lambda o: ["distill", "--teacher", str(src), "--student", "seed_cnn", *d, "--labels-per-class",
                              "3", "--epochs", "1", "--out", o],
        "fuse": lambda o: ["fuse", str(src), str(src2), *d, "--fit-per-class", "3", "--out", o],
        "select": lambda o: ["select", str(src), *d, "--labels-per-class", "3", "--out", o],
        "auto": lambda o: ["auto", "--candidates", str(src), *d, "--labels-per-class", "3", "--budget", "20s",
                           "--out", o],
        "multitask": lambda o: ["multitask", "--config", str(spec), "--out", o],
        "fewshot": lambda o: ["fewshot", "--source", "seed_cnn", "--data", "digits", "--out", o],
        "zeroshot": lambda o: ["zeroshot", "--data", "text:/nonexistent.csv", "--out", o],
        "export": lambda o: ["export", str(src), "--out", o],
        "merge": lambda o: ["merge", str(src), "--out", o],
        "evaluate --out": lambda o: ["evaluate", str(src), *d, "--split", "test", "--out", o],
        "predict --output": lambda o: ["predict", str(bundle), str(img), "--output", o],
    }


def probe_output_paths(probe: Probe, src: Path) -> None:
    cat = "output paths"
    work = probe.work / "out"
    src2 = make_source(probe.work, "src2")
    jobs = output_jobs(src, src2, probe.work / "fixtures")
    # the sources as they were, outside the work folder (a job that replaced it would take them along): a
    # destroyed source is counted against the job that destroyed it, then put back for the next input
    pristine = Path(tempfile.mkdtemp(prefix="tk-security-pristine-"))
    for s in (src, src2, probe.work / "fixtures"):
        shutil.copytree(s, pristine / s.name, symlinks=True)
    file_jobs = {"export", "predict --output", "evaluate --out"}  # they write a file (export: a file or folder)
    # jobs that read the source run (the others may replace a finished run of their own, as a rerun does)
    reads_source = set(jobs) - {"pretrain", "adapt", "fewshot", "zeroshot"}
    for n_job, (job, argv) in enumerate(jobs.items()):
        scenarios: list[tuple[str, Callable[[Path], tuple[str, list[str]]]]] = []

        def foreign(base: Path) -> tuple[str, list[str]]:
            (base / "photos").mkdir(parents=True)
            (base / "thesis.txt").write_text("four years of work\n")
            write_png(base / "photos" / "p.png")
            return str(base), []

        def regular_file(base: Path) -> tuple[str, list[str]]:
            base.parent.mkdir(parents=True, exist_ok=True)
            base.write_text("not yours\n")
            return str(base), []

        scenarios.append(("a folder of the user's files", foreign))
        scenarios.append(("a folder of the user's files, --overwrite", lambda b: (foreign(b)[0], ["--overwrite"])))
        scenarios.append(("an existing regular file", regular_file))
        if job not in file_jobs:  # a file job told --overwrite FILE does what it was asked
            scenarios.append(("an existing regular file, --overwrite",
                              lambda b: (regular_file(b)[0], ["--overwrite"])))
        if job in reads_source and job not in file_jobs:
            scenarios.append(("the source run itself", lambda b: (str(src), [])))
            scenarios.append(("the source run itself, --overwrite", lambda b: (str(src), ["--overwrite"])))
            scenarios.append(("the folder holding the source run", lambda b: (str(src.parent), ["--overwrite"])))
        elif job in reads_source:
            scenarios.append(("a file of the source run", lambda b: (str(src / "metrics.json"), ["--overwrite"])))
        scenarios.append(("an empty string", lambda b: ("", [])))
        for n_scenario, (label, make) in enumerate(scenarios):
            base = work / f"{n_job}-{n_scenario}" / "target"
            out, extra = make(base)
            before = {src: tree_hash(src)}
            if out:
                before[Path(out)] = tree_hash(Path(out))
            before[base.parent] = tree_hash(base.parent)
            args = argv(out) + extra
            parser_has_overwrite = True
            if "--overwrite" in extra:
                from transferkit.cli.main import build_parser

                sub = build_parser()[1][args[0]]
                parser_has_overwrite = any("--overwrite" in a.option_strings for a in sub._actions)
                if not parser_has_overwrite:
                    continue  # the job has no --overwrite: the plain scenario covers it
            t0 = time.time()
            code, printed, escaped = run_cli(args)
            names = ["--out", "--output", "output"] if out == "" else [Path(out).name]
            ok, why = judge_refusal(code, printed, escaped, names, before,
                                    may_succeed=job == "export" and "folder" in label)
            restore_sources(probe.work, pristine)
            probe.record(cat, f"{job} → {label}", ok, why + (f" ({time.time() - t0:.0f} s)" if not ok else ""))
    shutil.rmtree(pristine, ignore_errors=True)


def restore_sources(work: Path, pristine: Path) -> None:
    """Put back the source runs and fixtures (copies in ``pristine``) into ``work`` if the last input changed
    them."""
    for saved in pristine.iterdir():
        live = work / saved.name
        if tree_hash(live) != tree_hash(saved):
            if live.is_dir() and not live.is_symlink():
                shutil.rmtree(live)
            elif live.exists() or live.is_symlink():
                live.unlink()
            live.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(saved, live, symlinks=True)


# -------------------------------------------------------------------------------------------------------- bundles
def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "transferkit.json").read_text())


def _set_meta(bundle: Path, meta: object) -> None:
    (bundle / "transferkit.json").write_text(json.dumps(meta))


def _weights(bundle: Path) -> dict:
    import safetensors.torch

    # cloned: the loaded tensors may map the file, which the tampering then rewrites
    return {k: v.clone() for k, v in safetensors.torch.load_file(str(bundle / "model.safetensors")).items()}


def _set_weights(bundle: Path, state: dict) -> None:
    import safetensors.torch

    safetensors.torch.save_file(state, str(bundle / "model.safetensors"), metadata={"format": "pt"})


def bundle_tamperings(outside: Path, channels: int) -> dict[str, Callable[[Path], None]]:
    """name → a change that makes a valid bundle (of a ``channels``-channel model) hostile or broken."""
    import torch

    evil = outside / "evil.pt"

    def meta_edit(fn: Callable[[dict], object]) -> Callable[[Path], None]:
        def edit(b: Path) -> None:
            m = _meta(b)
            res = fn(m)
            _set_meta(b, m if res is None else res)
        return edit

    def arch(**kw: object) -> Callable[[Path], None]:
        return meta_edit(lambda m: m["architecture"].update(kw))

    def kwargs(**kw: object) -> Callable[[Path], None]:
        return meta_edit(lambda m: m["architecture"].setdefault("kwargs", {}).update(kw))

    def spec(**kw: object) -> Callable[[Path], None]:
        return meta_edit(lambda m: m["input_spec"].update(kw))

    def weights_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
        def edit(b: Path) -> None:
            st = _weights(b)
            fn(st)
            _set_weights(b, st)
        return edit

    def first_float(st: dict) -> str:
        return next(k for k, v in st.items() if v.is_floating_point() and v.numel() > 1)

    def lying_header(b: Path) -> None:
        raw = (b / "model.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        key = next(k for k in header if k != "__metadata__")
        header[key]["shape"] = [2 ** 20, 2 ** 20, 2 ** 6]
        new = json.dumps(header).encode()
        (b / "model.safetensors").write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])

    def symlink(name: str) -> Callable[[Path], None]:
        def edit(b: Path) -> None:
            target = outside / f"real-{name}"
            shutil.copy(b / name, target)
            (b / name).unlink()
            (b / name).symlink_to(target)
        return edit

    def replace_file(name: str, data: bytes) -> Callable[[Path], None]:
        return lambda b: (b / name).write_bytes(data)

    def as_dir(name: str) -> Callable[[Path], None]:
        def edit(b: Path) -> None:
            (b / name).unlink()
            (b / name).mkdir()
        return edit

    def evil_checkpoint() -> None:
        torch.save({"state_dict": {}}, evil)

    evil_checkpoint()
    return {
        "meta: 'architecture' missing": meta_edit(lambda m: m.pop("architecture")),
        "meta: format_version '2' (a string)": meta_edit(lambda m: m.update(format_version="2")),
        "meta: format_version 99": meta_edit(lambda m: m.update(format_version=99)),
        "meta: format_version true": meta_edit(lambda m: m.update(format_version=True)),
        "meta: format_version -1": meta_edit(lambda m: m.update(format_version=-1)),
        "meta: a JSON list": meta_edit(lambda m: [m]),
        "meta: JSON null": replace_file("transferkit.json", b"null"),
        "meta: not JSON": replace_file("transferkit.json", b"{architecture: seed_cnn"),
        "meta: not UTF-8": replace_file("transferkit.json", b'{"classes": ["\xff\xfe"]}'),
        "meta: empty file": replace_file("transferkit.json", b""),
        "meta: 40 MB of JSON": replace_file("transferkit.json", b'{"pad": "' + b"x" * 40_000_000 + b'"}'),
        "meta: a symlink to a file outside": symlink("transferkit.json"),
        "meta: a folder": as_dir("transferkit.json"),
        "architecture: a string": meta_edit(lambda m: m.update(architecture="seed_cnn")),
        "architecture: unknown arch": arch(arch="no_such_net"),
        "architecture: arch not a string": arch(arch=["seed_cnn"]),
        "architecture: hf:bert-base-uncased (hub)": arch(arch="hf:bert-base-uncased"),
        "architecture: timm + checkpoint_path outside": meta_edit(lambda m: m.update(architecture={
            "arch": "timm:resnet18", "kwargs": {"checkpoint_path": str(evil)}})),
        "architecture: timm + pretrained=True": meta_edit(lambda m: m.update(architecture={
            "arch": "timm:resnet18", "kwargs": {"pretrained": True}})),
        "architecture: timm + pretrained_cfg_overlay file": meta_edit(lambda m: m.update(architecture={
            "arch": "timm:resnet18", "kwargs": {"pretrained_cfg_overlay": {"file": str(evil)}}})),
        "architecture: torchvision + weights path": meta_edit(lambda m: m.update(architecture={
            "arch": "torchvision:resnet18", "kwargs": {"weights": "/etc/passwd"}})),
        "architecture: weights=/etc/passwd": arch(weights="/etc/passwd"),
        "architecture: kwargs not a mapping": arch(kwargs=["x"]),
        "architecture: unknown kwarg": kwargs(evil_option=1),
        "architecture: 10^12 classes": meta_edit(lambda m: m.update(num_classes=10 ** 12)),
        "classes: shorter than the outputs": meta_edit(lambda m: m.update(classes=m["classes"][:2])),
        "classes: longer than the outputs": meta_edit(lambda m: m.update(classes=m["classes"] + ["extra"])),
        "classes: not a list": meta_edit(lambda m: m.update(classes="0,1,2")),
        "classes: an empty name": meta_edit(lambda m: m["classes"].__setitem__(0, "")),
        "classes: a number": meta_edit(lambda m: m["classes"].__setitem__(0, 7)),
        "num_classes: disagrees with the head": meta_edit(lambda m: m.update(num_classes=3)),
        "input_spec: missing": meta_edit(lambda m: m.pop("input_spec")),
        "input_spec: std 0": spec(std=[0.0] * channels),
        "input_spec: std NaN": spec(std=[float("nan")] * channels),
        "input_spec: 5 channels for a grey model": spec(channels=5),
        "input_spec: size -1": spec(size=-1),
        "input_spec: size 10^6 (a 10^12-pixel input)": spec(size=1_000_000),
        "input_spec: mean of the wrong length": spec(mean=[0.5, 0.5, 0.5, 0.5]),
        "input_spec: unknown modality": spec(modality="smell"),
        "lineage: LoRA adapter on a hub model": meta_edit(lambda m: m.update(
            adapter={"targets": ["x"], "r": 4, "alpha": 4, "base": {}}, lineage={"source": "hf:bert-base-uncased"})),
        "lineage: LoRA adapter on a path outside": meta_edit(lambda m: m.update(
            adapter={"targets": ["x"], "r": 4, "alpha": 4, "base": {}}, lineage={"source": str(outside)})),
        "weights: NaN": weights_edit(lambda st: st[first_float(st)].view(-1).__setitem__(0, float("nan"))),
        "weights: +inf": weights_edit(lambda st: st[first_float(st)].view(-1).__setitem__(0, float("inf"))),
        "weights: int8 tensor": weights_edit(lambda st: st.update({(k := first_float(st)): st[k].to(torch.int8)})),
        "weights: bool tensor": weights_edit(lambda st: st.update({(k := first_float(st)): st[k] > 0})),
        "weights: float64 tensor": weights_edit(lambda st: st.update({(k := first_float(st)): st[k].double()})),
        "weights: a wrong shape": weights_edit(lambda st: st.update({(k := first_float(st)): st[k].view(-1)[:3]})),
        "weights: a missing tensor": weights_edit(lambda st: st.pop(first_float(st))),
        "weights: an extra tensor": weights_edit(lambda st: st.update(extra=torch.zeros(2))),
        "weights: truncated": lambda b: (b / "model.safetensors").write_bytes(
            (b / "model.safetensors").read_bytes()[:-100]),
        "weights: header claims 256 TB": lying_header,
        "weights: header length larger than the file": lambda b: (b / "model.safetensors").write_bytes(
            struct.pack("<Q", 2 ** 40) + b"{}"),
        "weights: random bytes": replace_file("model.safetensors", os.urandom(4096)),
        "weights: empty file": replace_file("model.safetensors", b""),
        "weights: a pickle instead": lambda b: torch.save(_weights(b), b / "model.safetensors"),
        "weights: a symlink to a file outside": symlink("model.safetensors"),
        "weights: a folder": as_dir("model.safetensors"),
        "weights: missing": lambda b: (b / "model.safetensors").unlink(),
        "tokenizer: junk tokenizer.json beside an image model": replace_file("tokenizer.json", b"\x00" * 100),
    }


def probe_bundles(probe: Probe, src: Path) -> None:
    cat = "crafted bundles"
    base_bundle = src / "bundle"
    channels = len(_meta(base_bundle)["input_spec"].get("std") or [0])
    outside = probe.work / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    img = write_png(probe.work / "inputs" / "b.png")
    data = ["--data", "digits"]
    consumers: dict[str, Callable[[Path], list[str]]] = {
        "predict": lambda b: ["predict", str(b), str(img)],
        "evaluate": lambda b: ["evaluate", str(b), *data, "--split", "test"],
        "export": lambda b: ["export", str(b), "--out", str(b.parent / "exported.onnx")],
        "serve": lambda b: ["serve", str(b)],  # uvicorn.run is replaced: a bundle accepted never starts serving
    }
    for name, tamper in bundle_tamperings(outside, channels).items():
        for consumer, argv in consumers.items():
            if consumer != "predict" and not name.startswith(("weights: NaN", "classes: shorter", "input_spec: std 0",
                                                               "input_spec: 5 channels", "architecture: timm + ch",
                                                               "architecture: hf:", "meta: format_version '2'")):
                continue
            b = probe.work / "bundles" / f"{len(probe.outcomes)}"
            shutil.copytree(base_bundle, b, symlinks=True)
            try:
                tamper(b)
            except Exception as exc:  # noqa: BLE001
                probe.record(cat, f"{consumer} ← {name}", False, f"probe could not craft it: {exc}")
                continue
            connects0, opened0 = len(probe.connects), len(probe.opened)
            with watch(probe, outside), no_serving():
                code, printed, escaped = run_cli(argv(b))
            # a file the model never reads (a tokenizer beside an image model) may be ignored: nothing is read
            files = [str(b.name), "transferkit.json", "model.safetensors", "tokenizer.json"]
            ok, why = judge_refusal(code, printed, escaped, files, {}, may_succeed=name.startswith("tokenizer"))
            if len(probe.connects) > connects0:
                ok, why = False, f"network connection attempted: {probe.connects[connects0:][:2]}"
            if len(probe.opened) > opened0:
                ok, why = False, f"opened a file outside the bundle: {probe.opened[opened0:][:2]}"
            probe.record(cat, f"{consumer} ← {name}", ok, why)


# ------------------------------------------------------------------------------------------------------------ HTTP
def probe_http(probe: Probe, src: Path) -> None:
    from starlette.testclient import TestClient

    from transferkit.inference import TorchPredictor
    from transferkit.serve import ServiceLimits, create_app

    cat = "HTTP bodies"
    predictor = TorchPredictor.load(src)
    app = create_app(predictor, ServiceLimits(), api_key="sesame")
    client = TestClient(app, raise_server_exceptions=False)
    key = {"X-API-Key": "sesame"}
    good = png_bytes()
    good_b64 = base64.b64encode(good).decode()

    def bomb(side: int = 6300) -> bytes:
        return png_bytes((side, side), "L", 0)

    big = bomb()
    mid = png_bytes((3000, 3000), "L", 0)

    def post_json(body: object, raw: bytes | None = None, **kw: object):
        content = raw if raw is not None else json.dumps(body).encode()
        return client.post("/predict", content=content, headers={**key, "content-type": "application/json"}, **kw)

    def post_files(files: list[tuple[str, bytes]], params: dict | None = None, headers: dict | None = None):
        return client.post("/predict", files=[("files", (n, d, "image/png")) for n, d in files],
                           headers={**key, **(headers or {})}, params=params)

    def multipart_raw(body: bytes, boundary: str = "b0undary"):
        return client.post("/predict", content=body,
                           headers={**key, "content-type": f"multipart/form-data; boundary={boundary}"})

    def part(name: str, data: bytes, boundary: str = "b0undary") -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"

    two = part("a.png", good) + part("b.png", good) + b"--b0undary--\r\n"
    truncated = two[: len(part("a.png", good)) + 60]
    nested = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases: list[tuple[str, Callable[[], object], set[int], set[str] | None]] = [
        ("no API key", lambda: client.post("/predict", files=[("files", ("a.png", good, "image/png"))]), {401}, None),
        ("wrong API key", lambda: client.post("/predict", files=[("files", ("a.png", good))],
                                              headers={"X-API-Key": "x"}), {401}, None),
        ("/model without key", lambda: client.get("/model"), {401}, None),
        ("unknown path", lambda: client.get("/admin", headers=key), {404}, None),
        ("GET /predict", lambda: client.get("/predict", headers=key), {405}, None),
        ("text/plain body", lambda: client.post("/predict", content=b"hello",
                                                headers={**key, "content-type": "text/plain"}), {415}, None),
        ("no content type", lambda: client.post("/predict", content=b"hello", headers=key), {415}, None),
        ("JSON: malformed", lambda: post_json(None, b"{images: ["), {400}, {"bad_json"}),
        ("JSON: not UTF-8", lambda: post_json(None, b'{"images": ["\xff"]}'), {400}, {"bad_json"}),
        ("JSON: a list", lambda: post_json([good_b64]), {400}, None),
        ("JSON: images not a list", lambda: post_json({"images": good_b64}), {400}, None),
        ("JSON: no images", lambda: post_json({"images": []}), {400}, {"no_images"}),
        ("JSON: image a number", lambda: post_json({"images": [7]}), {400}, None),
        ("JSON: bad base64", lambda: post_json({"images": ["@@@"]}), {400}, {"bad_base64"}),
        ("JSON: base64 of text", lambda: post_json({"images": [base64.b64encode(b"hello").decode()]}), {422},
         {"bad_image"}),
        ("JSON: empty image", lambda: post_json({"images": [""]}), {400, 422}, None),
        ("JSON: top_k 0", lambda: post_json({"images": [good_b64], "top_k": 0}), {400}, None),
        ("JSON: top_k -3", lambda: post_json({"images": [good_b64], "top_k": -3}), {400}, None),
        ("JSON: top_k 1e400", lambda: post_json(None, b'{"images": ["%s"], "top_k": 1e400}' % good_b64.encode()),
         {400}, None),
        ("JSON: top_k Infinity", lambda: post_json(None, b'{"images": ["%s"], "top_k": Infinity}' %
                                                   good_b64.encode()), {400}, None),
        ("JSON: top_k NaN", lambda: post_json(None, b'{"images": ["%s"], "top_k": NaN}' % good_b64.encode()),
         {400}, None),
        ("JSON: top_k 5,000 digits", lambda: post_json(None, b'{"images": ["%s"], "top_k": %s}' %
                                                       (good_b64.encode(), b"9" * 5000)), {400}, None),
        ("JSON: top_k 2.5", lambda: post_json({"images": [good_b64], "top_k": 2.5}), {400}, None),
        ("JSON: top_k a string", lambda: post_json({"images": [good_b64], "top_k": "many"}), {400}, None),
        ("JSON: top_k true", lambda: post_json({"images": [good_b64], "top_k": True}), {400}, None),
        ("JSON: top_k 10^9", lambda: post_json({"images": [good_b64], "top_k": 10 ** 9}), {400}, None),
        ("JSON: 100,000-deep nesting", lambda: post_json(None, nested), {400, 413}, None),
        ("JSON: 33 images", lambda: post_json({"images": [good_b64] * 33}), {413}, {"too_many_images"}),
        ("JSON: name a 1 MB string", lambda: post_json({"images": [{"name": "n" * 1_000_000, "data": good_b64}]}),
         {200, 400}, None),
        ("query: top_k=abc", lambda: post_files([("a.png", good)], params={"top_k": "abc"}), {400}, None),
        ("query: top_k=1e400", lambda: post_files([("a.png", good)], params={"top_k": "1e400"}), {400}, None),
        ("query: top_k=-1", lambda: post_files([("a.png", good)], params={"top_k": "-1"}), {400}, None),
        ("multipart: truncated inside the 2nd file", lambda: multipart_raw(truncated), {400}, {"bad_multipart"}),
        ("multipart: no closing boundary", lambda: multipart_raw(two[:-len(b"--b0undary--\r\n")]), {400},
         {"bad_multipart"}),
        ("multipart: no boundary parameter", lambda: client.post(
            "/predict", content=two, headers={**key, "content-type": "multipart/form-data"}), {400}, None),
        ("multipart: garbage", lambda: multipart_raw(os.urandom(2000)), {400}, None),
        ("multipart: empty body", lambda: multipart_raw(b""), {400}, None),
        ("form fields only (urlencoded)", lambda: client.post("/predict", data={"top_k": "2"}, headers=key), {415},
         None),
        ("multipart: a field, no file", lambda: multipart_raw(
            b'--b0undary\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n2\r\n--b0undary--\r\n'), {400},
         {"no_images"}),
        ("multipart: top_k field 'x'", lambda: client.post("/predict", files=[("files", ("a.png", good))],
                                                           data={"top_k": "x"}, headers=key), {400}, None),
        ("multipart: 33 files", lambda: post_files([(f"{i}.png", good) for i in range(33)]), {413},
         {"too_many_images"}),
        ("multipart: 1,000 fields", lambda: client.post("/predict", files=[("files", ("a.png", good))],
                                                        data={f"f{i}": "x" for i in range(1000)}, headers=key),
         {400, 413}, None),
        ("image: not an image", lambda: post_files([("a.png", b"hello world")]), {422}, {"bad_image"}),
        ("image: empty file", lambda: post_files([("a.png", b"")]), {422, 400}, None),
        ("image: truncated PNG", lambda: post_files([("a.png", png_bytes((64, 64), "RGB", 9)[:80])]), {422},
         {"bad_image"}),
        ("image: a 40-MP PNG", lambda: post_files([("big.png", bomb(6400))]), {413, 422}, None),
        ("image: 32 × 39.7-MP PNGs", lambda: post_files([(f"{i}.png", big) for i in range(32)]), {413, 422}, None),
        ("image: 32 × 9-MP PNGs", lambda: post_files([(f"{i}.png", mid) for i in range(32)]), {413, 429, 503, 200},
         None),
        ("image: a 100,000 × 1 PNG", lambda: post_files([("strip.png", png_bytes((100_000, 1), "L", 0))]),
         {200, 413, 422}, None),
        ("image: one good, one bad", lambda: post_files([("a.png", good), ("b.png", b"junk")]), {422},
         {"bad_image"}),
        ("body: declared 100 GB", lambda: client.post("/predict", content=b"x",
                                                      headers={**key, "content-type": "application/json",
                                                               "content-length": str(10 ** 11)}), {413, 400}, None),
        ("body: 21 MB", lambda: post_json(None, b'{"images": ["' + b"A" * 21_000_000 + b'"]}'), {413}, None),
        ("body: Content-Length not a number", lambda: client.post(
            "/predict", content=b"{}", headers={**key, "content-type": "application/json",
                                                 "content-length": "lots"}), {400}, None),
    ]
    for name, send, statuses, codes in cases:
        try:
            resp = send()
            status = resp.status_code
            try:
                body = resp.json()
            except ValueError:
                body = None
        except Exception as exc:  # noqa: BLE001 - a client-side failure is recorded, not fatal
            probe.record(cat, name, False, f"request failed: {exc.__class__.__name__}: {exc}")
            continue
        ok = status in statuses
        why = "" if ok else f"status {status}, expected {sorted(statuses)}: {str(body)[:200]}"
        if ok and status >= 400:
            if not (isinstance(body, dict) and "error" in body and "detail" in body):
                ok, why = False, f"error body not JSON {{error, detail}}: {str(body)[:200]}"
            elif codes and body["error"] not in codes:
                ok, why = False, f"code {body['error']}, expected {sorted(codes)}"
            elif status >= 500 or "Traceback" in body["detail"]:
                ok, why = False, f"internal detail exposed: {body['detail'][:200]}"
        after = post_files([("a.png", good)])
        if after.status_code != 200:
            ok, why = False, f"the next good request got {after.status_code}"
        probe.record(cat, name, ok, why)
    info = client.get("/model", headers=key).json()
    leaks = [k for k in ("lineage", "metrics") if info.get(k)]
    probe.record(cat, "/model exposes lineage (local paths) or test metrics by default", not leaks, f"found {leaks}")
    docs = client.get("/docs")
    cdn = docs.status_code == 200 and "cdn" in docs.text.lower()
    probe.record(cat, "/docs loads assets from a CDN", not cdn, "the docs page references a CDN")


# ---------------------------------------------------------------------------------------- data and CSV lists
def probe_data(probe: Probe, src: Path) -> None:
    cat = "data and CSV lists"
    work = probe.work / "data"
    bundle = src / "bundle"
    out = work / "runs"

    def folder(name: str, classes: dict[str, int]) -> Path:
        root = work / name
        for cls, n in classes.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_png(root / cls / f"{i}.png", value=30 * i % 255)
        return root

    def text_file(name: str, content: bytes) -> Path:
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return p

    def npz(name: str, **arrays: object) -> Path:
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, **arrays)
        return p

    img = write_png(work / "imgs" / "ok.png")
    (work / "imgs" / "sub").mkdir(exist_ok=True)
    train = lambda data: ["transfer", "--source", str(src), "--data", data, "--epochs", "1",  # noqa: E731
                          "--no-progress", "--out", str(out / f"r{len(probe.outcomes)}")]
    predict = lambda *inputs: ["predict", str(bundle), *map(str, inputs)]  # noqa: E731
    x_ok = np.zeros((20, 8, 8), np.uint8)
    sub, missing = work / "imgs" / "sub", work / "nope.png"
    json_line = b'{"text": "a", "label": "x"}\n'

    def tx(name: str, content: bytes) -> str:
        return f"text:{text_file(name, content)}"

    cases: list[tuple[str, list[str], list[str]]] = [
        ("image_folder with one class", train(f"image_folder:{folder('one', {'cat': 6})}"), ["one", "class"]),
        ("image_folder with no images", train(f"image_folder:{folder('none', {'cat': 0, 'dog': 0})}"), ["none"]),
        ("image_folder that does not exist", train(f"image_folder:{work / 'missing'}"), ["missing"]),
        ("image_folder of unreadable files", train(f"image_folder:{_junk_folder(work / 'junk')}"), ["junk"]),
        ("image_folder of unreadable files --strict", [*train(f"image_folder:{_junk_folder(work / 'junk2')}"),
                                                       "--strict"], ["junk2"]),
        ("npz without x", train(f"npz:{npz('nox.npz', y=np.zeros(20, int))}"), ["nox.npz"]),
        ("npz with lengths that disagree", train(f"npz:{npz('len.npz', x=x_ok, y=np.zeros(3, int))}"), ["len.npz"]),
        ("npz with labels out of range", train(f"npz:{npz('rng.npz', x=x_ok, y=np.arange(20) - 5)}"), ["rng.npz"]),
        ("npz with NaN images", train(f"npz:{npz('nan.npz', x=np.full((20, 8, 8), np.nan), y=np.arange(20) % 2)}"),
         ["nan.npz"]),
        ("npz with one class", train(f"npz:{npz('onec.npz', x=x_ok, y=np.zeros(20, int))}"), ["onec.npz", "class"]),
        ("npz that is not an npz", train(f"npz:{text_file('fake.npz', b'PK not really')}"), ["fake.npz"]),
        ("text: a 200 KiB field", train(tx("big.csv", b"text,label\n" + b"a" * 200_000 + b",x\n" + b"b,y\n" * 10)),
         ["big.csv"]),
        ("text: not UTF-8", train(tx("latin.csv", "text,label\ncafé,a\nthé,b\n".encode("latin-1"))), ["latin.csv"]),
        ("text: no label column", train(tx("nolabel.csv", b"text\nhello\nworld\n")), ["nolabel.csv"]),
        ("text: header only", train(tx("hdr.csv", b"text,label\n")), ["hdr.csv"]),
        ("text: empty file", train(tx("empty.csv", b"")), ["empty.csv"]),
        ("text: one class", train(tx("onet.csv", b"text,label\n" + b"hello,a\n" * 10)), ["onet.csv", "class"]),
        ("text: JSONL line not an object", train(tx("bad.jsonl", json_line + b"[1, 2]\n")), ["bad.jsonl"]),
        ("text: JSONL broken line", train(tx("broken.jsonl", json_line + b'{"text": \n')), ["broken.jsonl"]),
        ("predict: CSV list not UTF-8", predict(text_file("list-latin.csv", f"path\n{img}\ncafé.png\n".encode(
            "latin-1"))), ["list-latin.csv"]),
        ("predict: CSV list names a folder", [*predict(text_file("list-dir.csv", f"path\n{sub}\n".encode())),
                                              "--strict"], ["sub"]),
        ("predict: CSV list names a missing file", [*predict(text_file("list-miss.csv", f"path\n{missing}\n".encode(
            ))), "--strict"], ["nope.png"]),
        ("predict: CSV list empty", predict(text_file('list-empty.csv', b"")), ["list-empty.csv"]),
        ("predict: CSV list of 200 KiB paths", [*predict(text_file("list-long.csv", b"path\n" + b"a" * 200_000
                                                                   + b"\n")), "--strict"], ["list-long.csv"]),
        ("predict: a missing input", predict(work / "nothing-here.png"), ["nothing-here.png"]),
        ("predict: a junk image --strict", [*predict(_junk_folder(work / "junk3") / "x" / "0.png"), "--strict"],
         ["0.png"]),
        ("predict: --output with an unknown extension", [*predict(img), "--output", str(work / "p.xlsx")],
         ["p.xlsx"]),
        ("predict: top-k 0", [*predict(img), "--top-k", "0"], ["top-k", "top_k"]),
        ("--classes 99 (no such class)", [*train("digits"), "--classes", "99"], ["99"]),
        ("--classes abc", [*train("digits"), "--classes", "abc"], ["abc"]),
        ("--labels-per-class 10^6", [*train("digits"), "--labels-per-class", "1000000"], ["1000000"]),
        ("--epochs -1", [*train("digits"), "--epochs", "-1"], ["epochs"]),
        ("--config not YAML", [*train("digits"), "--config", str(text_file("bad.yaml", b"a: [1, 2\n"))],
         ["bad.yaml"]),
        ("--config a YAML list", [*train("digits"), "--config", str(text_file("list.yaml", b"- 1\n- 2\n"))],
         ["list.yaml"]),
        ("--config unknown key", [*train("digits"), "--config", str(text_file("unk.yaml", b"evil_key: 1\n"))],
         ["evil_key"]),
        ("--config a folder", [*train("digits"), "--config", str(work)], [work.name]),
        ("--data unknown", train("no_such_dataset"), ["no_such_dataset"]),
        ("--source a folder of photos", ["transfer", "--source", str(work / "imgs"), "--data", "digits",
                                         "--out", str(out / "src-photos")], ["imgs"]),
        ("resume: a folder that is no run", ["resume", str(work / "imgs")], ["imgs"]),
        ("resume: a finished run", ["resume", str(src)], [src.name]),
        ("resume: nothing there", ["resume", str(work / "never")], ["never"]),
    ]
    for name, argv, names in cases:
        t0 = time.time()
        code, printed, escaped = run_cli(argv)
        ok, why = judge_refusal(code, printed, escaped, names, {src: tree_hash(src)})
        probe.record(cat, name, ok, why + ("" if ok else f" ({time.time() - t0:.0f} s)"))


def _junk_folder(root: Path) -> Path:
    for cls in ("x", "y"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(50))
    return root


# ------------------------------------------------------------------------------------------------------- driver
CATEGORIES = {"output": probe_output_paths, "bundles": probe_bundles, "http": probe_http, "data": probe_data}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=sorted(CATEGORIES), help="run these categories only")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "security.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="tk-security-"))
    probe = Probe(work)
    t0 = time.time()
    try:
        src = make_source(work)
        for key, fn in CATEGORIES.items():
            if args.only and key not in args.only:
                continue
            print(f"\n== {key}", flush=True)
            fn(probe, src)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work folder:", work)
    rows: dict[str, list[int]] = {}
    for o in probe.outcomes:
        rows.setdefault(o.category, [0, 0])
        rows[o.category][0] += 1
        rows[o.category][1] += o.clean
    print("\n| category | inputs tried | handled cleanly |\n|---|---|---|")
    for cat, (n, ok) in rows.items():
        print(f"| {cat} | {n} | {ok} |")
    total, clean = sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())
    print(f"| **all** | **{total}** | **{clean}** |")
    failed = [o for o in probe.outcomes if not o.clean]
    if failed:
        print("\nnot handled cleanly:")
        for o in failed:
            print(f"- {o.category}: {o.name} — {o.detail[:300]}")
    print(f"\n{time.time() - t0:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "seconds": round(time.time() - t0, 1), "summary": rows, "total": total, "clean": clean,
        "outcomes": [o.__dict__ for o in probe.outcomes]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
