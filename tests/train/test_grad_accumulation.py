"""Gradient accumulation (`train.accumulate_steps`): the trainer's epoch loop with N batches per
optimiser step updates the weights exactly as one step over the N batches joined would (on a
network without BatchNorm or dropout, where a batch's split does not matter); the LR schedule and
`global_step` count optimiser steps (the real-run check is in test_training's resume test)."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import train_section as _train_section
from train.config import ConfigError, OptimizerConfig
from train.engine.amp import AmpSettings, MixedPrecision
from train.engine.checkpoints import TrainState
from train.engine.objective import Objective, SupervisedCriterion
from train.engine.optim import build_lr_schedule, build_optimizer
from train.engine.trainer import _accumulate_steps, _NoWriter, _Steps, _train_one_epoch

Batch = tuple[paddle.Tensor, paddle.Tensor]


def _batches(count: int, size: int) -> list[Batch]:
    rng = np.random.RandomState(0)
    features = rng.randn(count * size, 6).astype("float32")
    labels = rng.randint(0, 3, count * size).astype("int64")
    return [(paddle.to_tensor(features[i * size:(i + 1) * size]),
             paddle.to_tensor(labels[i * size:(i + 1) * size])) for i in range(count)]


def _mlp() -> paddle.nn.Layer:
    """The same small MLP on every call."""
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Linear(6, 16), paddle.nn.ReLU(), paddle.nn.Linear(16, 3))


def _train_epoch(batches: list[Batch], accumulate: int) -> tuple[list[np.ndarray], TrainState]:
    """One epoch of the trainer's loop over `batches` on `_mlp()` with momentum (nesterov) and
    weight decay; (the weights after it, the train state)."""
    network = _mlp()
    opt_cfg = OptimizerConfig(name="momentum", lr=0.5, weight_decay=0.001)
    schedule = build_lr_schedule(opt_cfg, len(batches) // accumulate, epochs=1, batch_size=8)
    optimizer = build_optimizer(opt_cfg, network.parameters(), schedule)
    steps = _Steps(network, Objective(network, network, SupervisedCriterion()), optimizer,
                   schedule, MixedPrecision(AmpSettings()), accumulate, [], mixup_alpha=0.0,
                   seed=0)
    state = TrainState()
    _train_one_epoch(steps, batches, _NoWriter(), state, "test", progress=False)
    return [parameter.numpy() for parameter in network.parameters()], state


def test_accumulated_half_batches_update_like_full_batches() -> None:
    """Two steps over batches of 8 == two accumulated steps over the same clips as batches of 4
    (momentum carries the first step into the second)."""
    full = _batches(2, 8)
    halves = [half for clips, labels in full
              for half in ((clips[:4], labels[:4]), (clips[4:], labels[4:]))]
    initial = [parameter.numpy() for parameter in _mlp().parameters()]
    expected, full_state = _train_epoch(full, 1)
    got, accumulated_state = _train_epoch(halves, 2)
    assert full_state.global_step == accumulated_state.global_step == 2
    for before, want, have in zip(initial, expected, got):
        assert not np.allclose(before, want)  # the steps did move the weights
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)


def test_batches_left_over_from_the_last_step_are_not_used() -> None:
    batches = _batches(3, 4)
    two, _ = _train_epoch(batches[:2], 2)
    three, state = _train_epoch(batches, 2)
    assert state.global_step == 1
    for want, have in zip(two, three):
        np.testing.assert_array_equal(have, want)


@pytest.mark.parametrize("value,message", [(0, "positive integer"), (True, "positive integer"),
                                           (5, "exceeds the 4 training batches")])
def test_bad_accumulate_steps_are_refused(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"train.accumulate_steps: .*{message}"):
        _accumulate_steps(_train_section(accumulate_steps=value), batches=4)


def test_accumulate_steps_defaults_to_one() -> None:
    assert _accumulate_steps(_train_section(), batches=4) == 1
