"""What ``export`` records and says of an export: the ``export.json`` record of one exported file (format, opset,
bundle kind, verification figures, classes, input spec, inputs and outputs) and the summary printed from it, so the
file and the console cannot disagree — functions of the export's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.exporting import tokenizer_path
from transferkit.inference import InputSpec
from transferkit.terminal import Console

TEXT_INPUT_TEXT = ("input_ids, attention_mask: int64 (N, L), the texts tokenised by the tokenizer beside the model, "
                   "truncated to max_length, padded with pad_id; mask 1 = token, 0 = padding")


def batch_names(batches: dict[str, Any]) -> str:
    """How the verification batches are shown: 'batches of 1, 7' (images) or their names with shapes (text)."""
    if all(k.startswith("batch_") for k in batches):
        return f"batches of {', '.join(k[6:] for k in batches)}"
    return "texts: " + ", ".join(f"{k} {tuple(v.get('shape', ()))}" for k, v in batches.items())


def export_record(path: Path, fmt: str, opset: int, bundle_dir: Path, kind: str, notes: list[str],
                  check: dict[str, Any], meta: dict[str, Any], spec: InputSpec, text: bool) -> dict[str, Any]:
    """What ``export.json`` records of the export to ``path``: format, opset, bundle kind, verification figures,
    classes, input spec (``spec``), the inputs and outputs the file takes and gives (``text``: token ids and a
    tokenizer beside it) and a multi-task model's tasks; one place, so the file and the returned dict agree."""
    record: dict[str, Any] = {
        "format": fmt, "opset": opset if fmt == "onnx" else None, "bundle": str(bundle_dir), "kind": kind,
        "notes": notes, "verification": check, "classes": list(meta.get("classes") or []),
        "input_spec": spec.to_dict(),
        "input": TEXT_INPUT_TEXT if text else "images: float32 (N, C, H, W), preprocessed",
        "output": "logits: (N, num_classes)", "lineage": meta.get("lineage") or {},
    }
    if text:
        record["tokenizer"] = tokenizer_path(path).name
    if meta.get("tasks"):
        record["tasks"] = [{k: t[k] for k in ("name", "classes", "start", "stop")} for t in meta["tasks"]]
        record["output"] = ("logits: (N, num_classes), the tasks' logits side by side (task t in columns "
                            "start:stop of 'tasks'; a softmax per task)")
    return record


def print_export_summary(console: Console, record: dict[str, Any], path: Path, record_file: Path) -> None:
    """Tell the user what was exported where, how closely it matched PyTorch, and which files to ship, from the
    ``record`` just written (so the console and ``export.json`` cannot disagree)."""
    fmt, opset, kind, check = record["format"], record["opset"], record["kind"], record["verification"]
    for note in record["notes"]:
        console.print(f"note: {note}", highlight=False)
    console.print(f"exported {kind} bundle {record['bundle']} → {path} ({fmt}"
                  f"{f', opset {opset}' if fmt == 'onnx' else ''})", highlight=False)
    console.print(f"verified against PyTorch: max |Δ logits| = {check['max_abs_diff']:.2e} "
                  f"(≤ {check['tolerance']:g}) on {batch_names(check['batches'])}; "
                  f"argmax identical{' per task' if 'tasks' in record else ''}", highlight=False)
    if "tokenizer" in record:
        console.print(f"tokenizer: {tokenizer_path(path)} (ship it with the model)", highlight=False)
    console.print(f"record: {record_file}", highlight=False)
