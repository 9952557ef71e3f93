"""Train-time choices the recipes configure: PaddleVideo's dense train sampler, the temporal
crop and the cut to another clip (`augment.temporal_crop`, `augment.cut`) and the LR scaling by
batch size."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from serving.core.list_file import Sample
from serving.core.metadata import PreprocessSpec
from serving.core.timeline import DEFAULT_WINDOW_S
from train.config import ConfigError, OptimizerConfig, load_config
from train.data.synthetic import DEFAULT_SEGMENT_SECONDS
from train.data.train_transforms import TrainAugment, sample_train_indices
from train.data.video_dataset import ClipDataset
from train.engine.optim import build_lr_schedule
from tests.tiny_recipe import DEMO_RECIPE

DENSE_SPEC = PreprocessSpec(num_seg=8, sampling="dense")
UNIFORM_SPEC = PreprocessSpec(num_seg=4)


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


@pytest.mark.parametrize("spec,sampling", [(UNIFORM_SPEC, "uniform"), (DENSE_SPEC, "dense")])
def test_without_temporal_crop_training_samples_the_whole_clip_as_paddlevideo(
        spec: PreprocessSpec, sampling: str) -> None:
    """The default draws nothing more: the same indices from the same generator state."""
    for seed in range(20):
        assert TrainAugment().indices(300, spec, sampling, random.Random(seed)) == \
            sample_train_indices(300, spec, sampling, random.Random(seed))


def test_a_temporal_crop_samples_a_stretch_of_the_drawn_share_anywhere_in_the_clip() -> None:
    """A fixed share of 30% of 200 frames: 4 frames inside 60 consecutive ones, spread over
    the stretch as over a clip of 60 (one per quarter), at starts reaching both clip ends."""
    augment = TrainAugment(temporal_crop=(0.3, 0.3))
    clips = [augment.indices(200, UNIFORM_SPEC, "uniform", random.Random(seed))
             for seed in range(300)]
    for indices in clips:
        assert indices == sorted(indices) and 0 <= indices[0] and indices[-1] < 200
        assert 30 < indices[-1] - indices[0] < 60
    assert min(indices[0] for indices in clips) < 15 and max(indices[-1] for indices in clips) > 185


def test_a_temporal_crop_draws_shares_across_its_range() -> None:
    """First to last frame of a 4-frame clip spans half to all of its stretch: 25-100% of 400
    frames gives spans from under 100 to over 300."""
    augment = TrainAugment(temporal_crop=(0.25, 1.0))
    clips = [augment.indices(400, UNIFORM_SPEC, "uniform", random.Random(seed))
             for seed in range(300)]
    spans = [indices[-1] - indices[0] for indices in clips]
    assert min(spans) < 100 and max(spans) > 300


def test_a_temporal_crop_keeps_at_least_one_frame_per_segment() -> None:
    """10% of 20 frames would be 2; the stretch keeps num_seg (8) distinct frames."""
    indices = TrainAugment(temporal_crop=(0.1, 0.1)).indices(20, PreprocessSpec(num_seg=8),
                                                             "uniform", random.Random(3))
    assert len(set(indices)) == 8 and indices[-1] - indices[0] <= 7


@pytest.mark.parametrize("override", ["temporal_crop=[0, 1]", "temporal_crop=[0.5, 0.4]",
                                      "temporal_crop=[0.5, 1.5]", "temporal_crop=[0.5]",
                                      "cut=1.5", "cut=-0.1"])
def test_a_bad_temporal_augmentation_is_refused_naming_the_key(override: str) -> None:
    with pytest.raises(ConfigError, match=rf"augment\.{override.split('=')[0]}"):
        load_config(DEMO_RECIPE, [f"augment.{override}"])


def test_the_demo_recipe_trains_on_stretches_as_short_as_a_timeline_window_sees() -> None:
    """A default timeline window on the longest default long-video segment (one motion over
    the whole segment) sees window / segment of the motion: the demo model trains on clips
    cropped that short, so such a window is no stranger to it (docs/long-videos.md)."""
    shortest_share = load_config(DEMO_RECIPE).augment.temporal_crop[0]
    assert shortest_share <= DEFAULT_WINDOW_S / DEFAULT_SEGMENT_SECONDS[1]


def _solid_clip(sample: Sample, choose) -> np.ndarray:
    """A reader of 60-frame clips whose every pixel is the sample's label: each training
    frame tells which clip it came from."""
    return np.full((len(choose(60)), 40, 40, 3), sample.label, np.uint8)


def _train_set(augment: TrainAugment) -> ClipDataset:
    samples = [Sample(Path(f"clip{label}.mp4"), label) for label in range(0, 250, 50)]
    return ClipDataset(samples, PreprocessSpec(num_seg=4, scale_size=36, crop_size=32,
                                               mean=(0.0,) * 3, std=(1 / 255,) * 3),
                       augment=augment, reader=_solid_clip)


def _sources(clip: np.ndarray) -> list[int]:
    """The label each frame of a normalised clip came from (mean 0, std 1/255: pixel values)."""
    return [int(round(float(frame.mean()))) for frame in clip]


def test_a_cut_puts_at_most_half_of_another_clip_at_one_end_and_keeps_the_label() -> None:
    """4 frames: a cut replaces 1 or 2, at the start or the end, never inside; half and half,
    the clip's own frames (its label) come second."""
    dataset = _train_set(TrainAugment(cut=1.0))
    ends = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            clip, label = dataset[index]
            sources = _sources(clip)
            own = [position for position, source in enumerate(sources) if source == label]
            assert len(own) >= 2 and own == list(range(own[0], own[0] + len(own)))
            assert own[0] == 0 or own[-1] == 3
            ends.add((own[0], len(own)))
    cuts = {(0, 3), (1, 3), (2, 2)}  # (first own frame, own frames)
    assert cuts <= ends <= cuts | {(0, 4)}  # (0, 4): the other clip drawn was the clip itself


def test_without_a_cut_every_frame_is_the_clips_own() -> None:
    dataset = _train_set(TrainAugment())
    for index in range(len(dataset)):
        clip, label = dataset[index]
        assert _sources(clip) == [label] * 4


@pytest.mark.parametrize("num_seg,most", [(4, 2), (8, 4), (5, 2), (1, 0)])
def test_a_cut_takes_at_most_half_the_frames(num_seg: int, most: int) -> None:
    cuts = [TrainAugment(cut=1.0).draw_cut(num_seg, random.Random(seed)) for seed in range(200)]
    assert {cut.frames if cut else 0 for cut in cuts} == (set(range(1, most + 1)) or {0})


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
