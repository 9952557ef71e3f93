"""Timeline mode, the pure part: which windows of a long video are classified, and how their
answers become segments. No decoding, no model: serving.core.stages runs the windows.

A window is a clip of `window_s` seconds, starting every `stride_s` seconds (the last one ends
at the end of the video, so no tail goes unseen), sampled as the model's uniform test sampling
samples a clip of that length: the same indices as `uniform_indices(length, T)`, shifted to the
window's first frame. A video shorter than one window is one window: the whole video, exactly
what a `uniform` request samples.

Segments: windows overlap, so a segment does not end where its last window ends. Each window
stands for the span around its centre that is closer to it than to its neighbours' centres
(the first from 0 s, the last up to the end of the video); consecutive windows whose top-1
class agrees and scores at least `min_score` merge into one segment over their spans, scored
by the mean of their top-1 scores. A window under `min_score` belongs to no segment. A segment
boundary therefore lies half-way between two window centres, within half a stride of where
the windows' answers change.

Smoothing (`smooth`, on by default): each window's class probabilities are averaged with its
two neighbours' (weights SMOOTHING_WEIGHTS) before they are ranked and merged. A window that
straddles a change of action sees part of each, and a few frames of two actions often look like
neither, so alone it tends to name a third class; its neighbours, each mostly inside one of the
two actions, pull it towards them. On long synthetic videos this took the share of windows whose
top-1 is the action covering most of them from 83% to 91% (docs/long-videos.md, "How right it
is"); `smooth=0` answers each window on its own frames only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from serving.core.preprocess.sampling import uniform_indices

TIMELINE = "timeline"  # the request mode that answers a timeline
DEFAULT_WINDOW_S = 10.0  # a Kinetics clip
DEFAULT_MIN_SCORE = 0.5
DEFAULT_FRAMES_FPS = 25.0  # raw `frames` requests carry no frame rate
# A window's own probabilities and its two neighbours' when smoothing: the window keeps the
# larger share, so a window well inside an action is not pulled out of it by one neighbour.
SMOOTHING_WEIGHTS = (0.25, 0.5, 0.25)


@dataclass(frozen=True)
class TimelineOptions:
    """A timeline request's options; `stride_s` None means half the window. A bad value raises
    ValueError naming the option."""

    window_s: float = DEFAULT_WINDOW_S
    stride_s: float | None = None
    min_score: float = DEFAULT_MIN_SCORE
    smooth: bool = True

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"window_s: must be > 0 seconds, got {self.window_s!r}")
        if self.stride_s is not None and not 0 < self.stride_s <= self.window_s:
            raise ValueError(f"stride_s: must be > 0 and at most window_s ({self.window_s:g} s) "
                             f"so that every frame lies in a window, got {self.stride_s!r}")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score: must be from 0 to 1, got {self.min_score!r}")

    @property
    def stride(self) -> float:
        """The stride in seconds, defaults applied."""
        return self.window_s / 2 if self.stride_s is None else self.stride_s


@dataclass(frozen=True)
class Window:
    """`length` frames from frame `start` of a video of `fps` frames per second."""

    start: int
    length: int
    fps: float

    @property
    def start_s(self) -> float:
        return self.start / self.fps

    @property
    def end_s(self) -> float:
        return (self.start + self.length) / self.fps

    @property
    def center_s(self) -> float:
        return (self.start_s + self.end_s) / 2

    def indices(self, num_seg: int) -> list[int]:
        """The window's frames as the uniform test sampling picks them from a clip of its
        length, as frame numbers of the whole video."""
        return [self.start + index for index in uniform_indices(self.length, num_seg)]


def plan_windows(num_frames: int, fps: float, options: TimelineOptions) -> list[Window]:
    """The windows of a video of `num_frames` frames at `fps`: starts every stride (at least one
    frame), all of one length (at most the video), the last one flush with the video's end."""
    if num_frames < 1 or not fps > 0:
        raise ValueError(f"a timeline needs frames and a frame rate, got {num_frames} frames at "
                         f"{fps!r} fps")
    length = min(num_frames, max(1, round(options.window_s * fps)))
    step = max(1, round(options.stride * fps))
    starts = list(range(0, num_frames - length + 1, step))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [Window(start, length, fps) for start in starts]


def count_windows(num_frames: int, fps: float, options: TimelineOptions) -> int:
    """len(plan_windows(...)) without building them: checked against max_windows first."""
    length = min(num_frames, max(1, round(options.window_s * fps)))
    step = max(1, round(options.stride * fps))
    full = (num_frames - length) // step + 1
    return full + (1 if (full - 1) * step + length < num_frames else 0)


@dataclass(frozen=True)
class RankedClass:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True)
class WindowResult:
    """One window's span (seconds) and its ranked classes, best first."""

    start_s: float
    end_s: float
    ranked: tuple[RankedClass, ...]


