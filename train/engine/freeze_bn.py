"""Frozen and partial BatchNorm (`train.freeze_bn: none | partial | all`).

Fine-tuning from ImageNet weights on few or highly correlated clips (8 frames of one video per
sample) gives BatchNorm poor batch statistics; TSN's answer is to keep the pretrained statistics
and affine parameters fixed. `all` freezes every BN layer; `partial` (TSN's "partial BN")
freezes all but the first one, which re-adapts to the new input distribution. A frozen layer
normalises with its running statistics (eval mode), its weight and bias receive no gradient and
stay out of the optimiser, and precise BN leaves its statistics alone.
"""
from __future__ import annotations

import paddle.nn as nn

from train.config import FREEZE_BN_MODES, ConfigError
from train.engine.layer_modes import batch_norms, keep_in_eval_mode


def freeze_batch_norms(model: nn.Layer, mode: str) -> list[nn.Layer]:
    """Freezes the BN layers of `model` that `mode` (the recipe's `train.freeze_bn`) names and
    returns them. Call it before the optimiser is built, so that their parameters are left
    out, and `layer_modes.keep_in_eval_mode` on them after every `train()` of the network."""
    if mode not in FREEZE_BN_MODES:
        raise ConfigError(f"train.freeze_bn: one of {', '.join(FREEZE_BN_MODES)}, got {mode!r}")
    norms = batch_norms(model)
    frozen = {"none": [], "partial": norms[1:], "all": norms}[mode]
    for layer in frozen:
        for parameter in (layer.weight, layer.bias):
            if parameter is not None:
                parameter.stop_gradient = True
    keep_in_eval_mode(frozen)
    return frozen
