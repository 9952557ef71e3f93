"""`optimizer.lr_mult`: per-parameter LR multipliers by name prefix, applied through Paddle's own
per-parameter `learning_rate` attribute, checked on real optimiser steps."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from train.config import ConfigError, OptimizerConfig
from train.engine.optim import apply_lr_multipliers, build_optimizer


class TwoLayers(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.first = paddle.nn.Linear(4, 3)
        self.second = paddle.nn.Linear(3, 2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.second(paddle.tanh(self.first(x)))


def _one_step(optimizer_cfg: OptimizerConfig, multipliers: dict) -> tuple[dict, dict, list[str]]:
    """Weights before and after one step on a fixed batch."""
    paddle.seed(0)
    model = TwoLayers()
    changed = apply_lr_multipliers(model, multipliers)
    before = {name: p.numpy().copy() for name, p in model.named_parameters()}
    optimizer = build_optimizer(optimizer_cfg, model.parameters(), 0.1)
    x = paddle.to_tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))
    model(x).square().mean().backward()
    optimizer.step()
    after = {name: p.numpy() for name, p in model.named_parameters()}
    return before, after, changed


def test_sgd_update_of_a_prefixed_layer_is_scaled_exactly() -> None:
    sgd = OptimizerConfig(name="momentum", momentum=0.0, nesterov=False)
    before, plain, _ = _one_step(sgd, {})
    _, scaled, changed = _one_step(sgd, {"first": 0.25})
    assert sorted(changed) == ["first.bias", "first.weight"]
    for name in ("first.weight", "first.bias"):
        np.testing.assert_allclose(scaled[name] - before[name], 0.25 * (plain[name] - before[name]),
                                   rtol=1e-5, atol=1e-8)
    for name in ("second.weight", "second.bias"):
        np.testing.assert_array_equal(scaled[name], plain[name])


def test_adamw_leaves_a_zero_multiplier_layer_unchanged() -> None:
    before, after, changed = _one_step(OptimizerConfig(name="adamw", weight_decay=0.0),
                                       {"second.weight": 0.0})
    assert changed == ["second.weight"]
    np.testing.assert_array_equal(after["second.weight"], before["second.weight"])
    assert not np.array_equal(after["second.bias"], before["second.bias"])
    assert not np.array_equal(after["first.weight"], before["first.weight"])


def test_prefix_matches_whole_name_parts_only() -> None:
    with pytest.raises(ConfigError, match="no parameter is named 'firs'"):
        apply_lr_multipliers(TwoLayers(), {"firs": 0.1})
