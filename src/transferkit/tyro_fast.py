"""Keep tyro's type checks of defaults off typeguard while a command line is built.

tyro (pinned 1.0.16) checks each field's default against its annotation with ``tyro._resolver.is_instance``, which
has fast paths for plain classes, ``typing.Union``, ``Annotated`` and ``Literal`` and sends everything else to
typeguard. Our configurations are written with PEP 604 unions (``int | None``, a ``types.UnionType`` on Python
< 3.14), a few ``tuple[str, ...]`` and ``Any`` fields and fields built by a constructor function, so every
command's ``--help`` imported typeguard — which imports ``unittest.mock`` and ``asyncio`` — for ≈0.25 s of a 0.7 s
start. :func:`install` adds fast paths for exactly those four shapes, answering as typeguard does, and hands every
other annotation to tyro's own function unchanged. ``tests/cli/test_tyro_fast.py`` compares both answers on every
(annotation, default) pair the commands produce, so a tyro upgrade that changes them fails a test instead of a
command line; and :func:`install` only patches the tyro versions that test ran against (:data:`TESTED`): under
another version tyro is left alone — ``--help`` is slower, the answers are tyro's own.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, get_args, get_origin

TESTED = ("1.0.16",)  # tyro versions whose private _resolver.is_instance these fast paths were checked against


def fast_is_instance(original: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """``original`` (tyro's ``is_instance(typ, value)``) with fast paths for ``X | Y``, ``tuple[X, ...]``, ``Any``
    and a constructor function given as a field's type (``tyro.conf.arg(constructor=…)``)."""

    def is_instance(typ: Any, value: Any) -> bool:
        if typ is Any or isinstance(typ, types.FunctionType):  # Any, or a field's constructor standing for its type:
            return True  # typeguard checks nothing
        if isinstance(typ, types.UnionType):  # what tyro does for typing.Union
            return any(is_instance(member, value) for member in get_args(typ))
        args = get_args(typ)
        if get_origin(typ) is tuple and len(args) == 2 and args[1] is Ellipsis:
            return isinstance(value, tuple) and all(is_instance(args[0], v) for v in value)
        return original(typ, value)

    is_instance.__wrapped__ = original  # type: ignore[attr-defined]
    return is_instance


def install() -> bool:
    """Put the fast paths in front of tyro's ``is_instance`` (once; every module that bound the name sees it); whether
    they are in place (never under a tyro version not in :data:`TESTED`)."""
    import tyro

    if getattr(tyro, "__version__", None) not in TESTED:
        return False
    from tyro import _resolver  # tyro's modules call it as _resolver.is_instance, and it recurses by its global name

    if not callable(getattr(_resolver, "is_instance", None)):
        return False
    if not hasattr(_resolver.is_instance, "__wrapped__"):
        _resolver.is_instance = fast_is_instance(_resolver.is_instance)
    return True
