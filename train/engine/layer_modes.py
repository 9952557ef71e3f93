"""Finding BatchNorm layers and holding layers in eval mode inside a network that trains.

Frozen BN layers (`freeze_bn`), BN layers left alone by precise BN, and a frozen distillation
teacher must stay in eval mode while the rest of the network is in train mode. Paddle's
`Layer.eval()` cannot do that: besides the layers' flags it switches Paddle's global tracer to
eval mode, which would affect the whole step; only the flags are set here.
"""
from __future__ import annotations

from typing import Iterable

import paddle.nn as nn

# Every BN class the model zoo uses (BatchNorm1D/2D/3D share this base).
_BATCH_NORMS = (nn.layer.norm._BatchNormBase,)


def batch_norms(model: nn.Layer) -> list[nn.Layer]:
    """Every BatchNorm layer of `model`."""
    return [layer for layer in model.sublayers() if isinstance(layer, _BATCH_NORMS)]


def keep_in_eval_mode(layers: Iterable[nn.Layer]) -> None:
    """Puts `layers` (not their sublayers) in eval mode again, after a `train()` of the network
    that holds them set them to train mode."""
    for layer in layers:
        layer.training = False
