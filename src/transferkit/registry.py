"""One registry type for every pluggable family: datasets, backbones, strategies, regularisers, adaptation, fusion
and few-shot methods, transferability scores, similarity measures, selection criteria.

A :class:`Registry` maps names (and aliases) to objects and remembers, per entry, a one-line summary, the paper it
implements and the file it lives in, so that ``transferkit list <family>`` can show every family the same way and
every unknown name fails with the same message — ``unknown strategy 'magic'; valid strategies: finetune (alias
parameter), …`` — raised as :class:`UnknownNameError` (a ``ValueError``) that carries the family, the name and the
valid choices for a caller that wants to say it differently.

Registries are created where their family lives (``strategies/base.py`` holds :data:`STRATEGIES`, …) and add
themselves to :data:`FAMILIES` when that module is imported; :mod:`transferkit.api.listing` knows which module to
import for a family (this module imports nothing of transferkit's). The pattern is timm's ``register_model`` /
``list_models`` and scikit-learn's ``all_estimators``, kept to what transferkit uses.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_PACKAGE = Path(__file__).resolve().parent

FAMILIES: dict[str, Registry[Any]] = {}


class UnknownNameError(ValueError):
    """A name that is not in a registry; the message lists the valid names (and their aliases)."""

    def __init__(self, message: str, family: str, name: str, valid: list[str]) -> None:
        super().__init__(message)
        self.family, self.name, self.valid = family, name, valid


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object: its ``name``, ``aliases``, a one-line ``summary``, the ``paper`` it implements
    (``""`` for plumbing) and ``where`` it is defined (a path inside the package)."""

    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    summary: str = ""
    paper: str = ""
    where: str = ""


def source_file(obj: Any) -> str:
    """Where ``obj`` is defined, as a path inside the package (``transferkit/strategies/lora.py``)."""
    try:
        path = Path(inspect.getsourcefile(obj) or "").resolve()
    except TypeError:  # an instance or a tuple: no source file of its own
        return ""
    try:
        return str(path.relative_to(_PACKAGE.parent))
    except ValueError:  # registered from outside the package (a user's plug-in)
        return str(path)


def _summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring as plain text (reST roles and literals unwrapped)."""
    doc = inspect.getdoc(obj) if inspect.isclass(obj) or inspect.isfunction(obj) else None
    if not doc:
        return ""
    text = doc.strip().split("\n\n")[0].replace("\n", " ")
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # :meth:`Backbone.probe_head` → Backbone.probe_head
    return text.replace("``", "")


class Registry(Generic[T]):
    """Names → objects of one pluggable family.

    ``kind`` names one member in messages (``"strategy"``), ``plural`` several (``"strategies"``); ``sort`` lists
    names alphabetically (else in registration order, when the order means something, e.g. scores' defaults).
    ``family`` is the key of :data:`FAMILIES` and of ``transferkit list``; ``label`` (optional) writes an entry
    as messages list it (datasets show their usage, ``image_folder:PATH``).
    """

    def __init__(self, family: str, kind: str, plural: str | None = None, *, sort: bool = True,
                 label: Callable[[Entry[T]], str] | None = None) -> None:
        self.family, self.kind, self.plural, self.sort = family, kind, plural or kind + "s", sort
        self.label = label
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        if family in FAMILIES:
            raise ValueError(f"registry family '{family}' exists already")
        FAMILIES[family] = self

    # -- registering -------------------------------------------------------------------------------------------
    def add(self, name: str, obj: T, *, aliases: tuple[str, ...] = (), summary: str | None = None,
            paper: str = "", where: str | None = None) -> T:
        """Register ``obj`` under ``name`` and ``aliases``; a name taken already is an error (no silent override)."""
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        for n in (name, *aliases):
            if n in self._entries or n in self._aliases:
                raise ValueError(f"{self.kind} name '{n}' is already registered")
        self._entries[name] = Entry(name, obj, tuple(aliases), _summary(obj) if summary is None else summary,
                                    paper, source_file(obj) if where is None else where)
        self._aliases.update({a: name for a in aliases})
        return obj

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; ``name`` defaults to the object's ``name`` attribute, ``aliases`` and
        ``paper``/``summary`` to its ``aliases``/``paper``/``summary`` attributes (how strategies, regularisers and
        adaptation methods declare them)."""

        def wrap(obj: T) -> T:
            meta.setdefault("aliases", tuple(getattr(obj, "aliases", ()) or ()))
            meta.setdefault("paper", getattr(obj, "paper", "") or "")
            summary = getattr(obj, "summary", None)
            if isinstance(summary, str) and summary:
                meta.setdefault("summary", summary)
            return self.add(name or getattr(obj, "name", ""), obj, **meta)

        return wrap

    # -- looking up --------------------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs in listing order, as a dict's ``items()``."""
        return [(e.name, e.obj) for e in self.entries()]

    def names(self) -> list[str]:
        """Canonical names, sorted (or in registration order)."""
        return sorted(self._entries) if self.sort else list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def valid(self) -> str:
        """``"finetune (alias parameter), linear_probe (alias feature), …"``: what messages list."""
        if self.label is not None:
            return ", ".join(self.label(e) for e in self.entries())
        return ", ".join(f"{e.name} (alias {', '.join(e.aliases)})" if e.aliases else e.name for e in self.entries())

    def unknown(self, name: str, context: str = "", hint: str = "") -> UnknownNameError:
        """The error for an unknown ``name`` (``context``: where it appeared, ``hint``: how to write a valid one)."""
        message = f"unknown {self.kind} '{name}'{context}; valid {self.plural}: {self.valid()}"
        return UnknownNameError(message + (f" ({hint})" if hint else ""), self.family, name, self.names())

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` or one of its aliases."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise self.unknown(name)

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.resolve(name)]

    def get(self, name: str) -> T:
        """The object registered as ``name`` (or an alias); an unknown name lists the valid ones."""
        return self.entry(name).obj
