"""``select --verify``: fine-tune the top candidates with ``transfer`` and check the ranking against their accuracy.

Part of the ``select`` job (:mod:`transferkit.api.select_job`) that calls another job: each chosen candidate is
fine-tuned as a user would (``transfer(strategy="finetune")``; ``scratch`` for a ``random:`` candidate, from the very
initialisation that was scored) with the job's ``epochs``/``patience``/``batch_size``/``lr`` into ``<out>/verify/``.
The runs are kept as they finish, so an interrupted selection redoes only the unfinished ones; the correlations
are :func:`transferkit.transferability.ranking.score_correlations`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transferkit.backbones.base import Backbone
from transferkit.data.base import ImageSet
from transferkit.options import SelectConfig
from transferkit.rundir import FinishedWork
from transferkit.terminal import Console
from transferkit.transferability.ranking import safe_name, score_correlations


def verify_top(entries: list[dict[str, Any]], n_verify: int, names: list[str], c: SelectConfig,
               record: dict[str, Any], scoring: ImageSet, console: Console
               ) -> tuple[dict[str, Any] | None, FinishedWork | None]:
    """Fine-tune the top ``n_verify`` (if any) and correlate the scores with their accuracy: ``(verification, the
    finished runs' work directory)``. The runs are kept as they finish: an error later loses none of them."""
    if not n_verify:
        return None, None
    work = FinishedWork(Path(c.out), "select", {"config": record, "scoring": scoring.fingerprint(),
                                                "chosen": [e["candidate"] for e in entries[:n_verify]]}, record)
    if work.stale:
        console.print(f"{work.path} held verification runs of other settings: discarded", markup=False)
    verification = fine_tune_candidates(entries[:n_verify], c, work, console)
    verification["correlations"] = score_correlations(entries, names)
    return verification, work


def _transfer(e: dict[str, Any], c: SelectConfig, run_dir: Path, console: Console) -> dict[str, Any]:
    """Fine-tune one candidate (``scratch`` from its scored initialisation for ``random:``) into ``run_dir``; its
    accuracies, labels record and wall time."""
    from transferkit.api.train import transfer

    task, ver = c.task, c.verification
    random_init = e["_model"] is not None
    named = not Path(e["candidate"]).exists()
    source: str | Backbone = e["_model"] if random_init else e["candidate"]
    t0 = time.perf_counter()
    res = transfer(source, task.data, task.classes, labels_per_class=task.labels_per_class,
                   strategy="scratch" if random_init else "finetune", seed=c.seed, out=run_dir,
                   epochs=ver.epochs, batch_size=ver.batch_size, lr=ver.lr, patience=ver.patience,
                   val_per_class=task.val_per_class, val_fraction=task.val_fraction,
                   image_size=c.image_size if named and not random_init else None,
                   max_length=c.max_length if named and not random_init else None, strict=task.strict,
                   convert_channels=task.convert_channels, progress=False, console=console,
                   overwrite=True)  # an interrupted verification run is simply redone
    wall = time.perf_counter() - t0
    m = res.metrics
    return {"strategy": m["strategy"], "accuracy": m["accuracy"], "split": m["split"],
            "validation_accuracy": (m["validation"] or {}).get("accuracy"),
            "did_not_learn": bool(m.get("did_not_learn")), "labels": m.get("labels"),
            "wall_time_s": wall, "run_dir": f"verify/{run_dir.name}"}


def fine_tune_candidates(chosen: list[dict[str, Any]], c: SelectConfig, work: FinishedWork,
                         console: Console) -> dict[str, Any]:
    """Fine-tune each chosen candidate as a user would (``transfer``) and record its accuracies and wall time.

    The runs go to ``work``'s ``verify/`` as they finish (with a record each), and runs finished by an earlier,
    interrupted call with the same settings are reused."""
    ver = c.verification
    total = 0.0
    split = None
    root = work.path / "verify"
    for i, e in enumerate(chosen):
        run_dir = root / f"{i + 1:02d}_{safe_name(e['name'])}"
        done = work.get(f"verify-{i + 1:02d}")
        if done is not None and (run_dir / "metrics.json").is_file():
            console.print(f"verification run {run_dir.name}: finished earlier (reused)", markup=False)
            e["verification"] = done
        else:
            e["verification"] = _transfer(e, c, run_dir, console)
            work.put(f"verify-{i + 1:02d}", e["verification"])
        total += e["verification"]["wall_time_s"]
        split = e["verification"]["split"]
    scoring = sum(e["time"]["total_s"] for e in chosen)
    return {"n": len(chosen), "candidates": [e["candidate"] for e in chosen], "accuracy_split": split,
            "finetune_time_s": total, "scoring_time_s": scoring,
            "speedup": total / scoring if scoring > 0 else None, "epochs": ver.epochs, "patience": ver.patience}
