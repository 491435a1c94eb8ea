"""A fused model: several member networks and a rule that combines their predictions, usable as one model.

:class:`FusedModel` is a :class:`~transferkit.backbones.base.Backbone`, so bundles, ``predict`` and
``evaluate`` treat it like any other model. Each member keeps **its own preprocessing**: the fused model's
input is the image scaled to ``[0, 1]`` at the largest member's size with the most channels any member takes
(:func:`~transferkit.backbones.fused.joint_input_spec`), and every member converts it to its own input
(:func:`~transferkit.backbones.fused.member_input`) — as the feature-fusion backbone does.

Combination rules (``method``), all fitted by the caller on held-out predictions (:mod:`transferkit.fusion`):

* ``average`` — mean of the members' probabilities;
* ``weighted`` — weighted mean with weights fitted on validation data (:func:`~transferkit.fusion.fit_weights`);
* ``stacking`` — a multinomial logistic regression on the members' log-probabilities
  (:class:`~transferkit.fusion.Stacker`), its coefficients kept as tensors;
* ``gating`` — a small network weighs the members per input from their concatenated features
  (:class:`~transferkit.fusion.GatedFusion`).

The output is the **log** of the fused probabilities: ``argmax`` and ``softmax`` read it like logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.backbones.formats import BundleFormat
from transferkit.backbones.fused import joint_input_spec, member_input, members_from_config
from transferkit.backbones.registry import FUSED_METHODS, build_from_config
from transferkit.fusion.gating import GatedFusion


class FusedModel(Backbone):
    """``members`` (same classes, same order) combined by ``method``; see the module docstring."""

    def __init__(self, members: Sequence[Backbone], method: str = "average", gate_hidden: int = 32) -> None:
        if method not in FUSED_METHODS:
            raise ValueError(f"unknown fusion method '{method}'; valid choices: {', '.join(FUSED_METHODS)}")
        if len(members) < 2:
            raise ValueError(f"fusion needs at least 2 members, got {len(members)}")
        classes = {m.num_classes for m in members}
        if len(classes) != 1:
            raise ValueError(f"members predict different numbers of classes: {[m.num_classes for m in members]}")
        super().__init__("fused", {"method": method, "gate_hidden": gate_hidden})
        self.members = nn.ModuleList(members)
        self.method = method
        self.num_classes = members[0].num_classes
        self.input_spec = joint_input_spec(members)
        n, c = len(members), self.num_classes
        self.feature_dim = sum(m.feature_dim for m in members)
        self.register_buffer("weights", torch.full((n,), 1.0 / n))
        self.register_buffer("stack_coef", torch.zeros(c, n * c))
        self.register_buffer("stack_intercept", torch.zeros(c))
        self.register_buffer("stack_eps", torch.tensor(1e-6))
        self.gating = GatedFusion(n, self.feature_dim, gate_hidden) if method == "gating" else None
        for m in self.members:
            m.eval()

    def member_outputs(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Member logits ``(B, M, C)`` (and concatenated member features ``(B, ΣD)`` when asked)."""
        logits, feats = [], []
        for m in self.members:
            xi = member_input(m.input_spec, x)
            if features:
                f = m.forward_features(xi)
                feats.append(f)
                logits.append(m.forward_head(f))
            else:
                logits.append(m(xi))
        return torch.stack(logits, 1), (torch.cat(feats, 1) if features else None)

    def forward_features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        return self.member_outputs(x, features=True)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, feats = self.member_outputs(x, features=self.method == "gating")
        return self.combine(logits, feats)

    def combine(self, member_logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Fused log-probabilities ``(B, C)`` from member logits ``(B, M, C)``."""
        log_p = F.log_softmax(member_logits, dim=2)
        if self.method == "average":
            return torch.logsumexp(log_p, 1) - torch.log(torch.tensor(float(log_p.shape[1])))
        if self.method == "weighted":
            w = self.weights / self.weights.sum()
            return torch.logsumexp(log_p + torch.log(w.clamp_min(1e-12)).view(1, -1, 1), 1)
        if self.method == "stacking":
            feats = torch.log(log_p.exp().clamp(min=float(self.stack_eps), max=1.0)).flatten(1)  # (B, M·C)
            z = feats @ self.stack_coef.T.to(feats.dtype) + self.stack_intercept.to(feats.dtype)
            return F.log_softmax(z, dim=1)
        return self.gating(member_logits, features)

    # -- rebuilding -----------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        members = [{**m.config(), "input_spec": m.input_spec.to_dict()} for m in self.members]
        return {"arch": "fused", "kwargs": {**self.arch_kwargs, "members": members}, "num_classes": self.num_classes,
                "cut_at": None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FusedModel:
        """Rebuild (random weights) from :meth:`config`; the bundle loader fills in the weights."""
        kwargs = dict(config["kwargs"])
        return cls(members_from_config(kwargs.pop("members"), build_from_config), **kwargs)

    def param_groups(self):  # noqa: ANN201 — a fused model is used, not fine-tuned
        return []


FUSED_FORMAT = BundleFormat(
    "fused", "several members and a combination rule, rebuilt from the members' configs",
    load=lambda meta, ctx: ctx.build(FusedModel.from_config))
"""The ``fused`` bundle format (declared as an entry point in ``pyproject.toml``): saved like a plain model (the
members' weights and the rule's tensors), rebuilt by :meth:`FusedModel.from_config`."""
