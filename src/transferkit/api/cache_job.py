"""``cache``: show or empty the frozen-feature cache (:mod:`transferkit.backbones.cache`).

The cache keeps the features a linear probe, ``select`` or ``fuse`` extracted, keyed by the backbone's weights, the
data and the preprocessing. It is capped (``$TRANSFERKIT_CACHE_MAX``, default 10G; least recently used entries go
first, :mod:`transferkit.cachedir`); ``cache list`` shows what is in it and ``cache clear`` empties it (or only the
entries not used for ``older_than_days``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from transferkit import cachedir, terminal
from transferkit.backbones.cache import SUFFIX, cache_entries, cache_root
from transferkit.errors import ConfigError
from transferkit.options import CacheConfig
from transferkit.report.tables import comparison_table
from transferkit.terminal import Console


def cache(*args: Any, config: CacheConfig | None = None, console: Console | None = None,
          **options: Any) -> dict[str, Any]:
    """``cache("list")`` or ``cache("clear", older_than_days=30)`` (or ``cache(config=CacheConfig(...))``).

    Returns ``{"root", "cap_bytes" (None: no cap), "total_bytes", "entries": [...]}`` for ``list`` (each entry:
    ``path``, ``bytes``, ``last_used``, ``arch``, ``dataset``, ``layer``, ``shape``; least recently used first), and
    ``{"root", "removed", "freed_bytes", "kept"}`` for ``clear``.
    """
    c = CacheConfig.given(config, args, options)
    if c.action not in ("list", "clear"):
        raise ConfigError("action", "list or clear", c.action)
    if c.older_than_days is not None and (c.older_than_days < 0 or c.action != "clear"):
        raise ConfigError("older_than_days", "a number of days ≥ 0, with clear", c.older_than_days)
    console = terminal.resolve(console)
    root = Path(c.cache_dir).expanduser() if c.cache_dir is not None else cache_root()
    cap = cachedir.max_bytes()
    if c.action == "clear":
        gone = cachedir.clear(root, SUFFIX, None if c.older_than_days is None else c.older_than_days * 86400)
        kept = len(cachedir.entries(root, SUFFIX))
        freed = sum(e.size for e in gone)
        console.print(f"feature cache {root}: removed {len(gone)} entries ({cachedir.format_size(freed)}); {kept} kept")
        return {"root": str(root), "removed": len(gone), "freed_bytes": freed, "kept": kept}
    found = cache_entries(root)
    total = sum(int(e["bytes"]) for e in found)
    now = time.time()
    rows = [(Path(str(e["path"])).stem[:12], str(e.get("arch", "?")), _short(str(e.get("dataset", "?"))),
             str(e.get("layer", "?")), "×".join(str(n) for n in e.get("shape", [])) or "unreadable",
             cachedir.format_size(int(e["bytes"])), _ago(now - float(e["last_used"]))) for e in found]
    title = (f"feature cache {root}: {len(found)} entries, {cachedir.format_size(total)} of "
             f"{cachedir.format_size(cap) if cap is not None else 'no cap'} ({cachedir.ENV_MAX}="
             f"{os.environ.get(cachedir.ENV_MAX) or cachedir.DEFAULT_MAX})")
    console.print(comparison_table(("entry", "backbone", "data", "layer", "features", "size", "last used"), rows,
                                   title, right=("features", "size", "last used")))
    return {"root": str(root), "cap_bytes": cap, "total_bytes": total, "entries": found}


def _ago(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit} ago"
    return "just now"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
