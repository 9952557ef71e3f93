"""Train-time randomness: sampling offsets, an optional temporal crop, an optional cut to
another clip, multi-scale crop, optional flip.

Inference preprocessing (resize, centre crop, normalise) lives in `serving.core.preprocess` and is
reused here, so training and serving can never drift apart. Only the random parts are here.
Horizontal flip is off by default: on direction classes (move left / move right) a flip
changes the label. The temporal crop and the cut are off by default too (PaddleVideo samples one
whole clip); a recipe turns them on when the model must also recognise part of an action, and an
action next to the end of another, as the windows of a timeline show them (docs/long-videos.md).
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


def temporal_crop(num_frames: int, fraction_range: tuple[float, float], min_frames: int,
                  rng: random.Random) -> tuple[int, int]:
    """(first frame, frame count) of a random stretch of a clip covering a fraction drawn
    uniformly from `fraction_range`, at least `min_frames` frames (never more than the clip),
    at a uniformly random position. A range of (1, 1) is the whole clip and draws nothing."""
    low, high = fraction_range
    if low >= 1.0:
        return 0, num_frames
    fraction = rng.uniform(low, high)
    length = min(num_frames, max(min_frames, round(fraction * num_frames)))
    return rng.randint(0, num_frames - length), length


@dataclass(frozen=True)
class Cut:
    """A training clip cut to another clip: its first `frames` frames are the other clip's last
    ones (`before`: the other clip comes before the cut), or its last ones the other's first."""

    frames: int
    before: bool

    def pick(self, indices: list[int]) -> list[int]:
        """Of the other clip's sampled indices, those next to the cut (only they are read)."""
        return indices[-self.frames:] if self.before else indices[:self.frames]

    def join(self, clip: np.ndarray, other: np.ndarray) -> np.ndarray:
        """`clip` ([T, ...]) with `other` (the picked frames) in place of its frames at the cut."""
        if self.before:
            return np.concatenate([other, clip[self.frames:]])
        return np.concatenate([clip[:-self.frames], other])


@dataclass(frozen=True)
class TrainAugment:
    """Multi-scale crop (TSN style): crop a random square-ish box whose sides are chosen from
    `scales` x the short side, at a random position, then resize it to the crop size.

    `temporal_crop`: the training frames are sampled (by the recipe's train sampling) from a
    random stretch covering this range of fractions of the clip instead of the whole clip, so a
    model trained on clips of one whole action also learns what part of one looks like, e.g. a
    timeline window that sees a third of a slow motion. (1, 1), the default, is off.

    `cut`: the probability that a training clip is cut to another (random) training clip, as a
    timeline window that straddles the end of one action and the start of the next: its first or
    last frames, at most half, are replaced by the other clip's frames next to the cut, and the
    label stays the clip's, the class covering most of the frames (how a timeline window is
    judged). A cut at the middle always puts the other clip first, so the label is the second
    half's: which half covers more of a window split half and half cannot be told from its
    frames, and one consistent answer (the action the window ends in) can be learnt where a
    label drawn at random teaches neither. 0, the default, is off."""

    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    flip: bool = False
    temporal_crop: tuple[float, float] = (1.0, 1.0)
    cut: float = 0.0

    def __post_init__(self) -> None:
        if len(self.temporal_crop) != 2 or not 0 < self.temporal_crop[0] <= self.temporal_crop[1] <= 1:
            raise ValueError(f"temporal_crop: needs [low, high] fractions of the clip with "
                             f"0 < low <= high <= 1, got {list(self.temporal_crop)}")
        if not 0 <= self.cut <= 1:
            raise ValueError(f"cut: a probability from 0 to 1, got {self.cut!r}")

    def draw_cut(self, num_seg: int, rng: random.Random) -> Cut | None:
        """The cut of a training clip of `num_seg` frames: None (always when `cut` is 0, which
        draws nothing), else 1 to half of its frames from another clip, before or after it."""
        most = num_seg // 2
        if self.cut == 0 or most < 1 or rng.random() >= self.cut:
            return None
        frames = rng.randint(1, most)
        # Half and half: the clip's own frames come second, so the label is the later half's.
        return Cut(frames, frames * 2 == num_seg or rng.random() < 0.5)

    def indices(self, num_frames: int, spec: PreprocessSpec, sampling: str,
                rng: random.Random) -> list[int]:
        """0-based frame indices of one training clip: `sample_train_indices` inside the
        temporal crop."""
        start, length = temporal_crop(num_frames, self.temporal_crop, spec.num_seg, rng)
        return [start + index for index in sample_train_indices(length, spec, sampling, rng)]

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
