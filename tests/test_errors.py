"""The library names options as Python does; the command line alone shows them as flags (issue 28)."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from transferkit.errors import ConfigError, spell_flags

NAMES = {"image_size", "overwrite", "resume", "out", "lr", "labels_per_class", "options"}


@pytest.mark.parametrize(("message", "shown"), [
    ("resnet needs image_size=224 (a fixed size), got 96", "resnet needs --image-size 224 (a fixed size), got 96"),
    ("pass overwrite=True to replace it.", "pass --overwrite to replace it."),
    ("start afresh with resume=False", "start afresh with --no-resume"),
    ("out=runs/a exists; choose another out=…", "--out runs/a exists; choose another --out …"),
    ("(labels_per_class=5, lr=0.1)", "(--labels-per-class 5, --lr 0.1)"),
    # values quoted from the user and keywords that are no option stay as they were written
    ("'finetune:lr=0.1' is not a strategy", "'finetune:lr=0.1' is not a strategy"),
    ("use the option solver=sgd or bn=frozen", "use the option solver=sgd or bn=frozen"),
    ("x,lr=0.1 and a.lr=2", "x,lr=0.1 and a.lr=2"),
])
def test_spell_flags_rewrites_only_option_keywords(message, shown):
    assert spell_flags(message, NAMES) == shown


def test_config_error_names_the_field_and_its_flag():
    err = ConfigError("options", "an option of method 'dann': dann.hidden", "nope")
    assert str(err) == "options: expected an option of method 'dann': dann.hidden, got 'nope'"
    assert err.as_flag().startswith("--options: ") and err.as_flag({"options": "--option"}).startswith("--option: ")
    assert isinstance(err, ValueError)


def test_cli_shows_library_keywords_as_flags(tmp_path, capsys):
    from transferkit.cli.main import main

    (tmp_path / "notes.txt").write_text("mine")  # a folder that is not a transferkit output is never written into
    rc = main(["transfer", "--source", "random:seed_cnn", "--data", "digits", "--out", str(tmp_path)])
    text = " ".join(capsys.readouterr().out.split())
    assert rc == 2 and f"--out {tmp_path} is a folder that is not a transferkit output" in text
    assert "even with --overwrite" in text and "out=" not in text


def test_no_library_message_spells_a_flag():
    """Below cli/, a raised message names Python parameters (``image_size=224``), never ``--image-size``. The
    exceptions: texts written for another reader than the caller (a prediction row's error, an HTTP response)."""
    root = pathlib.Path(__file__).resolve().parents[1] / "src" / "transferkit"
    allowed = {"inference.py", "serve.py"}  # per-input errors in a predictions file; the service's HTTP answers
    found = []
    for f in sorted(root.rglob("*.py")):
        if "cli" in f.parts or f.name in allowed:
            continue
        src = f.read_text()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = ast.get_source_segment(src, node) or ""
                if re.search(r"(?<![\w-])--[a-z][a-z-]+", text):
                    found.append(f"{f.relative_to(root)}:{node.lineno}")
    assert not found, found


def test_a_field_with_a_renamed_flag_is_shown_by_that_flag(capsys):
    from transferkit.api.serve_job import service_limits
    from transferkit.cli.main import main
    from transferkit.options import ServeConfig

    with pytest.raises(ConfigError, match=r"^decode_timeout_s: expected > 0, got 0"):
        service_limits(ServeConfig.build("runs/x", decode_timeout_s=0))
    assert main(["serve", "runs/x", "--decode-timeout", "0"]) == 2  # refused before any model loads
    assert "error: --decode-timeout: expected > 0, got 0.0" in capsys.readouterr().out
    assert main(["serve", "runs/x", "--max-request-mp", "2", "--max-inflight-mp", "1"]) == 2
    assert "--max-inflight-mp: expected at least max_request_mp (2), got 1.0" in capsys.readouterr().out
