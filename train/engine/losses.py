"""Classification losses used by the recipes.

Label smoothing is done here rather than with `F.cross_entropy(label_smoothing=...)`: on Paddle
3.3.1 CPU that path sends the int64 labels to a `label_smooth` kernel that only exists for floats.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F


def smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor,
                           smoothing: float = 0.0) -> paddle.Tensor:
    """Mean cross entropy against (1 - smoothing) * one_hot + smoothing / num_classes."""
    labels = labels.reshape([-1])
    if smoothing <= 0.0:
        return F.cross_entropy(logits, labels.reshape([-1, 1]))
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return F.cross_entropy(logits, target, soft_label=True)
