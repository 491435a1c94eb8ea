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
