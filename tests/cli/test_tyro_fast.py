"""tyro's default checks answered without typeguard (transferkit/tyro_fast.py): the same answers, a faster start."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from typing import Any

import pytest

from transferkit import tyro_fast
from transferkit.options import CONFIGS


def _pairs_seen_by_every_help() -> list[tuple[Any, Any]]:
    """Every (annotation, default) pair tyro checks while it builds each command's --help."""
    from tyro import _resolver

    from transferkit.cli.main import main

    tyro_fast.install()
    original = _resolver.is_instance.__wrapped__
    seen: list[tuple[Any, Any]] = []

    def spy(typ: Any, value: Any) -> bool:
        seen.append((typ, value))
        return original(typ, value)

    installed = _resolver.is_instance
    _resolver.is_instance = tyro_fast.fast_is_instance(spy)
    try:
        for command in CONFIGS:
            with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit):
                main([command, "--help"])
    finally:
        _resolver.is_instance = installed
    return seen


def test_fast_paths_answer_as_tyro_does_for_every_command() -> None:
    from tyro import _resolver

    tyro_fast.install()
    original, fast = _resolver.is_instance.__wrapped__, _resolver.is_instance
    pairs = _pairs_seen_by_every_help()
    assert len(pairs) > 100  # every command's fields went through it
    for typ, value in pairs:
        assert fast(typ, value) == original(typ, value), (typ, value)
    # values a default could hold that the annotation refuses: the fast paths must say no as typeguard does
    for typ, value in [(int | None, "x"), (tuple[str, ...], (1,)), (tuple[str, ...], ["a"]), (float | str, None),
                       (int | None, None), (tuple[str, ...], ()), (Any, object())]:
        assert fast(typ, value) == original(typ, value), (typ, value)


def test_install_is_idempotent() -> None:
    from tyro import _resolver

    tyro_fast.install()
    first = _resolver.is_instance
    tyro_fast.install()
    assert _resolver.is_instance is first
    assert not hasattr(first.__wrapped__, "__wrapped__")


def test_only_the_tested_tyro_is_patched_and_the_pin_is_one_of_them(monkeypatch) -> None:
    import re
    from pathlib import Path

    import tyro
    from tyro import _resolver

    pinned = re.search(r"^tyro==(\S+)$", (Path(__file__).parents[2] / "constraints.txt").read_text(), re.M)
    assert pinned is not None and pinned.group(1) in tyro_fast.TESTED
    original = getattr(_resolver.is_instance, "__wrapped__", _resolver.is_instance)
    monkeypatch.setattr(_resolver, "is_instance", original)
    monkeypatch.setattr(tyro, "__version__", "99.0")
    assert tyro_fast.install() is False and _resolver.is_instance is original  # another tyro: left alone
    monkeypatch.setattr(tyro, "__version__", tyro_fast.TESTED[0])
    assert tyro_fast.install() is True and _resolver.is_instance.__wrapped__ is original


def test_no_command_help_imports_typeguard() -> None:
    """typeguard (with unittest.mock and asyncio) cost ≈0.25 s of every command's --help before the fast paths."""
    code = ("import sys, contextlib, io\nfrom transferkit.cli.main import main\n"
            "from transferkit.options import CONFIGS\n"
            "for c in CONFIGS:\n    with contextlib.redirect_stdout(io.StringIO()):\n        try:\n"
            "            main([c, '--help'])\n        except SystemExit:\n            pass\n"
            "print('typeguard' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
