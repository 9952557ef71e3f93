"""Train-time choices the recipes configure: PaddleVideo's dense train sampler and the LR
scaling by batch size."""
from __future__ import annotations

import random

import pytest

from serving.core.metadata import PreprocessSpec
from train.config import OptimizerConfig
from train.data.train_transforms import sample_train_indices
from train.engine.optim import build_lr_schedule

DENSE_SPEC = PreprocessSpec(num_seg=8, sampling="dense")


def test_dense_train_clip_starts_where_paddlevideo_draws_it() -> None:
    """N = 100, span 64: start = randint(0, 37 - 1) exclusive, i.e. randrange(0, 36); then 8
    frames 8 apart."""
    start = random.Random(5).randrange(0, 36)
    indices = sample_train_indices(100, DENSE_SPEC, "dense", random.Random(5))
    assert indices == [start + 8 * t for t in range(8)]


@pytest.mark.parametrize("num_frames", [40, 64, 65])
def test_dense_train_clip_of_a_short_video_starts_at_zero(num_frames: int) -> None:
    indices = sample_train_indices(num_frames, DENSE_SPEC, "dense", random.Random(0))
    assert indices == [(8 * t) % num_frames for t in range(8)]


def test_lr_scaling_by_batch_scales_warmup_start_and_peak() -> None:
    cfg = OptimizerConfig(lr=0.005, warmup_start_lr=0.0025, warmup_epochs=1,
                          scale_lr_by_batch=True, reference_batch_size=64)
    schedule = build_lr_schedule(cfg, steps_per_epoch=4, epochs=3, batch_size=8)
    rates = []
    for _ in range(5):
        rates.append(schedule())
        schedule.step()
    assert rates[0] == pytest.approx(0.0025 / 8)
    assert rates[4] == pytest.approx(0.005 / 8)
