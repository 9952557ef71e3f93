"""Precise BN: when the recipe's `precise_bn` block
recomputes the statistics, that the recomputation leaves frozen BNs alone, and a tiny real run
of the trainer that recomputes on PaddleVideo's epochs with partial BN frozen."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import DEMO_RECIPE, REPO_ROOT, tiny_overrides, train_section
from train.config import ConfigError, load_config
from train.engine.freeze_bn import freeze_batch_norms
from train.engine.layer_modes import batch_norms
from train.engine.objective import build_objective
from train.engine.precise_bn import PreciseBNSchedule, precise_bn_schedule, recompute_bn_statistics
from train.engine.trainer import train
from train.models import build_model

OFFICIAL_RECIPES = sorted((REPO_ROOT / "train" / "configs" / "pptsm").rglob("*.yaml"))


def _due_epochs(schedule: PreciseBNSchedule, epochs: int) -> list[int]:
    return [epoch for epoch in range(epochs) if schedule.due(epoch, epochs)]


def test_block_recomputes_on_paddlevideos_epochs() -> None:
    """PaddleVideo: 0-based `epoch % interval == 0 or epoch == epochs - 1`."""
    schedule = precise_bn_schedule(train_section(precise_bn={"interval_epochs": 5,
                                                             "num_iters": 200}))
    assert schedule == PreciseBNSchedule(num_batches=200, interval_epochs=5)
    assert _due_epochs(schedule, 12) == [0, 5, 10, 11]
    assert _due_epochs(schedule, 11) == [0, 5, 10]
    assert _due_epochs(precise_bn_schedule(train_section(precise_bn={"num_iters": 3})), 3) == \
        [0, 1, 2]
    assert precise_bn_schedule(train_section(precise_bn={})) == PreciseBNSchedule(200, 1)


def test_no_block_never_recomputes() -> None:
    assert _due_epochs(precise_bn_schedule(train_section()), 4) == []
    assert _due_epochs(precise_bn_schedule(train_section(precise_bn=None)), 4) == []


@pytest.mark.parametrize("train_cfg,message", [
    # The old alias is gone; its canonical name is suggested.
    ({"precise_bn_batches": 8}, "train.precise_bn_batches: unknown key; did you mean "
                                "train.precise_bn[?]"),
    ({"precise_bn": {"interval_epochs": 0}}, "train.precise_bn.interval_epochs"),
    ({"precise_bn": {"num_iters": 200, "every": 5}}, "train.precise_bn"),
    ({"precise_bn": {"num_iters": 0}}, "train.precise_bn.num_iters"),
    ({"precise_bn": {"num_iters": 10, "interval_epochs": 1.5}}, "train.precise_bn.interval"),
    ({"precise_bn": 200}, "train.precise_bn"),
])
def test_bad_settings_are_refused(train_cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        precise_bn_schedule(train_section(**train_cfg))


@pytest.mark.parametrize("recipe", OFFICIAL_RECIPES, ids=lambda path: path.name)
def test_official_recipes_schedule(recipe: Path) -> None:
    """PP-TSM recipes carry PaddleVideo's PRECISEBN (every 5 epochs, 200 batches); PP-TSMv2's
    have none, as in PaddleVideo."""
    schedule = precise_bn_schedule(load_config(recipe).train)
    expected = 0 if "/v2/" in str(recipe) else 200
    assert schedule.num_batches == expected
    assert schedule.interval_epochs == (5 if expected else 1)


def test_demo_recipe_recomputes_every_fifth_epoch() -> None:
    schedule = precise_bn_schedule(load_config(DEMO_RECIPE).train)
    assert schedule == PreciseBNSchedule(num_batches=8, interval_epochs=5)


def test_recomputation_leaves_frozen_batch_norms_alone() -> None:
    paddle.seed(0)
    model = build_model("pptsm_mobilenet_v2", num_classes=4, num_seg=4)
    frozen = freeze_batch_norms(model, "partial")
    norms = batch_norms(model)
    before = [(layer._mean.numpy().copy(), layer._variance.numpy().copy()) for layer in norms]
    rng = np.random.RandomState(0)
    loader = [(paddle.to_tensor(rng.randn(2, 4, 3, 32, 32).astype("float32")), None)
              for _ in range(2)]
    model.eval()
    assert recompute_bn_statistics(model, loader, 2, skip=frozen) == 2
    assert not np.array_equal(norms[0]._mean.numpy(), before[0][0])
    for layer, (mean, variance) in zip(norms[1:], before[1:]):
        np.testing.assert_array_equal(layer._mean.numpy(), mean)
        np.testing.assert_array_equal(layer._variance.numpy(), variance)
    assert not model.training and not any(layer.training for layer in norms)


def test_trainer_recomputes_on_schedule_and_keeps_frozen_statistics(quick_dataset: Path,
                                                                     tmp_path: Path) -> None:
    """3 epochs, interval 5: recomputed after the first and the last epoch only, from 2 batches
    each; partial BN: every BN but the first ends the run with its initial values."""
    out = tmp_path / "run"
    cfg = load_config(DEMO_RECIPE, tiny_overrides(
        quick_dataset, out, 3, "train.batch_size=8",
        "train.precise_bn={interval_epochs: 5, num_iters: 2}", "train.freeze_bn=partial"))
    train(cfg, progress=False)
    history = json.loads((out / "latest.json").read_text())["history"]
    assert [entry["precise_bn"] for entry in history] == [2, 0, 2]

    initial = build_objective(cfg, num_classes=8).student  # BN starts constant: 0, 1, 1, 0
    norm_ids = {id(layer) for layer in batch_norms(initial)}
    names = [name for name, layer in initial.named_sublayers() if id(layer) in norm_ids]
    final = paddle.load(str(out / "latest.pdparams"))
    initial_state = initial.state_dict()
    assert not np.array_equal(final[f"{names[0]}._mean"].numpy(),
                              initial_state[f"{names[0]}._mean"].numpy())
    for name in names[1:]:
        for tensor in ("_mean", "_variance", "weight", "bias"):
            key = f"{name}.{tensor}"
            np.testing.assert_array_equal(final[key].numpy(), initial_state[key].numpy(),
                                          err_msg=key)