@dataclass(frozen=True)
class Segment:
    """Consecutive windows that agree on their top-1 class (see the module docstring)."""

    start_s: float
    end_s: float
    class_id: int
    label: str
    score: float


def smooth_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """[windows, classes] probabilities, each row averaged with its neighbours' by
    SMOOTHING_WEIGHTS; the first and last windows stand in for their missing neighbour, so every
    row still sums to 1."""
    if probabilities.ndim != 2:
        raise ValueError(f"expected probabilities [windows, classes], got shape "
                         f"{list(probabilities.shape)}")
    padded = np.concatenate([probabilities[:1], probabilities, probabilities[-1:]])
    before, own, after = SMOOTHING_WEIGHTS
    return before * padded[:-2] + own * padded[1:-1] + after * padded[2:]


def _spans(windows: Sequence[Window], duration_s: float) -> list[tuple[float, float]]:
    """Each window's span: from half-way to the previous centre to half-way to the next one."""
    centres = [window.center_s for window in windows]
    cuts = [(a + b) / 2 for a, b in zip(centres, centres[1:])]
    return list(zip([0.0, *cuts], [*cuts, duration_s]))


def merge_segments(windows: Sequence[Window], results: Sequence[WindowResult],
                   min_score: float, duration_s: float) -> list[Segment]:
    """The segments of a timeline: runs of consecutive windows whose top-1 class agrees and
    scores >= min_score, over the windows' spans (see the module docstring)."""
    segments: list[Segment] = []
    run: list[tuple[tuple[float, float], RankedClass]] = []

    def close_run() -> None:
        if run:
            best = run[0][1]
            score = sum(top.score for _, top in run) / len(run)
            segments.append(Segment(run[0][0][0], run[-1][0][1], best.class_id, best.label,
                                    score))
            run.clear()

    for span, result in zip(_spans(windows, duration_s), results, strict=True):
        top = result.ranked[0]
        if top.score < min_score:
            close_run()
            continue
        if run and run[0][1].class_id != top.class_id:
            close_run()
        run.append((span, top))
    close_run()
    return segments


@dataclass(frozen=True)
class TimelineStats:
    """What a timeline cost: windows classified and distinct frames decoded for them."""

    windows: int
    frames_decoded: int
    fps: float
    duration_s: float
    window_s: float
    stride_s: float


@dataclass(frozen=True)
class TimelineResult:
    """A video's timeline: every window's answer, the segments, the cost, and each stage's time
    in milliseconds (serving.core.stages names)."""

    windows: tuple[WindowResult, ...]
    segments: tuple[Segment, ...]
    stats: TimelineStats
    stage_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The answer's `timeline`, `segments` and `timeline_stats` values, as JSON-ready
        objects (the service answers each key as a JSON string; offline tools write them)."""
        return {
            "timeline": [{"start_s": _seconds(window.start_s), "end_s": _seconds(window.end_s),
                          "topk": [_ranked_json(top) for top in window.ranked]}
                         for window in self.windows],
            "segments": [{"start_s": _seconds(segment.start_s), "end_s": _seconds(segment.end_s),
                          "class_id": segment.class_id, "label": segment.label,
                          "score": round(segment.score, 6)} for segment in self.segments],
            "timeline_stats": {"windows": self.stats.windows,
                               "frames_decoded": self.stats.frames_decoded,
                               "fps": round(self.stats.fps, 3),
                               "duration_s": _seconds(self.stats.duration_s),
                               "window_s": self.stats.window_s,
                               "stride_s": self.stats.stride_s},
        }


def _seconds(value: float) -> float:
    return round(value, 3)


def _ranked_json(ranked: RankedClass) -> dict[str, object]:
    return {"class_id": ranked.class_id, "label": ranked.label, "score": round(ranked.score, 6)}


@dataclass(frozen=True)
class TimelineSettings:
    """The service's `timeline` config section: windows per network call, and the seconds the
    sample stage may spend on one timeline (which decodes, normalises and classifies every
    window there; the stage's own timeout bounds single clips)."""

    batch_size: int = 1
    timeout_s: float = 300.0
    # Timelines classified at once; more are answered 503 (retry later). A timeline holds a
    # sample-stage thread for its whole run, so this must stay below op.sample.concurrency for
    # single clips to keep a thread of their own.
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max_concurrent, bool) or not isinstance(self.max_concurrent, int) \
                or self.max_concurrent < 1:
            raise ValueError(f"max_concurrent: must be an integer >= 1, got {self.max_concurrent!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size: must be an integer >= 1, got {self.batch_size!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) \
                or self.timeout_s <= 0:
            raise ValueError(f"timeout_s: must be seconds > 0, got {self.timeout_s!r}")
