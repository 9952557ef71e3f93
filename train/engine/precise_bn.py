"""Precise BatchNorm: recompute the running statistics with the final weights before evaluating.

BatchNorm's running averages lag behind weights that change quickly (early training, short
CPU runs) and still carry their initial values after few iterations; through twenty stacked
BN layers that small error compounds until eval-mode outputs no longer depend on the input.
Re-estimating the statistics as a plain average over a few training batches, with the weights
frozen, removes the lag (PaddleVideo's recipes call this `precise_bn`).
"""
from __future__ import annotations

import itertools

import paddle
import paddle.nn as nn

# Every BN class the model zoo uses (BatchNorm1D/2D/3D share this base).
_BATCH_NORMS = (nn.layer.norm._BatchNormBase,)


def batch_norms(model: nn.Layer) -> list[nn.Layer]:
    """Every BatchNorm layer of `model`."""
    return [layer for layer in model.sublayers() if isinstance(layer, _BATCH_NORMS)]


@paddle.no_grad()
def recompute_bn_statistics(model: nn.Layer, loader, num_batches: int) -> int:
    """Sets every BN layer's running mean/variance to the average over `num_batches` batches
    of `loader` (train mode, no weight update). Returns the number of batches used."""
    norms = batch_norms(model)
    if not norms or num_batches <= 0:
        return 0
    saved_momentum = [layer._momentum for layer in norms]
    was_training = model.training
    model.train()
    used = 0
    for index, (clips, _labels) in enumerate(itertools.islice(loader, num_batches)):
        for layer in norms:
            # running = m * running + (1 - m) * batch with m = i / (i + 1): a cumulative mean.
            layer._momentum = index / (index + 1.0)
        model(clips)
        used += 1
    for layer, momentum in zip(norms, saved_momentum):
        layer._momentum = momentum
    if not was_training:
        model.eval()
    return used
