"""Reading weight files safely and loading them strictly.

Two rules hold for every checkpoint transferkit reads:

* **never unpickle**: ``.safetensors`` files are read with :mod:`safetensors`; anything else with
  ``torch.load(..., weights_only=True)``, which only accepts tensors and plain containers. A checkpoint that
  needs full unpickling (a whole pickled ``nn.Module``, custom classes) is refused with instructions to
  convert it once, in an environment the user trusts, to ``.safetensors``;
* **never drop layers silently**: :func:`load_strict` compares names and shapes first and raises a
  :class:`WeightsMismatchError` listing the first differences, instead of ``strict=False``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

#: Keys under which training scripts commonly nest the state dict inside a checkpoint dictionary.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")

PICKLE_HELP = (
    "transferkit never unpickles arbitrary objects (a pickle can run any code). Convert the checkpoint "
    "once, in an environment you trust, to safetensors:\n"
    "    import torch, safetensors.torch\n"
    "    obj = torch.load('{path}', weights_only=False)  # only for files you trust\n"
    "    sd = obj.state_dict() if hasattr(obj, 'state_dict') else obj\n"
    "    safetensors.torch.save_file({{k: v.contiguous() for k, v in sd.items()}}, 'model.safetensors')\n"
    "and pass the .safetensors file instead."
)


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture (missing/unexpected keys or different shapes)."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint that can only be read by unpickling arbitrary objects."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, on the CPU, without unpickling.

    ``path`` is a ``.safetensors`` file, a PyTorch state dict (``.pt``/``.pth``/``.bin``, read with
    ``weights_only=True``; a state dict nested under ``"state_dict"``/``"model"``/… is unwrapped, a
    ``"module."`` prefix from ``DataParallel`` is stripped), or a folder holding ``model.safetensors``
    (a transferkit bundle).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    UnsafeCheckpointError
        The file can only be read by unpickling (a pickled ``nn.Module`` or custom objects).
    ValueError
        The file holds no state dict.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} is not a plain state dict: loading it needs full unpickling ({str(err).splitlines()[0]}).\n"
            + PICKLE_HELP.format(path=path)
        ) from None
    for key in _NESTED_KEYS:
        if not _is_state_dict(obj) and isinstance(obj, Mapping) and _is_state_dict(obj.get(key)):
            obj = obj[key]
    if not _is_state_dict(obj):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict of name → tensor")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd


def _natural(key: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in key.split("."))


def mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between two state dicts: shapes first, then missing, then unexpected keys,
    each in natural module order (``layer2`` before ``layer10``)."""
    out = [
        f"shape: {k} expects {tuple(expected[k].shape)}, file has {tuple(given[k].shape)}"
        for k in sorted(expected, key=_natural) if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    out += [f"missing: {k} {tuple(expected[k].shape)}" for k in sorted(expected, key=_natural) if k not in given]
    out += [f"unexpected: {k} {tuple(given[k].shape)}" for k in sorted(given, key=_natural) if k not in expected]
    return out


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, show: int = 8) -> None:
    """Load ``state_dict`` into ``module``; every key and shape must match.

    Raises
    ------
    WeightsMismatchError
        Listing the first ``show`` differences and how many there are in all.
    """
    problems = mismatches(module.state_dict(), state_dict)
    if problems:
        more = f"\n  … and {len(problems) - show} more" if len(problems) > show else ""
        raise WeightsMismatchError(
            f"weights from {source} do not match the architecture ({len(problems)} differences):\n  "
            + "\n  ".join(problems[:show]) + more
            + "\nCheck that the architecture name (and options such as num_classes) are those the weights were "
            "trained with."
        )
    module.load_state_dict(state_dict, strict=True)
