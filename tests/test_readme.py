"""Every ``transferkit …`` command line of README.md and examples/ runs here, on tiny settings (issue 27).

**What counts as a command.** Every fenced ``bash``/``sh``/``shell``/``console`` block of ``README.md`` and of the
Markdown and shell files under ``examples/``; ``\\`` continuations are joined and comments dropped (as a shell
would); each line that then starts with ``transferkit`` is a command. ``transferkit A | B | C`` (the README's way of
listing alternatives) is three commands. Other lines (``make``, ``curl``, ``source``) are not ours to run.

**How a command runs.** In-process, through :func:`transferkit.cli.main.main` (no subprocess start-up), in a fresh
working directory per block, so a later line of a block sees what the earlier ones wrote (``runs/src`` made by
``pretrain`` and used by ``transfer``) and blocks never see each other's files. Each directory starts as a copy
of :func:`world`: what the README assumes its reader has (``runs/src``, ``runs/tgt``, ``photos/``, ``shirt.png``,
a teacher run, an exported model, …), built once per session, and ``$TRANSFERKIT_DATA`` points at miniature
datasets made here: Fashion-MNIST in its own file format (scikit-learn's digits, enlarged to 28×28, 20 training
and 8 test images per class, under Fashion-MNIST's class names — so ``--data fashion_mnist``, its shifted variants
and every ``--classes`` list run unchanged) and AG News (short generated sentences under its four topics).

**Tiny settings.** :func:`shrink` rewrites each command before it runs: the values of :data:`SMALL` (1 epoch,
1 seed, 32-px ImageNet inputs, 1 tuning trial, …), labels per class cut to a few (``1,5,10,50,all`` →
``1,3,all``), the bounded defaults of :data:`ADD` for options a line leaves at a long default (600 few-shot
episodes, 100 lr-find steps, …), and ``...`` (the README's "the options above") replaced by :data:`ELLIPSIS` for
that command plus a ``--out`` of its own. ``serve`` runs for real up to the point where it would bind a port:
there the app answers ``/health`` and ``/predict`` through a test client instead (:func:`serve_smoke`).

**Skips.** :data:`SKIPS` names each command that is not run, with the reason; a skip that matches no README line
fails (:func:`test_every_skip_names_a_readme_command`), and a new README command that is neither runnable here
nor listed there fails its block's test — so a README line can never crash again unnoticed.
"""

from __future__ import annotations

import gzip
import re
import shlex
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in (".md", ".sh"))]
SHELL_FENCES = ("bash", "sh", "shell", "console")

# flag → value for a tiny run of what the line asks for
SMALL = {
    "--epochs": "1", "--seeds": "1", "--trials": "1", "--verify": "1", "--image-size": "32", "--unlabelled": "20",
    "--source-per-class": "10", "--target-limit": "40", "--cv": "2", "--budget": "2s", "--warmup-epochs": "1",
    # DDP: in-process, Lightning would re-execute the test runner for the second process; two real processes
    # through this same CLI are tests/cli/test_faults.py::test_two_process_ddp_matches_one_process_…
    "--devices": "1",
}
# options added when a line leaves them at a default that is long for a test (per command)
ADD = {
    "pretrain": ["--epochs", "1"], "transfer": ["--epochs", "1"], "compare": ["--epochs", "1"],
    "curve": ["--epochs", "1"], "distill": ["--epochs", "1", "--unlabelled", "20"], "select": ["--epochs", "1"],
    "tune": ["--trials", "1", "--epochs", "1"], "multitask": ["--epochs", "1"], "lr-find": ["--steps", "10"],
    "adapt": ["--epochs", "1", "--source-per-class", "10", "--target-limit", "40", "--target-val", "20",
              "--test-limit", "40", "--batch-size", "16", "--no-diagnostics", "--no-plots"],
    "fewshot": ["--iterations", "1", "--max-pairs", "8", "--episodes", "5", "--n-query", "3"],
    "fuse": ["--fit-per-class", "4", "--gate-epochs", "5"], "auto": ["--budget", "2s"],
}
# what "..." stands for in a line of that command (the options of the line above it in the README)
ELLIPSIS = {
    "transfer": ["--source", "runs/src", "--data", "fashion_mnist", "--classes", "2,3,4,6,7",
                 "--labels-per-class", "10"],
    "tune": ["--source", "runs/src", "--data", "fashion_mnist", "--classes", "2,3,4,6,7", "--labels-per-class", "10",
             "--strategy", "finetune"],
    "distill": ["--teacher", "runs/mnv2_finetune", "--student", "seed_cnn", "--data", "fashion_mnist",
                "--labels-per-class", "100"],
    "adapt": [],  # its defaults are the README's source and target
}
# lines that need more than SMALL's 1 epoch: (a text in the line, the epochs it needs, why)
MIN_EPOCHS = [("preset=two_phase", "4", "head_epochs (3) + one epoch of the second phase"),
              ("unfreeze_every=2", "3", "the first unfreezing happens after 2 epochs"),
              ("--warmup-epochs", "2", "the warm-up (1 epoch here) must leave an epoch of the schedule")]
