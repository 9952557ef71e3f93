"""Precise BatchNorm: recompute the running statistics with the final weights before evaluating.

BatchNorm's running averages lag behind weights that change quickly (early training, short
CPU runs) and still carry their initial values after few iterations; through twenty stacked
BN layers that small error compounds until eval-mode outputs no longer depend on the input.
Re-estimating the statistics as a plain average over a few training batches, with the weights
frozen, removes the lag (PaddleVideo's recipes call this `precise_bn`).

A recipe asks for it with `train.precise_bn: {interval_epochs: K, num_iters: B}` (PaddleVideo's
PRECISEBN, whose defaults K = 1, B = 200 apply to a missing key, see train/config.py): B
batches after the first epoch, after every K-th epoch from there, and after the last one
(PaddleVideo's rule: 0-based `epoch % K == 0 or epoch == epochs - 1`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import paddle
import paddle.nn as nn

from train.config import TrainConfig
from train.engine.layer_modes import batch_norms, keep_in_eval_mode


@dataclass(frozen=True)
class PreciseBNSchedule:
    """When to recompute the statistics (`due`) and from how many batches (0: never)."""

    num_batches: int = 0
    interval_epochs: int = 1

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to recompute after the 0-based `epoch` of a run of `epochs` epochs."""
        return self.num_batches > 0 and (epoch % self.interval_epochs == 0 or epoch == epochs - 1)


def precise_bn_schedule(train_cfg: TrainConfig) -> PreciseBNSchedule:
    """The schedule a recipe's `train.precise_bn` asks for (none: never)."""
    block = train_cfg.precise_bn
    if block is None:
        return PreciseBNSchedule()
    return PreciseBNSchedule(num_batches=block.num_iters, interval_epochs=block.interval_epochs)


@paddle.no_grad()
def recompute_bn_statistics(model: nn.Layer, loader, num_batches: int,
                            skip: Sequence[nn.Layer] = ()) -> int:
    """Sets every BN layer's running mean/variance to the average over `num_batches` batches
    of `loader` (train mode, no weight update). The layers in `skip` (frozen BNs, see
    `freeze_bn`) stay in eval mode and keep their statistics. Returns the number of batches
    used."""
    skipped = {id(layer) for layer in skip}
    norms = [layer for layer in batch_norms(model) if id(layer) not in skipped]
    if not norms or num_batches <= 0:
        return 0
    saved_momentum = [layer._momentum for layer in norms]
    was_training = model.training
    model.train()
    keep_in_eval_mode(skip)
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
