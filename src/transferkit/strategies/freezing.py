"""What stays fixed while fine-tuning: parameter groups by index, modules by name pattern, BatchNorm.

Freezing sets ``requires_grad=False`` (so the parameters are in no optimiser group) and returns the frozen
modules, which the engine keeps in eval mode (fixed BatchNorm statistics, no dropout). The head is always
new and must train; every function here refuses to freeze all of it.

* By index: ``freeze_groups(model, n)`` — the first ``n`` of :meth:`Backbone.param_groups` (Yosinski et al.,
  2014: the first layers are the most generic).
* By name: ``freeze_matching(model, "conv1,stages.conv2.*")`` — ``fnmatch`` patterns matched against group
  names (``conv1``), module names (``stages.conv2.0``) and parameter names (``stages.fc.0.bias``).
* BatchNorm: ``freeze_batchnorm(model)`` — running statistics fixed (module in eval mode) and the affine
  scale/shift frozen, what the Keras transfer-learning guide recommends for small target sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

from transferkit.backbones.base import Backbone


def freeze_groups(model: Backbone, n: int) -> list[nn.Module]:
    """Freeze the first ``n`` parameter groups (``requires_grad=False``); return the frozen modules.

    The head must stay trainable, so ``n`` may be at most ``len(param_groups) - 1``.
    """
    groups = model.param_groups()
    if not 0 <= n <= len(groups) - 1:
        raise ValueError(
            f"freeze={n}: {model.arch} has {len(groups)} parameter groups "
            f"({', '.join(g.name for g in groups)}); freeze must be between 0 and {len(groups) - 1} "
            "so that the head still trains"
        )
    frozen: list[nn.Module] = []
    for g in groups[:n]:
        for p in g.params:
            p.requires_grad_(False)
        frozen.extend(g.modules)
    return frozen


def split_patterns(patterns: str | Sequence[str]) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` → ``["a", "b"]`` (names never contain commas)."""
    items = patterns.split(",") if isinstance(patterns, str) else [str(p) for p in patterns]
    return [p.strip() for p in items if p.strip()]


def _module_names(model: nn.Module, limit: int = 40) -> str:
    names = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return ", ".join(names[:limit]) + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def freeze_matching(model: Backbone, patterns: str | Sequence[str], option: str = "freeze_pattern") -> list[nn.Module]:
    """Freeze every parameter group, module or parameter whose name matches one of ``patterns`` (``fnmatch``,
    case-sensitive); return the frozen groups' and modules' modules (a parameter matched by its own name
    freezes only that tensor and leaves its module's mode alone).

    A pattern that matches nothing, or patterns that freeze the whole head, are errors naming the pattern and
    listing the names that exist. ``option`` is the option name used in messages.
    """
    pats = split_patterns(patterns)
    if not pats:
        raise ValueError(f"{option}: no pattern given")
    groups = model.param_groups()
    frozen: list[nn.Module] = []
    head_params = {id(p) for g in groups if g.name == "head" for p in g.params}
    hit_head: list[str] = []
    for pat in pats:
        params: list[nn.Parameter] = []
        for g in groups:
            if fnmatchcase(g.name, pat):
                params += g.params
                frozen += g.modules
        for name, m in model.named_modules():
            if name and fnmatchcase(name, pat):
                params += list(m.parameters())
                frozen.append(m)
        params += [p for name, p in model.named_parameters() if fnmatchcase(name, pat)]
        if not params:
            raise ValueError(
                f"{option}: pattern '{pat}' matches no parameter group, module or parameter of {model.arch}; "
                f"groups: {', '.join(g.name for g in groups)}; modules: {_module_names(model)}"
            )
        for p in params:
            p.requires_grad_(False)
        if any(id(p) in head_params for p in params):
            hit_head.append(pat)
    if head_params and not any(p.requires_grad for g in groups if g.name == "head" for p in g.params):
        raise ValueError(f"{option}: pattern(s) {hit_head} freeze the whole head; the new head must train")
    return list({id(m): m for m in frozen}.values())


def freeze_batchnorm(model: Backbone, head: str = "head") -> list[nn.Module]:
    """Freeze every BatchNorm outside the head: affine parameters ``requires_grad=False``; return the modules,
    which the engine keeps in eval mode so their running statistics stay those of the source.

    A model without BatchNorm returns ``[]`` (nothing to freeze; not an error, so that one option set works
    across backbones).
    """
    prefix = head + "."
    found: list[nn.Module] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not (name == head or name.startswith(prefix)):
            for p in m.parameters():
                p.requires_grad_(False)
            found.append(m)
    return found
