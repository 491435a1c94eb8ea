"""Training on PyTorch Lightning: the generic :class:`TransferModule`, :func:`fit`, and :func:`train`, which
runs a strategy's :class:`~transferkit.engine.plan.TrainingPlan`.

The engine knows nothing about particular transfer methods; a method knows nothing about devices or
checkpoints.
"""

from transferkit.engine.module import LossTerm, TransferModule
from transferkit.engine.trainer import BestWeights, FitResult, TrainedModel, build_trainer, fit, train

__all__ = ["BestWeights", "FitResult", "LossTerm", "TrainedModel", "TransferModule", "build_trainer", "fit", "train"]
