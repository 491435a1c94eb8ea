"""``cache``: show or empty the frozen-feature cache (:mod:`transferkit.backbones.cache`) and the prepared-data cache
of streamed image folders (:mod:`transferkit.data.prepared`, its ``prepared/`` subfolder).

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
from transferkit.data.prepared import clear_prepared, prepared_entries
from transferkit.errors import ConfigError
from transferkit.options import CacheConfig
from transferkit.report.tables import comparison_table
from transferkit.terminal import Console


def cache(*args: Any, config: CacheConfig | None = None, console: Console | None = None,
          **options: Any) -> dict[str, Any]:
    """``cache("list")`` or ``cache("clear", older_than_days=30)`` (or ``cache(config=CacheConfig(...))``).

    Returns ``{"root", "cap_bytes" (None: no cap), "total_bytes", "entries": [...]}`` for ``list`` (each entry:
    ``path``, ``bytes``, ``last_used``, ``arch``, ``dataset``, ``layer``, ``shape``; least recently used first), and
    ``{"root", "removed", "freed_bytes", "kept"}`` for ``clear``; both with ``"prepared"``: the same for the
    prepared-data cache (entries: ``path``, ``bytes``, ``last_used``, ``name``, ``shape``, ``format``).
    """
    c = CacheConfig.given(config, args, options)
    if c.action not in ("list", "clear"):
        raise ConfigError("action", "list or clear", c.action)
    if c.older_than_days is not None and (c.older_than_days < 0 or c.action != "clear"):
        raise ConfigError("older_than_days", "a number of days ≥ 0, with clear", c.older_than_days)
    console = terminal.resolve(console)
    root = Path(c.cache_dir).expanduser() if c.cache_dir is not None else cache_root()
    cap = cachedir.max_bytes()
    prep = root / "prepared"
    if c.action == "clear":
        older = None if c.older_than_days is None else c.older_than_days * 86400
        gone = cachedir.clear(root, SUFFIX, older)
        kept = len(cachedir.entries(root, SUFFIX))
        freed = sum(e.size for e in gone)
        console.print(f"feature cache {root}: removed {len(gone)} entries ({cachedir.format_size(freed)}); {kept} kept")
        gone_prep = clear_prepared(prep, older)
        freed_prep = sum(e.size for e in gone_prep)
        kept_prep = len(prepared_entries(prep))
        console.print(f"prepared-data cache {prep}: removed {sum(e.path.suffix == '.tkdata' for e in gone_prep)} "
                      f"entries ({cachedir.format_size(freed_prep)}); {kept_prep} kept")
        return {"root": str(root), "removed": len(gone), "freed_bytes": freed, "kept": kept,
                "prepared": {"root": str(prep), "removed": len(gone_prep), "freed_bytes": freed_prep,
                             "kept": kept_prep}}
    found = cache_entries(root)
    total = sum(int(e["bytes"]) for e in found)
    now = time.time()
    rows = [(Path(str(e["path"])).stem[:12], str(e.get("arch", "?")), _short(str(e.get("dataset", "?"))),
             str(e.get("layer", "?")), "×".join(str(n) for n in e.get("shape", [])) or "unreadable",
             cachedir.format_size(int(e["bytes"])), _ago(now - float(e["last_used"]))) for e in found]
    cap_text = (f"{cachedir.format_size(cap) if cap is not None else 'no cap'} ({cachedir.ENV_MAX}="
                f"{os.environ.get(cachedir.ENV_MAX) or cachedir.DEFAULT_MAX})")
    title = f"feature cache {root}: {len(found)} entries, {cachedir.format_size(total)} of {cap_text}"
    console.print(comparison_table(("entry", "backbone", "data", "layer", "features", "size", "last used"), rows,
                                   title, right=("features", "size", "last used")))
    prepared = prepared_entries(prep)
    prep_total = sum(int(e["bytes"]) for e in prepared)
    prep_rows = [(Path(e["path"]).stem[:12], _short(str(e["name"] or "?")),
                  "×".join(str(n) for n in e["shape"]) or "unreadable", cachedir.format_size(int(e["bytes"])),
                  _ago(now - float(e["last_used"]))) for e in prepared]
    console.print(comparison_table(("entry", "data", "images", "size", "last used"), prep_rows,
                                   f"prepared-data cache {prep}: {len(prepared)} entries, "
                                   f"{cachedir.format_size(prep_total)} of {cap_text}",
                                   right=("images", "size", "last used")))
    return {"root": str(root), "cap_bytes": cap, "total_bytes": total, "entries": found,
            "prepared": {"root": str(prep), "total_bytes": prep_total, "entries": prepared}}


def _ago(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit} ago"
    return "just now"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
