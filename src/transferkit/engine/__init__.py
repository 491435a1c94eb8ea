"""Training on PyTorch Lightning: the generic :class:`TransferModule` and :func:`fit`.

The engine knows nothing about particular transfer methods; a method knows nothing about devices or
checkpoints.
"""

from transferkit.engine.module import LossTerm, TransferModule
from transferkit.engine.trainer import BestWeights, FitResult, build_trainer, fit

__all__ = ["BestWeights", "FitResult", "LossTerm", "TransferModule", "build_trainer", "fit"]
