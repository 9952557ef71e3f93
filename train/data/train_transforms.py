"""Train-time randomness: sampling offsets, multi-scale crop, optional flip.

Inference preprocessing (resize, centre crop, normalise) lives in `serving.core.preprocess` and is
reused here, so training and serving can never drift apart. Only the random parts are here.
Horizontal flip is off by default: on direction classes (move left / move right) a flip
changes the label.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.sampling import dense_clip_indices, dense_start_count
from serving.core.preprocess.transforms import normalize, resize_frames, scaled_size

TRAIN_SAMPLINGS = ("uniform", "dense")


def train_indices(num_frames: int, num_seg: int, rng: random.Random) -> list[int]:
    """PaddleVideo's train-mode uniform sampler: a random frame inside each of T segments."""
    avg = num_frames // num_seg
    if avg >= 1:
        return [i * avg + rng.randint(0, avg - 1) for i in range(num_seg)]
    return [i % num_frames for i in range(num_seg)]


def train_dense_indices(num_frames: int, num_seg: int, span: int, rng: random.Random) -> list[int]:
    """PaddleVideo's train-mode dense sampler (the dense recipes' `dense_sample`): one clip of
    T frames `span // T` apart from a random start in [0, starts - 2] (numpy's exclusive bound)."""
    starts = dense_start_count(num_frames, span)
    start = 0 if starts <= 2 else rng.randrange(0, starts - 1)
    return dense_clip_indices(start, num_frames, num_seg, span)


def sample_train_indices(num_frames: int, spec: PreprocessSpec, sampling: str,
                         rng: random.Random) -> list[int]:
    """0-based frame indices of one training clip for `sampling` ('uniform' or 'dense')."""
    if sampling == "dense":
        return train_dense_indices(num_frames, spec.num_seg, spec.dense_span, rng)
    return train_indices(num_frames, spec.num_seg, rng)


@dataclass(frozen=True)
class TrainAugment:
    """Multi-scale crop (TSN style): crop a random square-ish box whose sides are chosen from
    `scales` x the short side, at a random position, then resize it to the crop size."""

    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    flip: bool = False

    def __call__(self, frames: np.ndarray, spec: PreprocessSpec, rng: random.Random) -> np.ndarray:
        height, width = frames.shape[1:3]
        size = scaled_size(width, height, spec.scale_size, spec.fixed_ratio)
        frames = resize_frames(frames, size, backend=spec.resize_backend)
        width, height = size
        base = min(width, height)
        sides = [int(base * s) for s in self.scales]
        pairs = [(w, h) for i, w in enumerate(sides) for j, h in enumerate(sides)
                 if abs(i - j) <= self.max_distort]
        crop_w, crop_h = rng.choice(pairs)
        x0 = rng.randint(0, width - crop_w)
        y0 = rng.randint(0, height - crop_h)
        frames = frames[:, y0:y0 + crop_h, x0:x0 + crop_w]
        frames = resize_frames(frames, (spec.crop_size, spec.crop_size), backend=spec.resize_backend)
        if self.flip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        return normalize(np.ascontiguousarray(frames), spec.mean, spec.std)
