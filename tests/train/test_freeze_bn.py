"""Frozen and partial BatchNorm (`train.freeze_bn`): after real optimiser steps a frozen layer
still has its statistics and affine parameters, the first layer under `partial` has learned,
and frozen parameters are not handed to the optimiser."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from train.config import ConfigError, OptimizerConfig
from train.engine.freeze_bn import freeze_batch_norms
from train.engine.losses import MixedTargets
from train.engine.objective import SupervisedCriterion
from train.engine.optim import build_lr_schedule, build_optimizer
from train.engine.layer_modes import batch_norms, keep_in_eval_mode
from train.models import build_model

BN_TENSORS = ("_mean", "_variance", "weight", "bias")


def _bn_values(model: paddle.nn.Layer) -> list[dict[str, np.ndarray]]:
    return [{name: getattr(layer, name).numpy().copy() for name in BN_TENSORS}
            for layer in batch_norms(model)]


def _train_steps(mode: str, steps: int = 2) -> tuple[list, list, list, paddle.optimizer.Optimizer]:
    """A tiny PP-TSMv2 with `mode` applied, trained `steps` AdamW steps on one batch the way the
    trainer does (train(), then keep_in_eval_mode). (BN values before, after, frozen, optimiser)."""
    paddle.seed(0)
    model = build_model("pptsm_v2_lcnet", num_classes=4, num_seg=4, width_mult=0.25, dropout=0.0)
    frozen = freeze_batch_norms(model, mode)
    before = _bn_values(model)
    opt_cfg = OptimizerConfig(name="adamw", lr=0.01)
    schedule = build_lr_schedule(opt_cfg, steps_per_epoch=steps, epochs=1, batch_size=2)
    optimizer = build_optimizer(opt_cfg, [p for p in model.parameters() if not p.stop_gradient],
                                schedule)
    clips = paddle.to_tensor(np.random.RandomState(0).randn(2, 4, 3, 32, 32).astype("float32"))
    targets = MixedTargets.unmixed(paddle.to_tensor([0, 3]))
    criterion = SupervisedCriterion()
    for _ in range(steps):
        model.train()
        keep_in_eval_mode(frozen)
        loss, _parts = criterion(model(clips), targets)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    return before, _bn_values(model), frozen, optimizer


def _changed(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> set[str]:
    return {name for name in BN_TENSORS if not np.array_equal(before[name], after[name])}


def test_partial_bn_freezes_every_batch_norm_but_the_first() -> None:
    before, after, frozen, optimizer = _train_steps("partial")
    assert len(frozen) == len(before) - 1 > 10
    assert _changed(before[0], after[0]) == set(BN_TENSORS)  # the first one trains
    for index in range(1, len(before)):
        assert not _changed(before[index], after[index]), f"frozen BN {index} changed"
    trained = {id(p) for p in optimizer._parameter_list}
    assert not any(id(layer.weight) in trained or id(layer.bias) in trained for layer in frozen)


def test_all_frozen_keeps_every_batch_norm() -> None:
    before, after, frozen, optimizer = _train_steps("all")
    assert len(frozen) == len(before)
    for index in range(len(before)):
        assert not _changed(before[index], after[index]), f"frozen BN {index} changed"
    trained = {id(p) for p in optimizer._parameter_list}
    assert trained and not any(id(layer.weight) in trained for layer in frozen)


def test_none_freezes_nothing() -> None:
    before, after, frozen, _optimizer = _train_steps("none", steps=1)
    assert frozen == []
    assert all(_changed(b, a) == set(BN_TENSORS) for b, a in zip(before, after))


def test_frozen_layers_stay_in_eval_mode_after_train() -> None:
    model = build_model("pptsm_mobilenet_v2", num_classes=4, num_seg=4)
    frozen = freeze_batch_norms(model, "partial")
    model.train()
    keep_in_eval_mode(frozen)
    norms = batch_norms(model)
    assert norms[0].training and not any(layer.training for layer in norms[1:])


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.freeze_bn"):
        freeze_batch_norms(paddle.nn.BatchNorm2D(3), "frozen")
