"""How to transfer to a labelled target: ``scratch`` (structure), ``linear_probe`` (feature), ``finetune``
(parameter; with freezing by index or name pattern, gradual unfreezing and the two-phase preset, a BatchNorm
policy, discriminative learning rates and the regularisers of :mod:`transferkit.regularizers`), ``lora``
(low-rank adapters through ``peft``).
``transferkit.engine.train(get_strategy("finetune", freeze=2), source, ...)``; a new strategy is one file with a
``plan`` method plus ``@register_strategy``.
"""

from transferkit.strategies import finetune as _finetune  # noqa: F401  (registration)
from transferkit.strategies import linear_probe as _linear_probe  # noqa: F401
from transferkit.strategies import lora as _lora  # noqa: F401
from transferkit.strategies import scratch as _scratch  # noqa: F401
from transferkit.strategies.base import (
    STRATEGIES,
    Phase,
    Strategy,
    TrainingPlan,
    get_strategy,
    list_strategies,
    register_strategy,
    resolve_strategy_name,
)
from transferkit.strategies.finetune import Finetune
from transferkit.strategies.freezing import freeze_batchnorm, freeze_groups, freeze_matching
from transferkit.strategies.linear_probe import LinearProbe
from transferkit.strategies.lora import Lora, merge_lora
from transferkit.strategies.lr_groups import param_group_lrs, parse_group_lrs
from transferkit.strategies.scratch import Scratch

__all__ = [
    "STRATEGIES", "Finetune", "LinearProbe", "Lora", "Phase", "Scratch", "Strategy", "TrainingPlan", "freeze_batchnorm",
    "freeze_groups", "freeze_matching", "get_strategy", "list_strategies", "merge_lora", "param_group_lrs",
    "parse_group_lrs", "register_strategy", "resolve_strategy_name",
]