IMAGENET_SOURCES = ("mobilenet_v2", "efficientnet_lite", "timm:", "torchvision:")
# commands not run, each with its reason (keys as extract_commands writes them)
SKIPS: dict[str, str] = {}
TIMES: dict[str, float] = {}


# --- extraction ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    doc: str  # README.md
    line: int  # where the command starts
    text: str  # the command as a shell would split it, re-joined with single spaces (comments dropped)
    argv: tuple[str, ...]  # after "transferkit"


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    commands: tuple[Command, ...]

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def extract_blocks(text: str, doc: str) -> list[Block]:
    """The shell blocks of a Markdown (or shell) file with their ``transferkit`` commands (see the module doc)."""
    lines = text.splitlines()
    if not doc.endswith(".md"):
        return [b for b in [Block(doc, 1, tuple(_commands(lines, 1, doc)))] if b.commands]
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^\s*```\s*(\w*)", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if re.match(r"^\s*```\s*$", lines[j])), len(lines))
        if fence.group(1) in SHELL_FENCES:
            commands = _commands(lines[i + 1:end], i + 2, doc)
            if commands:
                blocks.append(Block(doc, i + 1, tuple(commands)))
        i = end + 1
    return blocks


def _commands(lines: list[str], first: int, doc: str) -> list[Command]:
    out, buf, start = [], "", None
    for n, raw in enumerate(lines, first):
        start = n if start is None else start
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        tokens = shlex.split(buf + raw, comments=True)
        buf, line, start = "", start, None
        if not tokens or tokens[0] != "transferkit":
            continue
        segments = [[]]
        for t in tokens[1:]:
            if t == "|":
                segments.append([])
            else:
                segments[-1].append(t)
        if len(segments) > 1 and all(len(s) == 1 for s in segments[1:]):  # "transferkit A | B | C": alternatives
            out += [Command(doc, line, f"transferkit {s[0]}", (s[0],)) for s in segments]
        else:  # a real pipe: the transferkit part is ours
            out.append(Command(doc, line, " ".join(["transferkit", *segments[0]]), tuple(segments[0])))
    return out


def all_blocks() -> list[Block]:
    return [b for doc in DOCS
            for b in extract_blocks(doc.read_text(encoding="utf-8"), doc.relative_to(ROOT).as_posix())]


# --- tiny settings ---------------------------------------------------------------------------------------------

def small_budgets(value: str) -> str:
    """``"1,5,10,50,all"`` → ``"1,3,all"`` (the smallest and largest number, and "all"); ``"5,10"`` → ``"2,3"``;
    ``"10"`` → ``"2"``: still distinct and increasing, a few images per class."""
    parts = [p.strip() for p in value.split(",")]
    nums = sorted(int(p) for p in parts if p.isdigit())
    kept = nums if len(nums) <= 2 else [nums[0], nums[-1]]
    small = [str(min(v, i + 2)) for i, v in enumerate(kept)]
    return ",".join([*small, *(p for p in parts if not p.isdigit())])


