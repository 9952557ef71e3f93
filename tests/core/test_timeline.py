"""Timeline mode's pure parts: window planning, segment merging (serving.core.timeline) and the
one-pass plan of reads (serving.core.preprocess.window_frames)."""
from __future__ import annotations

import numpy as np
import pytest

from serving.core.errors import LimitExceededError
from serving.core.preprocess.decode import DecodeLimits, open_video
from serving.core.preprocess.raw_frames import RawFrames
from serving.core.preprocess.transforms import FrameResize
from serving.core.preprocess.window_frames import (
    check_reads,
    distinct_frame_count,
    free_cut_of,
    peak_held_frames,
    plan_reads,
    window_frames,
)
from serving.core.timeline import (
    RankedClass,
    TimelineOptions,
    Window,
    WindowResult,
    count_windows,
    merge_segments,
    plan_windows,
    smooth_probabilities,
)
from tests.core.test_preprocess_sampling import UNIFORM_ROWS
from tests.video_corpus import encode_video


def _result(window: Window, class_id: int, score: float) -> WindowResult:
    return WindowResult(window.start_s, window.end_s,
                        (RankedClass(class_id, f"class{class_id}", score),))


def test_default_windows_are_ten_seconds_every_five_and_the_last_ends_with_the_video() -> None:
    windows = plan_windows(num_frames=25 * 32, fps=25.0, options=TimelineOptions())
    assert [(w.start_s, w.end_s) for w in windows] == [
        (0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0), (20.0, 30.0), (22.0, 32.0)]


def test_a_video_shorter_than_a_window_is_one_window_sampled_as_uniform_does() -> None:
    (window,) = plan_windows(num_frames=40, fps=10.0, options=TimelineOptions(window_s=10))
    assert (window.start, window.length) == (0, 40)


@pytest.mark.parametrize("num_frames,num_seg,row", UNIFORM_ROWS,
                         ids=[f"N{n}-T{t}" for n, t, _ in UNIFORM_ROWS])
def test_a_window_samples_paddlevideos_uniform_indices_shifted_to_its_start(num_frames, num_seg,
                                                                             row) -> None:
    window = Window(start=137, length=num_frames, fps=25.0)
    assert window.indices(num_seg) == [137 + index for index in row["valid_video_0based"]]


@pytest.mark.parametrize("num_frames", [1, 7, 100, 250, 251, 999, 30_000])
@pytest.mark.parametrize("window_s,stride_s", [(10, None), (10, 3), (2, 2), (0.01, 0.01)])
def test_count_windows_equals_the_plan(num_frames, window_s, stride_s) -> None:
    options = TimelineOptions(window_s=window_s, stride_s=stride_s)
    windows = plan_windows(num_frames, 25.0, options)
    assert count_windows(num_frames, 25.0, options) == len(windows)
    assert windows[-1].start + windows[-1].length == num_frames


@pytest.mark.parametrize("options,message", [
    (dict(window_s=0), "window_s"), (dict(stride_s=11), "stride_s"),
    (dict(stride_s=0), "stride_s"), (dict(min_score=1.5), "min_score")])
def test_bad_options_are_refused_naming_the_option(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        TimelineOptions(**options)


def test_agreeing_windows_merge_and_segment_bounds_lie_between_window_centres() -> None:
    windows = plan_windows(num_frames=300, fps=10.0, options=TimelineOptions(window_s=4))
    classes = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    assert len(windows) == len(classes)
    results = [_result(w, c, 0.9) for w, c in zip(windows, classes)]
    segments = merge_segments(windows, results, min_score=0.5, duration_s=30.0)
    assert [(s.class_id, s.start_s, s.end_s) for s in segments] == [
        (0, 0.0, 11.0), (1, 11.0, 27.0), (2, 27.0, 30.0)]
    assert segments[0].label == "class0" and segments[0].score == pytest.approx(0.9)


def test_a_window_under_min_score_belongs_to_no_segment_and_splits_a_run() -> None:
    windows = plan_windows(num_frames=100, fps=10.0,
                           options=TimelineOptions(window_s=2, stride_s=2))
    scores = [0.9, 0.7, 0.2, 0.8, 0.6]
    results = [_result(w, 3, s) for w, s in zip(windows, scores)]
    segments = merge_segments(windows, results, min_score=0.5, duration_s=10.0)
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 4.0), (6.0, 10.0)]
    assert segments[0].score == pytest.approx(0.8) and segments[1].score == pytest.approx(0.7)


def _window_indices(num_frames: int, fps: float, options: TimelineOptions,
                    num_seg: int) -> list[list[int]]:
    return [w.indices(num_seg) for w in plan_windows(num_frames, fps, options)]


def test_reads_decode_each_wanted_frame_once_in_ascending_order_and_complete_every_window() -> None:
    indices = _window_indices(1000, 25.0, TimelineOptions(window_s=4, stride_s=1), num_seg=8)
    reads = plan_reads(indices, lambda before, after: True, windows_per_read=3)
    decoded = [index for read in reads for index in read.frames]
    assert decoded == sorted({index for window in indices for index in window})
    assert distinct_frame_count(reads) == len(decoded)
    assert [w for read in reads for w in read.windows] == list(range(len(indices)))
    for read in reads:  # a window is handed out once every frame it samples is decoded
        for window in read.windows:
            assert max(indices[window]) <= read.frames[-1]
    assert len(reads) > 1


