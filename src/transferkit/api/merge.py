"""``merge``: fold a LoRA bundle's adapters into its source weights, giving a plain self-contained bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.api.runs import RunResult
from transferkit.backbones.formats import format_of
from transferkit.bundle import BundleError, load_bundle, resolve_bundle, save_bundle
from transferkit.errors import ConfigError
from transferkit.options import MergeConfig
from transferkit.rundir import check_output_dir


def merge(*args: Any, config: MergeConfig | None = None, **options: Any) -> RunResult:
    """Load the LoRA bundle (or run directory) ``model`` on its source, merge ``W + (alpha/r)·B·A`` into every
    adapted layer and write a plain bundle at ``out`` (atomically). Its predictions equal the adapter model's
    up to float rounding; it no longer needs the source to load. ``out`` must not exist, be empty, or be a
    transferkit output (a bundle too) other than ``model`` (:func:`~transferkit.rundir.check_output_dir`).

    ``merge(model, out)`` (``bundle=`` is read as ``model``) or ``merge(config=MergeConfig(...))``."""
    c = MergeConfig.given(config, args, options)
    bundle, out = c.model, c.out
    if bundle is None:
        raise ConfigError("model", "a LoRA run or bundle directory", None)
    if out is None:
        raise ConfigError("out", "the bundle directory to write", None)
    check_output_dir(out, [bundle], bundle=True)
    path = resolve_bundle(bundle)
    model, meta = load_bundle(path)
    fmt = format_of(model)
    if not meta.get("adapter") or fmt is None or fmt.merge is None:
        raise BundleError(f"{path}: not a LoRA bundle (no adapters to merge); it is already self-contained")
    adapter = meta["adapter"]
    fmt.merge(model)
    keep = {k: v for k, v in meta.items() if k not in ("adapter", "architecture", "num_classes", "input_spec",
                                                       "versions", "format_version")}
    keep["lineage"] = {**(meta.get("lineage") or {}), "merged_from": str(path),
                       "adapter": {k: v for k, v in adapter.items() if k != "targets"}}
    out = save_bundle(model, keep, out)
    return RunResult(Path(out), dict(meta.get("metrics") or {}), model, keep)