def shrink(argv: tuple[str, ...], line: int) -> list[str]:
    """``argv`` (after ``transferkit``) with the tiny settings of the module doc."""
    sub, rest = argv[0], list(argv[1:])
    if "..." in rest:
        given = {t for t in rest if t.startswith("--")}
        base = ELLIPSIS.get(sub)
        if base is None:
            raise AssertionError(f"'transferkit {sub} ...': add what '...' stands for to ELLIPSIS in {__file__}")
        fill = [t for i, t in enumerate(base) if not (t.startswith("--") and t in given)
                and not (i and base[i - 1].startswith("--") and base[i - 1] in given)]
        if "--out" not in given:
            fill += ["--out", f"runs/{sub}-L{line}"]
        i = rest.index("...")
        rest[i:i + 1] = fill
    out = []
    for i, t in enumerate(rest):
        prev = rest[i - 1] if i else ""
        if prev in SMALL:
            t = SMALL[prev]
        elif prev == "--labels-per-class":
            t = small_budgets(t)
        out.append(t)
    for j in range(0, len(ADD.get(sub, [])), 2):
        flag, value = ADD[sub][j:j + 2]
        if flag not in out:
            out += [flag, value]
    for text, epochs, _why in MIN_EPOCHS:
        if text in out and "--epochs" in out:
            out[out.index("--epochs") + 1] = epochs
    source = out[out.index("--source") + 1] if "--source" in out else ""
    if sub in ("transfer", "select") and "--image-size" not in out and any(s in source for s in IMAGENET_SOURCES):
        out += ["--image-size", "32"]
    return [sub, *out]


# --- the world the README assumes ------------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as Fashion-MNIST ships it (gzip; magic 2049 labels / 2051 images, big-endian sizes)."""
    header = struct.pack(">I", 0x800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), compresslevel=1))


