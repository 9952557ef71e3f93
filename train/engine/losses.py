"""Classification and distillation losses used by the recipes.

Label smoothing is done here rather than with `F.cross_entropy(label_smoothing=...)`: on Paddle
3.3.1 CPU that path sends the int64 labels to a `label_smooth` kernel that only exists for floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F

DML_EPS = 1e-12  # PaddleClas' DMLLoss epsilon, kept so the numbers match PaddleVideo's


@dataclass(frozen=True)
class MixedTargets:
    """The labels of a batch whose clip i is lam * (a clip of labels_a[i]) + (1 - lam) * (a clip
    of labels_b[i]); lam = 1 is an unmixed batch."""

    labels_a: paddle.Tensor
    labels_b: paddle.Tensor
    lam: float = 1.0

    @classmethod
    def unmixed(cls, labels: paddle.Tensor) -> "MixedTargets":
        return cls(labels, labels, 1.0)


def smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor,
                           smoothing: float = 0.0) -> paddle.Tensor:
    """Mean cross entropy against (1 - smoothing) * one_hot + smoothing / num_classes."""
    labels = labels.reshape([-1])
    if smoothing <= 0.0:
        return F.cross_entropy(logits, labels.reshape([-1, 1]))
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return F.cross_entropy(logits, target, soft_label=True)


def mixed_cross_entropy(logits: paddle.Tensor, targets: MixedTargets,
                        smoothing: float = 0.0) -> paddle.Tensor:
    """PaddleVideo's mixup loss: lam * CE(labels_a) + (1 - lam) * CE(labels_b)."""
    loss = smoothed_cross_entropy(logits, targets.labels_a, smoothing)
    if targets.lam >= 1.0:
        return loss
    other = smoothed_cross_entropy(logits, targets.labels_b, smoothing)
    return targets.lam * loss + (1.0 - targets.lam) * other


def kd_kl_loss(student_logits: paddle.Tensor, teacher_logits: paddle.Tensor,
               temperature: float) -> paddle.Tensor:
    """Hinton's soft-label loss: T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch
    mean. The T^2 keeps its gradients on the scale of the hard-label loss whatever T is; the
    teacher side is a constant (no gradient reaches the teacher)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher_log_probs = F.log_softmax(teacher_logits.detach() / temperature, axis=-1)
    student_log_probs = F.log_softmax(student_logits / temperature, axis=-1)
    per_clip = paddle.sum(paddle.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
                          axis=-1)
    return paddle.mean(per_clip) * temperature ** 2


def dml_kl_loss(logits_a: paddle.Tensor, logits_b: paddle.Tensor,
                eps: float = DML_EPS) -> paddle.Tensor:
    """Deep mutual learning's loss (PaddleClas DMLLoss, which PaddleVideo's DML recipes use): the
    symmetric KL divergence between the two softmaxes, halved, batch mean. Both sides get
    gradients, so each network learns from the other's soft labels."""
    probs_a = F.softmax(logits_a, axis=-1)
    probs_b = F.softmax(logits_b, axis=-1)
    log_ratio = paddle.log((probs_b + eps) / (probs_a + eps))  # log(b / a)
    symmetric = paddle.sum(probs_b * log_ratio - probs_a * log_ratio, axis=-1)
    return paddle.mean(symmetric) / 2.0
