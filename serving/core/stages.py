"""The per-clip work of the service's stages as plain functions: frames -> views -> scores.

The Paddle Serving ops (serving/pipeline/ops.py) and the in-process predictor
(serving/tools/offline.py) must answer the same file with the same numbers, so the few steps
between "an opened video" and "ranked classes" exist once, here, and both call them, and so do
the stage names both report timings under. Nothing in this module knows about Paddle Serving or
requests; only the timeline, whose stages interleave, charges its own time to a StageClock.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from serving.core.errors import DecodeError
from serving.core.metadata import PreprocessSpec
from serving.core.postprocess import top_k, video_probabilities
from serving.core.preprocess.decode import ShortVideoError, VideoSource, read_sampled
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.pipeline import preprocess, sample_indices
from serving.core.preprocess.transforms import FrameResize, scaled_size
from serving.core.preprocess.raw_frames import RawFrames
from serving.core.preprocess.window_frames import (
    check_reads,
    distinct_frame_count,
    free_cut_of,
    plan_reads,
    window_frames,
)
from serving.core.timeline import (
    DEFAULT_FRAMES_FPS,
    RankedClass,
    TimelineOptions,
    TimelineResult,
    TimelineStats,
    WindowResult,
    count_windows,
    merge_segments,
    plan_windows,
    smooth_probabilities,
)
from serving.core.timing import StageClock

# The stage names: the service's op names for the three preprocessing stages (also the keys of
# their `op.<name>` settings) and, with INFER, the keys of the answer's `timing_ms`, in pipeline
# order. The model op itself is named "pptsm" in the pipeline config (serving.pipeline.service).
DECODE, SAMPLE, NORMALIZE, INFER = "decode", "sample", "normalize", "infer"
PREPROCESS_STAGES = (DECODE, SAMPLE, NORMALIZE)
STAGES = (*PREPROCESS_STAGES, INFER)


def model_resize(source: VideoSource | RawFrames, spec: PreprocessSpec) -> FrameResize:
    """The model's Scale step for `source`'s frames, applied to each frame as it is decoded."""
    size = scaled_size(source.width, source.height, spec.scale_size, spec.fixed_ratio)
    return FrameResize(size, spec.resize_backend)


def sample_frames(source: VideoSource | RawFrames, spec: PreprocessSpec, mode: str) -> np.ndarray:
    """Decodes only the frames `mode` samples from `source`, each distinct one once, scaled to
    the model's scale_size as soon as it is decoded: RGB uint8 [k, h, w, 3] (network_views'
    own Scale step then has nothing left to do, so the pixels are those of scaling after
    sampling). The caller keeps ownership of `source` (and closes it)."""
    _, frames = read_sampled(source, lambda count: sample_indices(count, spec, mode),
                             model_resize(source, spec))
    return frames


def network_views(frames: np.ndarray, spec: PreprocessSpec, mode: str) -> np.ndarray:
    """Sampled frames -> the network input of one request, float32 [views, T, 3, S, S].
    Preprocessing returns rows clip by clip (and crop by crop), T consecutive rows per view."""
    rows = preprocess(frames, spec, mode)
    return rows.reshape(-1, spec.num_seg, *rows.shape[1:])


def ranked_classes(view_logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (class_id, probability) pairs of one video from the logits of its views."""
    return top_k(video_probabilities(view_logits), k)


# How every window is sampled (serving.core.timeline).
WINDOW_SAMPLING = "uniform"

# One network call: float32 [windows, T, 3, S, S] -> logits [windows, classes].
Predict = Callable[[np.ndarray], np.ndarray]


@contextmanager
def _adding(clock: StageClock, stage: str) -> Iterator[None]:
    """Adds the block's time to `stage`: the timeline's stages take turns, batch by batch."""
    started = time.perf_counter()
    yield
    clock.stage_ms[stage] = clock.stage_ms.get(stage, 0.0) + (time.perf_counter() - started) * 1e3


def labelled_classes(view_logits: np.ndarray, k: int,
                     labels: Sequence[str]) -> tuple[RankedClass, ...]:
    """ranked_classes with each class's label."""
    return tuple(RankedClass(class_id, labels[class_id], score)
                 for class_id, score in ranked_classes(view_logits, k))


def _classify_windows(source: VideoSource | RawFrames, spec: PreprocessSpec,
                      labels: Sequence[str], options: TimelineOptions, fps: float,
                      predict: Predict, *, batch_size: int, limits: DecodeLimits, topk: int,
                      clock: StageClock) -> TimelineResult:
    limits.check_windows(count_windows(source.num_frames, fps, options))
    windows = plan_windows(source.num_frames, fps, options)
    indices = [window.indices(spec.num_seg) for window in windows]
    resize = model_resize(source, spec)
    reads = plan_reads(indices, free_cut_of(source), batch_size)
    check_reads(source, reads, resize, limits)
    probabilities: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        with _adding(clock, INFER):
            logits = predict(np.stack(batch))
        probabilities.extend(video_probabilities(row[None]) for row in logits)
        batch.clear()

    frames_of_windows = window_frames(source, reads, indices, resize)
    while True:
        with _adding(clock, SAMPLE):
            item = next(frames_of_windows, None)
        if item is None:
            break
        with _adding(clock, NORMALIZE):
            batch.append(network_views(item[1], spec, WINDOW_SAMPLING)[0])
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    scores = np.stack(probabilities)
    if options.smooth:
        scores = smooth_probabilities(scores)
    results = [WindowResult(window.start_s, window.end_s,
                            tuple(RankedClass(class_id, labels[class_id], score)
                                  for class_id, score in top_k(row, topk)))
               for window, row in zip(windows, scores, strict=True)]
    duration_s = source.num_frames / fps
    stats = TimelineStats(windows=len(windows), frames_decoded=distinct_frame_count(reads),
                          fps=fps, duration_s=duration_s, window_s=options.window_s,
                          stride_s=options.stride)
    segments = merge_segments(windows, results, options.min_score, duration_s)
    return TimelineResult(tuple(results), tuple(segments), stats, clock.stage_ms)


def timeline_fps(source: VideoSource | RawFrames,
                 frames_fps: float = DEFAULT_FRAMES_FPS) -> float:
    """Frames per second that place the windows: the stream's own rate, `frames_fps` for raw
    frames (which carry none)."""
    if isinstance(source, RawFrames):
        return frames_fps
    if source.fps > 0:
        return source.fps
    raise DecodeError("video: the stream declares no frame rate, which a timeline needs to "
                      "place its windows in time")


def classify_timeline(source: VideoSource | RawFrames, spec: PreprocessSpec,
                      labels: Sequence[str], options: TimelineOptions, fps: float,
                      predict: Predict, *, batch_size: int, limits: DecodeLimits, topk: int,
                      clock: StageClock | None = None) -> TimelineResult:
    """Classifies every window of `source` (serving.core.timeline) in one pass through it:
    `max_windows`, the decoding budget and the frames held at once are checked before any frame
    is decoded; windows go to `predict` `batch_size` at a time. Time is charged to SAMPLE
    (decoding and resizing), NORMALIZE and INFER of `clock`. A stream shorter than its container
    claimed is planned again, once, from the frames that decode (as read_sampled does)."""
    clock = clock or StageClock()
    try:
        return _classify_windows(source, spec, labels, options, fps, predict,
                                 batch_size=batch_size, limits=limits, topk=topk, clock=clock)
    except ShortVideoError:
        return _classify_windows(source, spec, labels, options, fps, predict,
                                 batch_size=batch_size, limits=limits, topk=topk, clock=clock)
