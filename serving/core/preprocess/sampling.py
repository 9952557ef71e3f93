"""Which frames of a video the network sees: PaddleVideo's test-time Sampler, index for index.

All indices are 0-based frame numbers of a decoded video. PaddleVideo's frame-folder datasets
use 1-based file numbers (`img_00001.jpg`); those are these indices plus one. The rules are the
ones PaddleVideo runs at inference, including its quirks, because a checkpoint was evaluated
with them:

* uniform: T segments of floor(N / T) frames, the frame just left of each segment's centre;
  the last N - T * floor(N / T) frames are never used; N < T repeats frames cyclically.
* dense (the PP-TSM "dense" test pipeline): `num_clips` clips spread evenly over the video,
  each of T frames `span / T` apart, wrapping around the end of short videos with `% N`.

Train-time random sampling belongs to train/; it reuses `segment_length`,
`dense_start_count` and `dense_clip_indices` so both stages share the arithmetic.
"""
from __future__ import annotations

import numpy as np


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def segment_length(num_frames: int, num_seg: int) -> int:
    """Frames per uniform segment, floor(N / T); 0 when the video is shorter than T frames."""
    _require_positive(num_frames=num_frames, num_seg=num_seg)
    return num_frames // num_seg


def uniform_indices(num_frames: int, num_seg: int) -> list[int]:
    """Test-time uniform sample: index_i = (avg - 1) // 2 + i * avg (i when avg == 0), mod N."""
    avg = segment_length(num_frames, num_seg)
    if avg == 0:
        return [i % num_frames for i in range(num_seg)]
    return [((avg - 1) // 2 + i * avg) % num_frames for i in range(num_seg)]


def dense_start_count(num_frames: int, span: int = 64) -> int:
    """How many clip start positions a dense clip of `span` frames has: max(1, N - span + 1)."""
    _require_positive(num_frames=num_frames, span=span)
    return max(1, num_frames - span + 1)


def dense_clip_indices(start: int, num_frames: int, num_seg: int = 8, span: int = 64) -> list[int]:
    """One dense clip: T frames `span // T` apart from `start`, wrapped with % N."""
    _require_positive(num_frames=num_frames, num_seg=num_seg, span=span)
    stride = span // num_seg
    return [(start + stride * t) % num_frames for t in range(num_seg)]


def dense_indices(num_frames: int, num_seg: int = 8, num_clips: int = 10,
                  span: int = 64) -> list[int]:
    """The test-time dense sample: `num_clips` clips, clip by clip (num_clips * T indices).

    Clip starts are `np.linspace(0, starts - 1, num_clips)` truncated toward zero, exactly as
    PaddleVideo computes them (numpy's linspace is the reference, so it is used here too).
    """
    _require_positive(num_clips=num_clips)
    last_start = dense_start_count(num_frames, span) - 1
    starts = np.linspace(0, last_start, num_clips, dtype=int)
    return [index for start in starts.tolist()
            for index in dense_clip_indices(start, num_frames, num_seg, span)]
