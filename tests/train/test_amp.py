"""Mixed precision (`train.amp`): the settings, the refusal on a device without AMP (Paddle
3.3's dygraph AMP on CPU silently runs float32), a few bfloat16 steps where the device has
them, and the float16 loss-scaler state that a resume restores."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import DEMO_RECIPE, tiny_overrides
from tests.tiny_recipe import train_section
from train.config import ConfigError, OptimizerConfig, load_config
from train.engine.amp import AmpSettings, MixedPrecision, amp_settings
from train.engine.checkpoints import SCALER_CHECKPOINT, TrainState, load_scaler_state, save_latest
from train.engine.losses import MixedTargets
from train.engine.objective import SupervisedCriterion
from train.engine.optim import build_lr_schedule, build_optimizer
from train.engine.trainer import train
from train.models import build_model

FLOAT16 = paddle.amp.is_float16_supported()
BFLOAT16 = paddle.amp.is_bfloat16_supported()


def test_amp_is_off_unless_asked_for() -> None:
    assert amp_settings(train_section().amp) == AmpSettings(enabled=False)
    assert amp_settings(train_section(amp={"enabled": False, "dtype": "float16"}).amp).enabled is False
    precision = MixedPrecision(AmpSettings())
    assert precision.scaler is None and precision.state_dict() == {}


@pytest.mark.parametrize("block,message", [
    ({"enabled": True, "dtype": "float8"}, "train.amp.dtype"),
    ({"enabled": True, "level": "O3"}, "train.amp.level"),
    ({"enabled": "yes"}, "train.amp.enabled"),
    ({"enabled": True, "scale": 1024}, "train.amp"),
    ([True], "train.amp"),
])
def test_bad_settings_are_refused(block: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        amp_settings(train_section(amp=block).amp)


@pytest.mark.skipif(FLOAT16, reason="this device runs float16 AMP")
def test_float16_on_a_device_without_it_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        amp_settings(train_section(amp={"enabled": True, "dtype": "float16", "level": "O1"}).amp)
    message = str(error.value)
    assert "train.amp: float16 AMP is not supported on device" in message
    assert ("train.amp.dtype=bfloat16" if BFLOAT16 else "train.amp.enabled=false") in message


@pytest.mark.skipif(BFLOAT16, reason="this device runs bfloat16 AMP")
def test_bfloat16_on_a_device_without_it_is_refused() -> None:
    """Paddle 3.3 on CPU: auto_cast(dtype='bfloat16') warns 'amp_guard can only be enabled on
    CUDAPlace, XPUPlace, and CustomPlace, current place is Place(cpu), so it makes no effect'
    and the CPU matmul kernel has no bfloat16 version; the recipe is refused instead."""
    with pytest.raises(ConfigError, match="train.amp: bfloat16 AMP is not supported on device"):
        amp_settings(train_section(amp={"enabled": True, "dtype": "bfloat16", "level": "O1"}).amp)


@pytest.mark.skipif(FLOAT16 and BFLOAT16, reason="this device runs both AMP dtypes")
def test_trainer_refuses_amp_before_any_work(quick_dataset: Path, tmp_path: Path) -> None:
    dtype = "bfloat16" if not BFLOAT16 else "float16"
    cfg = load_config(DEMO_RECIPE, tiny_overrides(
        quick_dataset, tmp_path / "run", 1, f"train.amp={{enabled: true, dtype: {dtype}}}"))
    with pytest.raises(ConfigError, match="train.amp"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not BFLOAT16, reason="this device has no bfloat16 AMP (Paddle on CPU)")
def test_bfloat16_amp_trains_a_tiny_model() -> None:
    paddle.seed(0)
    model = build_model("pptsm_v2_lcnet", num_classes=4, num_seg=4, width_mult=0.25, dropout=0.0)
    before = [parameter.numpy().copy() for parameter in model.parameters()]
    precision = MixedPrecision(amp_settings(train_section(amp={"enabled": True,
                                                               "dtype": "bfloat16"}).amp))
    assert precision.scaler is None  # bfloat16 needs no loss scaling
    opt_cfg = OptimizerConfig(name="adamw", lr=0.002)
    schedule = build_lr_schedule(opt_cfg, steps_per_epoch=3, epochs=1, batch_size=2)
    optimizer = build_optimizer(opt_cfg, model.parameters(), schedule)
    clips = paddle.to_tensor(np.random.RandomState(0).randn(2, 4, 3, 32, 32).astype("float32"))
    targets = MixedTargets.unmixed(paddle.to_tensor([0, 3]))
    model.train()
    for _ in range(3):
        with precision.autocast():
            loss, _parts = SupervisedCriterion()(model(clips), targets)
        precision.backward(loss)
        precision.step(optimizer)
        optimizer.clear_grad()
        assert math.isfinite(float(loss))
    after = [parameter.numpy() for parameter in model.parameters()]
    assert not np.array_equal(after[0], before[0]) and not np.array_equal(after[-1], before[-1])


def test_loss_scaler_state_is_kept_for_resume(tmp_path: Path) -> None:
    """float16 AMP's dynamic loss scale must survive a resume; without a scaler nothing is
    written."""
    model = paddle.nn.Linear(2, 2)
    optimizer = paddle.optimizer.SGD(parameters=model.parameters())
    save_latest(tmp_path / "plain", model, optimizer, TrainState(), {})
    assert not (tmp_path / "plain" / SCALER_CHECKPOINT).exists()
    assert load_scaler_state(tmp_path / "plain") == {}
    scaler_state = {"scale": np.array([1024.0], dtype="float32"), "incr_count": 7,
                    "decr_count": 0, "use_dynamic_loss_scaling": True}
    save_latest(tmp_path / "amp", model, optimizer, TrainState(), scaler_state)
    loaded = load_scaler_state(tmp_path / "amp")
    assert loaded["incr_count"] == 7 and float(np.asarray(loaded["scale"]).item()) == 1024.0