def _mini_fashion(root: Path) -> None:
    """A miniature Fashion-MNIST: digits 0-9 enlarged to 28×28, 20 training and 8 test images per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.stack([np.asarray(Image.fromarray((im * 16).clip(0, 255).astype(np.uint8)).resize((28, 28)))
                       for im in d.images])
    root.mkdir(parents=True)
    for prefix, lo, hi in (("train", 0, 20), ("t10k", 20, 28)):
        idx = np.concatenate([np.flatnonzero(d.target == c)[lo:hi] for c in range(10)])
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images[idx])
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", d.target[idx].astype(np.uint8))


def _mini_news(root: Path) -> None:
    """A miniature AG News (labels 1-4: World, Sports, Business, Sci/Tech) and a ``text:`` folder and list."""
    from .conftest import TOPICS, topic_texts

    topics = dict(zip(TOPICS, ("2", "3", "4", "1"), strict=True))  # sports, business, science, weather → AG labels
    ag = root / "data" / "ag_news"
    ag.mkdir(parents=True)
    for split, n, seed in (("train", 24, 0), ("test", 20, 1)):
        rows = [[topics[label], text.split(" ", 3)[0], text] for text, label in topic_texts(n, seed)]
        _csv(ag / f"{split}.csv", ["label", "title", "description"], rows)
    (root / "news").mkdir()
    for split, n, seed in (("train", 12, 2), ("test", 4, 3)):
        rows = [[text.split(" ", 3)[0], text, label] for text, label in topic_texts(n, seed)]
        _csv(root / "news" / f"{split}.csv", ["title", "description", "topic"], rows)
    _csv(root / "headlines.csv", ["title", "description"],
         [["Storm", "Heavy rain is expected in Lima tonight."], ["Cup", "The striker scored twice in the final."]])


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


def _media(root: Path) -> None:
    """Images the README names: a labelled ``photos/`` folder, single images, a CSV list, a class map."""
    from PIL import Image

    from transferkit.data import get_dataset

    ds = get_dataset("fashion_mnist", "test")
    for cls in ("Coat", "Shirt"):
        (root / "photos" / cls).mkdir(parents=True)
        for j, i in enumerate(np.flatnonzero(ds.labels == ds.classes.index(cls))[:6]):
            Image.fromarray(ds.images[i]).save(root / "photos" / cls / f"{j}.png")
    for name, i in (("shirt.png", 0), ("extra.png", 1), ("shoe.png", 2), ("boot.jpg", 3)):
        Image.fromarray(ds.images[i]).convert("RGB" if name.endswith(".jpg") else "L").save(root / name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "cat.jpg")
    (root / "list.csv").write_text("path\nshirt.png\nphotos/Coat/0.png\n", encoding="utf-8")
    (root / "map.yaml").write_text("Sneaker: running shoe\n", encoding="utf-8")


def _shrunk_examples(root: Path) -> None:
    """examples/ with every labels_per_class cut to 3 and 1 epoch (the multitask spec names 500 labels)."""
    def small(node):
        if isinstance(node, dict):
            return {k: (min(v, 3) if k == "labels_per_class" and isinstance(v, int) else 1 if k == "epochs" else
                        small(v)) for k, v in node.items()}
        return [small(v) for v in node] if isinstance(node, list) else node

    for p in (ROOT / "examples").rglob("*.yaml"):
        dest = root / p.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(yaml.safe_dump(small(yaml.safe_load(p.read_text()))), encoding="utf-8")


@pytest.fixture(scope="session")
def world_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme-world")


@pytest.fixture
def isolated_data(world_root, monkeypatch):
    """``$TRANSFERKIT_DATA`` → the miniature datasets, with the in-process dataset caches emptied before and after
    (the real Fashion-MNIST of other tests and the miniature one must never meet)."""
    from transferkit.data import registry, shifted

    def clear():
        for f in vars(shifted).values():
            if hasattr(f, "cache_clear"):
                f.cache_clear()

    monkeypatch.setattr(registry, "_CACHE", {})
    monkeypatch.setenv("TRANSFERKIT_DATA", str(world_root / "data"))
    clear()
    yield
    clear()


@pytest.fixture
def one_thread(monkeypatch):
    """One intra-op thread for torch and BLAS, kept even when a job asks for every core (``set_threads``): these
    tensors are tiny, and on a 2-core machine shared with other work two spinning threads are 3-10× slower."""
    import torch
    from threadpoolctl import threadpool_limits

    before, real = torch.get_num_threads(), torch.set_num_threads
    real(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    with threadpool_limits(1):
        yield
    real(before)


@pytest.fixture
def world(world_root, isolated_data, one_thread) -> Path:
    """The files the README assumes (built once per session): see the module doc."""
    from transferkit.cli.main import main

    marker = world_root / ".built"
    if marker.exists():
        return world_root / "files"
    files = world_root / "files"
    files.mkdir()
    _mini_fashion(world_root / "data" / "fashion_mnist")
    _mini_news(files)
    shutil.move(str(files / "data" / "ag_news"), world_root / "data" / "ag_news")
    _media(files)
    _shrunk_examples(files)
    runs = [
        "pretrain --data fashion_mnist --classes 0,1,5,8,9 --epochs 1 --out runs/src",
        "transfer --source runs/src --data fashion_mnist --classes 2,3,4,6,7 --labels-per-class 3 --epochs 1 "
        "--out runs/tgt",
        # the distillation teacher the README names: a MobileNetV2 transfer, here a linear probe at 32 px
        "transfer --source mobilenet_v2 --image-size 32 --data fashion_mnist --labels-per-class 3 --epochs 1 "
        "--strategy linear_probe --out runs/mnv2_finetune",
        "export runs/tgt",  # runs/tgt/export/model.onnx, which `serve --backend onnx` lines name
    ]
    with _chdir(files):
        for line in runs:
            t0 = time.perf_counter()
            assert main([*line.split(), *(["--no-progress"] if line.startswith(("pretrain", "transfer")) else [])]) == 0
            TIMES[f"world: {line[:50]}"] = time.perf_counter() - t0
        for k in range(3):  # fusion members: fine-tunes of one source with the same classes
            shutil.copytree("runs/tgt", f"runs/ft{k}")
        shutil.copytree("runs/src", "runs/source")  # the multitask section's name for the source (auto uses it)
        shutil.copytree("runs/tgt/bundle", "bundles/shirts")
        shutil.copytree("runs/tgt/export", "exported")  # `predict exported/ … --backend onnx`
        t0 = time.perf_counter()
        _resnet18_weights(Path("resnet18.safetensors"))
        TIMES["world: resnet18"] = time.perf_counter() - t0
    marker.touch()
    return files


def _resnet18_weights(path: Path) -> None:
    """A weights file for ``--source timm:resnet18 --weights resnet18.safetensors`` (random, but a real file)."""
    import timm
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(path))


class _chdir:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, None

    def __enter__(self):
        import os

        self.old = Path.cwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        import os

        os.chdir(self.old)


def _fresh_copy(world: Path, dest: Path) -> None:
    """The world for one block: run and bundle folders copied (a block may replace them), the rest linked."""
    dest.mkdir()
    for p in world.iterdir():
        if p.name in ("runs", "bundles", "exported"):
            shutil.copytree(p, dest / p.name)
        else:
            (dest / p.name).symlink_to(p, target_is_directory=p.is_dir())


# --- special cases ---------------------------------------------------------------------------------------------

def serve_smoke(server) -> None:
    """Stands in for ``uvicorn.Server.run``: the app the command built answers instead of listening on a port."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(buf, "PNG")
    with TestClient(server.config.app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        info = client.get("/model")
        if info.status_code == 200 and info.json()["input_spec"]["modality"] == "text":
            r = client.post("/predict", json={"texts": ["Shares of Acme rose after profits beat forecasts."]})
        else:
            r = client.post("/predict", files={"files": ("a.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200 or r.json()["error"] == "unauthorized", r.text


def interrupt_a_transfer(out: str) -> None:
    """Before ``transferkit resume OUT``: a transfer to OUT stopped as Ctrl-C stops it (a checkpoint is saved)."""
    from transferkit.cli.main import main
    from transferkit.engine.checkpoints import ResumeCheckpoints

    real = ResumeCheckpoints.on_train_batch_end

    def ctrl_c(self, trainer, *args):
        self._requested = 2  # SIGINT, as the signal handler records it
        return real(self, trainer, *args)

    ResumeCheckpoints.on_train_batch_end = ctrl_c
    try:
        assert main(["transfer", "--source", "runs/src", "--data", "fashion_mnist", "--classes", "2,3,4,6,7",
                     "--labels-per-class", "3", "--epochs", "2", "--batch-size", "4", "--out", out, "--overwrite",
                     "--no-progress"]) == 130
    finally:
        ResumeCheckpoints.on_train_batch_end = real


BEFORE = {"transferkit resume runs/tgt": lambda: interrupt_a_transfer("runs/tgt")}


# --- the tests -------------------------------------------------------------------------------------------------

BLOCKS = all_blocks()


def test_extraction_joins_continuations_drops_comments_and_splits_alternatives():
    text = """intro
```bash
# a comment line
transferkit a | b      # two commands
transferkit transfer --data x \\
                     --out "runs/y z"   # continued
make demo
```
```python
transferkit = 1
```
"""
    (block,) = extract_blocks(text, "X.md")
    assert [(c.line, c.text) for c in block.commands] == [
        (4, "transferkit a"), (4, "transferkit b"), (5, "transferkit transfer --data x --out runs/y z")]
    assert block.commands[2].argv == ("transfer", "--data", "x", "--out", "runs/y z")
    assert shrink(("transfer", "...", "--epochs", "30", "--labels-per-class", "1,5,10,50,all"), 9) == [
        "transfer", *ELLIPSIS["transfer"][:-2], "--out", "runs/transfer-L9", "--epochs", "1", "--labels-per-class",
        "1,3,all"]


def test_every_skip_names_a_readme_command():
    texts = {c.text for b in BLOCKS for c in b.commands}
    assert len(texts) >= 40, f"only {len(texts)} README commands found: is the extraction broken?"
    stale = [t for t in [*SKIPS, *BEFORE] if t not in texts]
    assert not stale, f"no README command reads {stale}: update SKIPS/BEFORE in {__file__}"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_readme_block(block, world, tmp_path, monkeypatch, capsys):
    import uvicorn

    from transferkit.cli.main import main

    monkeypatch.setattr(uvicorn.Server, "run", serve_smoke)
    _fresh_copy(world, tmp_path / "cwd")
    monkeypatch.chdir(tmp_path / "cwd")
    for cmd in block.commands:
        if cmd.text in SKIPS:
            continue
        if cmd.text in BEFORE:
            BEFORE[cmd.text]()
        argv = shrink(cmd.argv, cmd.line)
        start = time.perf_counter()
        rc = main(argv)
        TIMES[f"{cmd.doc}:{cmd.line} {cmd.text[:60]}"] = time.perf_counter() - start
        output = capsys.readouterr()
        where = f"{cmd.doc}:{cmd.line}: '{cmd.text}' (run as 'transferkit {shlex.join(argv)}')"
        assert rc == 0, f"{where} exited with {rc}:\n{output.out[-3000:]}\n{output.err[-2000:]}"
        for flag in ("--out", "--output"):  # what the line says it writes is there
            if flag in argv and argv[argv.index(flag) + 1] != "-":
                assert Path(argv[argv.index(flag) + 1]).exists(), f"{where} wrote no {flag}"


@pytest.fixture(scope="module", autouse=True)
def _report_times():
    yield
    import os

    if os.environ.get("README_TIMES"):
        Path(os.environ["README_TIMES"]).write_text("\n".join(f"{v:6.2f} {k}" for k, v in TIMES.items()) + "\n")
