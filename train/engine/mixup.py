"""Mixup for video clips, as PaddleVideo's `Mixup` batch transform does it (`train.mixup_alpha`).

One lam ~ Beta(alpha, alpha) per batch; every clip is blended with the clip a random permutation
puts beside it, and the loss is lam * CE(own label) + (1 - lam) * CE(partner's label)
(`losses.mixed_cross_entropy`). The random numbers come from a generator the trainer seeds with
(seed, step), so a resumed run mixes exactly as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import paddle

from train.engine.losses import MixedTargets


def mixup_batch(clips: paddle.Tensor, labels: paddle.Tensor, alpha: float,
                rng: np.random.Generator) -> tuple[paddle.Tensor, MixedTargets]:
    """(mixed clips, targets); alpha <= 0 returns the batch unchanged (mixup off)."""
    labels = labels.reshape([-1])
    if alpha <= 0:
        return clips, MixedTargets.unmixed(labels)
    lam = float(rng.beta(alpha, alpha))
    order = paddle.to_tensor(rng.permutation(clips.shape[0]))
    mixed = lam * clips + (1.0 - lam) * paddle.gather(clips, order)
    return mixed, MixedTargets(labels, paddle.gather(labels, order), lam)
