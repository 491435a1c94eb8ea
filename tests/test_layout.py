"""The house rules of issue 28 that a change could quietly break: thin jobs, a small command line, one console."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "src" / "transferkit"


def _modules(sub: str) -> list[pathlib.Path]:
    return sorted((ROOT / sub).rglob("*.py"))


def test_jobs_are_thin_and_functions_short():
    """Every module in api/ ≤ 150 lines; no function in api/ or cli/ over 60 lines (docs/architecture.md)."""
    long_files = {f.name: n for f in _modules("api") if (n := len(f.read_text().splitlines())) > 150}
    assert not long_files, long_files
    long_functions = []
    for f in _modules("api") + _modules("cli"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{f.name}:{node.name}")
    assert not long_functions, long_functions


def test_command_line_stays_small():
    assert sum(len(f.read_text().splitlines()) for f in _modules("cli")) <= 400


def test_only_the_console_interface_makes_a_console():
    """Jobs print through the console they receive (transferkit.terminal), never one of their own."""
    makers = []
    for f in ROOT.rglob("*.py"):
        if "cli" in f.parts or f.name == "terminal.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Console":
                makers.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not makers, makers
