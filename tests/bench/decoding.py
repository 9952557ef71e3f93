"""Sparse (only the frames a model samples) versus full decoding of one clip, per decoder."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from serving.preprocess.decode import decode_all, open_video, read_sampled
from serving.preprocess.sampling import uniform_indices
from serving.spread import Spread
from tests.bench.clips import BenchClip

BACKENDS = ("auto", "decord", "pyav", "opencv")


@dataclass(frozen=True)
class DecodeTiming:
    clip: str
    backend: str
    sampled_frames: int
    sparse_ms: Spread
    full_ms: Spread


def _timed_ms(work: Callable[[], object], repeats: int) -> Spread:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000.0)
    return Spread.of(times)


def _sparse(video: bytes, backend: str, num_seg: int) -> None:
    with open_video(video, backend=backend) as source:
        read_sampled(source, lambda count: uniform_indices(count, num_seg))


def decode_timing(clip: BenchClip, backend: str, *, num_seg: int, sparse_repeats: int,
                  full_repeats: int) -> DecodeTiming:
    """Probe + open + decode of `num_seg` uniformly sampled frames, versus every frame."""
    video = clip.read()
    sparse = _timed_ms(lambda: _sparse(video, backend, num_seg), sparse_repeats)
    full = _timed_ms(lambda: decode_all(video, backend=backend), full_repeats)
    return DecodeTiming(clip.label, backend, num_seg, sparse, full)