def test_reads_end_only_where_the_cut_is_free() -> None:
    indices = _window_indices(1000, 25.0, TimelineOptions(window_s=4, stride_s=1), num_seg=8)
    keyframes = range(0, 1000, 250)

    def free(before: int, after: int) -> bool:
        return max(k for k in keyframes if k <= after) > before

    reads = plan_reads(indices, free, windows_per_read=1)
    assert len(reads) == len(keyframes)
    for earlier, later in zip(reads, reads[1:]):
        assert free(earlier.frames[-1], later.frames[0])
    assert len(plan_reads(indices, lambda a, b: False, 1)) == 1


def test_peak_held_frames_counts_what_is_kept_between_reads() -> None:
    indices = _window_indices(1000, 25.0, TimelineOptions(window_s=4, stride_s=1), num_seg=8)
    one_read = plan_reads(indices, lambda a, b: False, 1)
    many = plan_reads(indices, lambda a, b: True, 1)
    assert peak_held_frames(one_read) == 2 * distinct_frame_count(one_read)
    assert peak_held_frames(many) < peak_held_frames(one_read) / 5


def test_raw_frames_windows_get_their_frames_each_resized_once() -> None:
    frames = np.random.RandomState(0).randint(0, 256, (120, 24, 32, 3), dtype=np.uint8)
    indices = _window_indices(120, 10.0, TimelineOptions(window_s=3.2, stride_s=0.8), num_seg=4)
    resized: list[int] = []

    class CountingResize(FrameResize):
        def __call__(self, frame: np.ndarray) -> np.ndarray:
            resized.append(1)
            return super().__call__(frame)

    source = RawFrames(frames)
    reads = plan_reads(indices, free_cut_of(source), windows_per_read=2)
    out = list(window_frames(source, reads, indices, CountingResize((32, 24))))
    assert [position for position, _ in out] == list(range(len(indices)))
    for position, window in out:
        np.testing.assert_array_equal(window, frames[indices[position]])
    assert len(resized) == distinct_frame_count(reads) < sum(len(i) for i in indices)


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> bytes:
    """300 frames with a keyframe every 50 (x264, no scene-cut keyframes)."""
    path = tmp_path_factory.mktemp("timeline_core") / "gop.mp4"
    encode_video(path, num_frames=300, width=64, height=48, fps=25,
                 options={"g": "50", "keyint_min": "50", "sc_threshold": "0", "bf": "0"})
    return path.read_bytes()


def test_a_seeking_decoder_reads_in_several_reads_at_the_cost_of_one(gop_video) -> None:
    indices = _window_indices(300, 25.0, TimelineOptions(window_s=2, stride_s=1), num_seg=8)
    with open_video(gop_video) as source:
        reads = plan_reads(indices, free_cut_of(source), windows_per_read=1)
        wanted = [index for read in reads for index in read.frames]
        assert len(reads) > 1
        assert sum(source.decode_cost(read.frames) for read in reads) == source.decode_cost(wanted)
        resize = FrameResize((64, 48))
        expected = source.read(wanted, resize)
        by_index = dict(zip(wanted, expected))
        for position, window in window_frames(source, reads, indices, resize):
            np.testing.assert_array_equal(window,
                                          np.stack([by_index[i] for i in indices[position]]))


def test_the_whole_pass_is_checked_against_the_decoding_budget_before_decoding(gop_video) -> None:
    indices = _window_indices(300, 25.0, TimelineOptions(window_s=2, stride_s=1), num_seg=8)
    limits = DecodeLimits(max_decode_pixels=64 * 48 * 100)
    with open_video(gop_video, limits=limits) as source:
        reads = plan_reads(indices, free_cut_of(source), windows_per_read=1)
        assert all(source.decode_cost(read.frames) * 64 * 48 <= limits.max_decode_pixels
                   for read in reads)  # each read alone would pass
        with pytest.raises(LimitExceededError, match="max_decode_pixels"):
            check_reads(source, reads, FrameResize((64, 48)), limits)
    with pytest.raises(LimitExceededError, match="max_decoded_bytes"):
        check_reads(RawFrames(np.zeros((300, 48, 64, 3), np.uint8)),
                    plan_reads(indices, lambda a, b: False, 1), FrameResize((64, 48)),
                    DecodeLimits(max_decoded_bytes=64 * 48 * 3 * 100))


def test_smoothing_pulls_a_straddling_window_towards_its_neighbours() -> None:
    """Class 0, then a window that looks like neither (class 2), then class 1: smoothed, the
    middle window names one of its neighbours' classes; windows inside an action keep theirs and
    every row still sums to 1."""
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.25, 0.45],
                              [0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    smoothed = smooth_probabilities(probabilities)
    assert list(probabilities.argmax(axis=1)) == [0, 0, 2, 1, 1]
    assert list(smoothed.argmax(axis=1)) == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)
    np.testing.assert_allclose(smoothed[0], 0.75 * probabilities[0] + 0.25 * probabilities[1])
    np.testing.assert_allclose(smooth_probabilities(probabilities[:1]), probabilities[:1])
