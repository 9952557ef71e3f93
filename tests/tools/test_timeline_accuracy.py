"""The issue's timeline proof as `python -m bench.timeline` scores it: a window is right when its
top-1 is the class covering most of it, a true boundary is found when a segment boundary lies
within one stride of it, and the proof holds at >= 90% of windows right with every boundary
found. Scored here on timelines whose answers are known, built by the service's own window plan
and segment merging (serving.core.timeline); then, where `make demo` has trained the demo model
(CI runs it before the tests), that model's timelines of long synthetic videos."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.timeline import (
    DEMO_MODEL,
    LONG_VIDEOS,
    TimelineScore,
    long_videos,
    majority_label,
    scored,
    true_timeline,
)
from serving.core.metadata import load_meta
from serving.tools.offline import OfflinePredictor
from train.data.synthetic_classes import KNOWN_CLASS_NAMES
from serving.core.timeline import (
    RankedClass,
    TimelineOptions,
    TimelineResult,
    TimelineStats,
    WindowResult,
    merge_segments,
    plan_windows,
)

FPS = 10
LABELS = ("move_left", "grow", "shrink")
# Boundaries at 22 s and 51 s: no 10 s window at a 5 s stride is split half and half.
TRUTH = [{"start_s": 0.0, "end_s": 22.0, "label": "move_left"},
         {"start_s": 22.0, "end_s": 51.0, "label": "grow"},
         {"start_s": 51.0, "end_s": 64.0, "label": "shrink"}]


def _timeline(answer: Callable[[float, float], str]) -> TimelineResult:
    """The default-option timeline of a 64 s video whose window [start, end) answers
    `answer(start, end)` with score 0.9."""
    options = TimelineOptions()
    windows = plan_windows(64 * FPS, FPS, options)
    results = [WindowResult(w.start_s, w.end_s, (RankedClass(
        LABELS.index(answer(w.start_s, w.end_s)), answer(w.start_s, w.end_s), 0.9),))
        for w in windows]
    segments = merge_segments(windows, results, options.min_score, 64.0)
    stats = TimelineStats(len(windows), 0, FPS, 64.0, options.window_s, options.stride)
    return TimelineResult(tuple(results), tuple(segments), stats)


def _truth(start: float, end: float) -> str:
    return majority_label(start, end, TRUTH)


def test_windows_are_labelled_by_the_class_covering_most_of_them() -> None:
    assert [_truth(s, s + 10) for s in (10, 15, 20, 45, 50)] == [
        "move_left", "move_left", "grow", "grow", "shrink"]


def test_the_true_timeline_is_all_right_and_finds_every_boundary() -> None:
    score = scored(_timeline(_truth), TRUTH)
    assert (score.right, score.windows, score.found, score.boundaries) == (12, 12, 2, 2)
    assert score.proof_holds


def test_one_wrong_window_of_twelve_breaks_the_ninety_percent_bar() -> None:
    """11/12 = 92% still holds; a wrong window inside a segment also splits it, which adds
    segment boundaries but takes none of the true ones away."""
    one = scored(_timeline(lambda s, e: "shrink" if s == 30 else _truth(s, e)), TRUTH)
    assert (one.right, one.found, one.proof_holds) == (11, 2, True)
    two = scored(_timeline(lambda s, e: "shrink" if s in (30, 35) else _truth(s, e)), TRUTH)
    assert (two.right, two.proof_holds) == (10, False)


def test_a_boundary_the_segments_miss_fails_the_proof() -> None:
    """Answering move_left until 40 s puts the first segment boundary 18 s after the true one
    at 22 s: more than a stride (5 s)."""
    score = scored(_timeline(lambda s, e: "move_left" if s < 35 else _truth(s, e)), TRUTH)
    assert (score.found, score.boundaries, score.proof_holds) == (1, 2, False)


# For the demo model a fresh training run gives: `make timeline-accuracy` (the same 8 videos)
# holds the 90% bar for the runs measured (91-94% over four); a run on another CPU
# trains a slightly different model, so this regression guard sits a few points lower.
DEMO_GUARD = 0.85


def _is_the_demo_model(model: Path) -> bool:
    """An exported model of the synthetic motions (not, say, Kinetics weights exported under
    the same name)."""
    if not (model / "model_meta.json").is_file():
        return False
    return set(load_meta(model).labels) <= set(KNOWN_CLASS_NAMES)


@pytest.mark.skipif(not _is_the_demo_model(DEMO_MODEL),
                    reason=f"{DEMO_MODEL} is not the demo model (make demo trains and exports it)")
def test_the_demo_models_timelines_oflong_videos(tmp_path_factory) -> None:
    """The held-out long videos `make timeline-accuracy` scores (generator seed 0, 6 segments of
    10-30 s each): most windows right and every true boundary found within a stride."""
    predictor = OfflinePredictor(DEMO_MODEL)
    total = TimelineScore.total([
        scored(predictor.timeline(video), true_timeline(video))
        for video in long_videos(tmp_path_factory.mktemp("long_videos"), LONG_VIDEOS)])
    print(f"\ndemo model, {LONG_VIDEOS} long videos: {total.windows_right} windows right, "
          f"{total.boundaries_found} boundaries within a stride")
    assert total.right >= DEMO_GUARD * total.windows
    assert total.found == total.boundaries
