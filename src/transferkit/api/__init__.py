"""The high-level Python API: one function per job, each writing a run directory.

Everything the CLI does is a call here: :func:`pretrain`, :func:`transfer`, :func:`evaluate`,
:func:`predict`, :func:`compare` and :func:`demo`.
"""

from transferkit.api.compare import compare
from transferkit.api.demo import demo
from transferkit.api.runs import RunResult
from transferkit.api.train import pretrain, transfer
from transferkit.api.use import evaluate, predict

__all__ = ["RunResult", "compare", "demo", "evaluate", "predict", "pretrain", "transfer"]
