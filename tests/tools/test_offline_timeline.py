"""OfflinePredictor.timeline: the service's timeline code path in process (the batch tool's
`--mode timeline`): a short clip is one window answered as `uniform` answers it, and a 20-minute
video is answered within the limits, or refused naming max_windows before any decoding."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.core.errors import LimitExceededError
from serving.core.preprocess.decode import DecodeLimits
from serving.tools.offline import DecodeSettings, OfflinePredictor
from tests.service_client import tiny_model_dir
from tests.serving_helpers import write_video
from tests.video_corpus import encode_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def twenty_minutes(tmp_path_factory) -> Path:
    """20 minutes at 1 fps, 32x24: cheap to write and decode, long enough for 239 windows."""
    return encode_video(tmp_path_factory.mktemp("offline_timeline") / "twenty.mp4",
                        num_frames=1200, width=32, height=24, fps=1)


def test_a_clip_shorter_than_the_window_is_one_window_answered_as_uniform(model_dir,
                                                                          tmp_path) -> None:
    video = write_video(tmp_path / "clip.mp4", num_frames=40, fps=12.0).read_bytes()
    predictor = OfflinePredictor(model_dir)
    result = predictor.timeline(video, topk=3)
    (window,) = result.windows
    assert (window.start_s, window.end_s) == (0.0, pytest.approx(40 / 12))
    assert window.ranked == predictor.classify(video, topk=3, mode="uniform").ranked
    assert result.stats.windows == 1 and result.stats.frames_decoded == 8


def test_twenty_minutes_are_answered_within_the_limits(model_dir, twenty_minutes) -> None:
    result = OfflinePredictor(model_dir).timeline(twenty_minutes, min_score=0.0)
    assert result.stats.windows == len(result.windows) == 239
    assert result.stats.duration_s == 1200
    assert result.segments[0].start_s == 0 and result.segments[-1].end_s == 1200
    assert result.to_json()["timeline_stats"]["frames_decoded"] == result.stats.frames_decoded


def test_too_many_windows_are_refused_naming_max_windows(model_dir, twenty_minutes) -> None:
    predictor = OfflinePredictor(model_dir, decode=DecodeSettings(DecodeLimits(max_windows=100)))
    with pytest.raises(LimitExceededError, match=r"239 windows .*request_limits\.max_windows"):
        predictor.timeline(twenty_minutes)
    with pytest.raises(ValueError, match="stride_s"):
        predictor.timeline(twenty_minutes, window_s=2, stride_s=3)
