"""Knowledge-distillation losses as plain modules, kept apart from the training loop (the TLlib pattern).

A teacher network's outputs become extra targets for a (usually smaller) student. These modules only turn a
batch of student and teacher outputs into loss terms; the loop that runs both networks lives elsewhere.

* :func:`kd_loss` / :class:`KDLoss` — response-based distillation, Hinton, Vinyals & Dean, 2015, "Distilling
  the Knowledge in a Neural Network": ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, mixed with the cross-entropy
  on the labels as ``α · KD + (1 − α) · CE``.
* :class:`HintLoss` — feature-based distillation, Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep
  Nets": a learned regressor maps the student's *hint* layer onto the shape of the teacher's *guided* layer and
  the two are matched by mean squared error.

The teacher is a fixed target in both: its outputs are detached, so gradients reach only the student (and the
hint regressor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not t > 0:  # also rejects NaN
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return t


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss: ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch.

    Softening both distributions with temperature ``T`` exposes the teacher's "dark knowledge" (the relative
    probabilities of wrong classes); the gradient of the softened KL shrinks as ``1/T²``, so the factor ``T²``
    keeps its scale comparable across temperatures and against a hard-label cross-entropy (Hinton et al., §2).
    The KL uses ``reduction="batchmean"`` (sum over classes, mean over examples), the true KL per example.
    ``teacher_logits`` are detached: the teacher is a target, not trained by this loss.
    """
    t = _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"kd_loss: student and teacher logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if student_logits.ndim != 2:
        raise ValueError(f"kd_loss: expects (B, C) logits, got shape {tuple(student_logits.shape)}")
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (t * t)


class KDLoss(nn.Module):
    """Hinton et al. (2015) objective as terms: ``{"kd": w · kd_loss, "ce": (1 − α) · CE(student, labels)}``.

    Sum the terms for the total loss. ``labels`` may mark unlabelled examples with ``-1`` (ignored by the
    cross-entropy, which averages over the labelled ones only), so one batch can mix labelled and unlabelled
    data. The KD weight ``w`` is ``α`` when the batch holds at least one label; when ``labels`` is ``None`` or
    all ``-1`` there is no hard-label term to balance against, so ``"ce"`` is 0 and ``w`` is 1 (pure
    distillation, whatever ``α``).

    Parameters
    ----------
    temperature:
        Softmax temperature ``T`` > 0 (Hinton et al. used 1–20; 4 is a common default).
    alpha:
        Weight ``α`` ∈ [0, 1] of the distillation term when labels are present.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        a = float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = a

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kd = kd_loss(student_logits, teacher_logits, self.temperature)
        if labels is not None and labels.shape != student_logits.shape[:1]:
            raise ValueError(f"KDLoss: labels must have shape ({student_logits.shape[0]},) to match the logits, "
                             f"got {tuple(labels.shape)}")
        if labels is None or not bool((labels != -1).any()):
            return {"kd": kd, "ce": student_logits.new_zeros(())}
        ce = F.cross_entropy(student_logits, labels, ignore_index=-1)
        return {"kd": self.alpha * kd, "ce": (1.0 - self.alpha) * ce}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


def _shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    s = tuple(int(d) for d in shape)
    if len(s) not in (1, 3) or any(d <= 0 for d in s):
        raise ValueError(f"HintLoss: {what} must be (C, H, W) for feature maps or (D,) for vectors, all positive "
                         f"(without the batch dimension), got {tuple(shape)}")
    return s


class HintLoss(nn.Module):
    """FitNets hint loss (Romero et al., ICLR 2015): ``MSE(regressor(student_hint), teacher_guided)``.

    The student's hint layer is usually thinner than the teacher's guided layer, so a regressor (trained with
    the student) maps it to the teacher's width; the mean squared error over all elements is the loss.

    * Feature maps ``(C, H, W)`` on both sides: the regressor is a 1×1 convolution ``C_s → C_t``. Where the
      spatial sizes differ, each side is average-pooled (``F.adaptive_avg_pool2d``) to the smaller size per
      dimension, so the larger map is summarised rather than the smaller one interpolated (FitNets instead sizes
      a convolutional regressor's kernel to bridge the gap; pooling needs no extra parameters and works for any
      pair of sizes). Spatial sizes are reconciled at every call, so they may vary with the input resolution.
    * Vectors ``(D,)`` on both sides: the regressor is ``Linear(D_s, D_t)``.
    * A feature map against a vector: the map is global-average-pooled to ``(C,)`` first (as a CNN's head
      does), then the vector case applies.

    Shapes are given without the batch dimension (e.g. ``(64, 7, 7)`` or ``(1280,)``, see
    :func:`transferkit.distillation.probe_shape`) so that the regressor's parameters exist before the optimiser is
    built. The teacher's features are detached.
    """

    def __init__(self, student_shape: Sequence[int], teacher_shape: Sequence[int]) -> None:
        super().__init__()
        self.student_shape = _shape(student_shape, "student_shape")
        self.teacher_shape = _shape(teacher_shape, "teacher_shape")
        self.spatial = len(self.student_shape) == 3 and len(self.teacher_shape) == 3
        c_s, c_t = self.student_shape[0], self.teacher_shape[0]
        self.regressor: nn.Module = nn.Conv2d(c_s, c_t, kernel_size=1) if self.spatial else nn.Linear(c_s, c_t)

    @staticmethod
    def _check(x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if x.ndim != len(shape) + 1 or x.shape[1] != shape[0]:
            raise ValueError(f"HintLoss: {what} features should be (B, {', '.join(map(str, shape))}) "
                             f"(spatial size may vary), got {tuple(x.shape)}")

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        self._check(student_features, self.student_shape, "student")
        self._check(teacher_features, self.teacher_shape, "teacher")
        if student_features.shape[0] != teacher_features.shape[0]:
            raise ValueError(f"HintLoss: batch sizes differ: {student_features.shape[0]} (student) and "
                             f"{teacher_features.shape[0]} (teacher)")
        s, t = student_features, teacher_features.detach()
        if self.spatial:
            s = self.regressor(s)
            size = (min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3]))
            if tuple(s.shape[2:]) != size:
                s = F.adaptive_avg_pool2d(s, size)
            if tuple(t.shape[2:]) != size:
                t = F.adaptive_avg_pool2d(t, size)
        else:
            if s.ndim == 4:
                s = s.mean(dim=(2, 3))
            if t.ndim == 4:
                t = t.mean(dim=(2, 3))
            s = self.regressor(s)
        return F.mse_loss(s, t)

    def extra_repr(self) -> str:
        return f"student_shape={self.student_shape}, teacher_shape={self.teacher_shape}"
