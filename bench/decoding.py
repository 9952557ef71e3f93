"""Sparse (only the frames a model samples) versus full decoding of one clip, per decoder."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from serving.core.preprocess import decode_pyav
from serving.core.preprocess.decode import decode_all, open_video, read_sampled
from serving.core.preprocess.sampling import uniform_indices
from serving.core.spread import Spread
from bench.clips import BenchClip

# PyAV with its two-decoder split turned off: the before / after of that change in one run.
PYAV_ONE_DECODER = "pyav, one decoder"
BACKENDS = ("auto", "decord", "pyav", PYAV_ONE_DECODER, "opencv")


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


@contextmanager
def _decoder_named(label: str) -> Iterator[str]:
    """The decode backend behind a row label (PYAV_ONE_DECODER: pyav, split off meanwhile)."""
    if label != PYAV_ONE_DECODER:
        yield label
        return
    threshold = decode_pyav.PARALLEL_MIN_PIXELS
    decode_pyav.PARALLEL_MIN_PIXELS = sys.maxsize
    try:
        yield "pyav"
    finally:
        decode_pyav.PARALLEL_MIN_PIXELS = threshold


def decode_timing(clip: BenchClip, label: str, *, num_seg: int, sparse_repeats: int,
                  full_repeats: int) -> DecodeTiming:
    """Probe + open + decode of `num_seg` uniformly sampled frames, versus every frame."""
    video = clip.read()
    with _decoder_named(label) as backend:
        sparse = _timed_ms(lambda: _sparse(video, backend, num_seg), sparse_repeats)
        full = _timed_ms(lambda: decode_all(video, backend=backend), full_repeats)
    return DecodeTiming(clip.label, label, num_seg, sparse, full)
