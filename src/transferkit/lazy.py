"""Modules imported on first use: the flag-generation library (tyro) is needed only when a command line is parsed,
so the Python API (``import transferkit``) does not pay for it. Built on the standard library's
:class:`importlib.util.LazyLoader`."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as a module object whose code runs at its first attribute access (the module itself when it is
    already imported). The annotations that mention it (``Annotated[..., tyro.conf.arg(...)]`` under ``from
    __future__ import annotations``) are strings, evaluated only when the command line reads them."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
