"""The high-level Python API: one function per job, each writing a run directory.

Everything the CLI does is a call here: :func:`pretrain`, :func:`transfer`, :func:`evaluate`,
:func:`predict`, :func:`resume`, :func:`compare`, :func:`curve`, :func:`adapt`, :func:`adapt_compare`,
:func:`distill`, :func:`fuse`, :func:`select`, :func:`tune`, :func:`fewshot`, :func:`zeroshot`, :func:`multitask`,
:func:`auto`, :func:`export`, :func:`serve` and :func:`demo`; :func:`list_family` lists any pluggable family and
:func:`cache` shows or empties the feature cache.
"""

from transferkit.api.adapt_compare_job import adapt_compare
from transferkit.api.adapt_job import adapt
from transferkit.api.auto_job import auto
from transferkit.api.cache_job import cache
from transferkit.api.compare import compare
from transferkit.api.curve import curve
from transferkit.api.demo import demo
from transferkit.api.distill_job import distill
from transferkit.api.export_job import export
from transferkit.api.fewshot_job import fewshot, zeroshot
from transferkit.api.fuse_job import fuse
from transferkit.api.listing import families, list_family
from transferkit.api.lr_find import lr_find
from transferkit.api.merge import merge
from transferkit.api.multitask_job import multitask
from transferkit.api.pretrain_job import pretrain
from transferkit.api.resume_job import resume
from transferkit.api.runs import RunResult
from transferkit.api.select_job import select
from transferkit.api.serve_job import serve
from transferkit.api.train import transfer
from transferkit.api.tune_job import tune
from transferkit.api.use import evaluate, predict
from transferkit.report.predictions import show_predictions

__all__ = ["RunResult", "adapt", "adapt_compare", "auto", "cache", "compare", "curve", "demo", "distill", "evaluate",
           "export", "families", "fewshot", "fuse", "list_family", "lr_find", "merge", "multitask", "predict",
           "pretrain", "resume", "select", "serve", "show_predictions", "transfer", "tune", "zeroshot"]
