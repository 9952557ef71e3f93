"""`mode: timeline` through the real service (REST and gRPC), a real exported PP-TSMv2 and real
video files: windows and segments of a long video, the same answer as the in-process predictor,
the limits (a 20-minute upload answered within max_windows, refused past it), one timeline at a
time beside single clips, and bad options."""
from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from serving.core.metadata import load_meta
from serving.core.timeline import TimelineOptions, count_windows
from serving.pipeline.service import ConfigError, load_service_config
from serving.tools.offline import OfflinePredictor
from tests.service_client import (
    DEFAULT_CONFIG,
    HTTP_TIMEOUT_S,
    TestService,
    b64,
    fields,
    grpc_call,
    one_engine,
    post,
    prediction_url,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS, raw_frames
from tests.video_corpus import encode_video, moving_square_frames

FPS = 10
SEGMENT_FRAMES = (200, 150, 250)  # a minute of video in three scenes
TIMELINE_KEYS = ("timeline", "segments", "timeline_stats")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory):
    with TestService(model_dir, tmp_path_factory.mktemp("timeline_service"), one_engine) as running:
        yield running


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """One minute at 10 fps: three scenes of different backgrounds and squares."""
    frames = np.concatenate([moving_square_frames(count, 96, 72, seed=seed)
                             for seed, count in enumerate(SEGMENT_FRAMES)])
    return encode_video(tmp_path_factory.mktemp("timeline_videos") / "long.mp4",
                        num_frames=len(frames), width=96, height=72, fps=FPS, frames=frames)


def _timeline(answer: dict[str, str]) -> dict[str, object]:
    return {key: json.loads(answer[key]) for key in TIMELINE_KEYS}


def _timeline_request(video: Path, **options: str) -> tuple[list[str], list[str]]:
    keys = ["video", "mode", *options]
    return keys, [b64(video), "timeline", *options.values()]


def test_a_long_video_is_answered_with_windows_and_segments(service, long_video) -> None:
    answer = fields(post(service, *_timeline_request(long_video, min_score="0", topk="2")))
    timeline = _timeline(answer)
    duration = sum(SEGMENT_FRAMES) / FPS
    expected = count_windows(sum(SEGMENT_FRAMES), FPS, TimelineOptions())
    assert timeline["timeline_stats"]["windows"] == len(timeline["timeline"]) == expected
    assert timeline["timeline_stats"]["duration_s"] == duration
    assert 0 < timeline["timeline_stats"]["frames_decoded"] <= expected * 8
    windows = timeline["timeline"]
    assert [(w["start_s"], w["end_s"]) for w in windows[:3]] == [(0, 10), (5, 15), (10, 20)]
    assert windows[-1]["end_s"] == duration
    assert all(len(w["topk"]) == 2 and w["topk"][0]["label"] in TINY_LABELS for w in windows)
    # min_score 0: every window is in a segment, so the segments tile the video.
    segments = timeline["segments"]
    assert segments[0]["start_s"] == 0 and segments[-1]["end_s"] == duration
    assert all(a["end_s"] == b["start_s"] and a["class_id"] != b["class_id"]
               for a, b in zip(segments, segments[1:]))
    assert set(json.loads(answer["timing_ms"])) == {"decode", "sample", "normalize", "infer"}


def test_the_service_and_the_offline_predictor_answer_the_same_timeline(service, model_dir,
                                                                         long_video) -> None:
    served = _timeline(fields(post(service, *_timeline_request(
        long_video, window_s="4", stride_s="3", min_score="0.3"))))
    offline = OfflinePredictor.from_service_config(model_dir, service.config).timeline(
        long_video, window_s=4, stride_s=3, min_score=0.3).to_json()
    assert served["timeline_stats"] == offline["timeline_stats"]
    assert [(w["start_s"], w["end_s"], [c["class_id"] for c in w["topk"]])
            for w in served["timeline"]] == [
        (w["start_s"], w["end_s"], [c["class_id"] for c in w["topk"]])
        for w in offline["timeline"]]
    np.testing.assert_allclose([c["score"] for w in served["timeline"] for c in w["topk"]],
                               [c["score"] for w in offline["timeline"] for c in w["topk"]],
                               atol=1.5e-6)


def test_grpc_answers_the_same_timeline_as_rest(service, long_video) -> None:
    keys, values = _timeline_request(long_video, window_s="6")
    rest = _timeline(fields(post(service, keys, values)))
    response = grpc_call(service, keys, values)
    assert response.err_no == 0, response.err_msg
    assert _timeline(dict(zip(response.key, response.value))) == rest


def _twenty_minutes_of_frames(**options: str) -> dict:
    """20 minutes of raw frames at 1 fps (tiny frames keep the upload small)."""
    frames = raw_frames(num_frames=1200, height=12, width=16)
    keys = ["frames", "frames_shape", "mode", "frames_fps", *options]
    values = [base64.b64encode(frames.tobytes()).decode("ascii"), str(frames.shape), "timeline",
              "1", *options.values()]
    return keys, values


def test_twenty_minutes_are_answered_within_max_windows_and_refused_past_it(service) -> None:
    answer = fields(post(service, *_twenty_minutes_of_frames()))
    stats = json.loads(answer["timeline_stats"])
    assert stats["windows"] == 239 and stats["duration_s"] == 1200
    assert stats["frames_decoded"] <= 1200
    refused = post(service, *_twenty_minutes_of_frames(stride_s="1"))
    assert refused["err_no"] == 53
    assert "1191 windows" in refused["err_msg"]
    assert "request_limits.max_windows" in refused["err_msg"]


@pytest.mark.parametrize("keys,values,message", [
    (["window_s"], ["5"], "window_s: only with mode 'timeline'"),
    (["mode", "frames_fps"], ["timeline", "30"], "frames_fps: only with 'frames'"),
    (["mode", "window_s", "stride_s"], ["timeline", "4", "5"], "stride_s: must be > 0 and at most"),
    (["mode", "min_score"], ["timeline", "nan"], "min_score: must be a number"),
])
def test_bad_timeline_options_are_refused_naming_the_key(service, long_video, keys, values,
                                                        message) -> None:
    answer = post(service, ["video", *keys], [b64(long_video), *values])
    assert answer["err_no"] == 51
    assert message in answer["err_msg"]


def _post_any_status(service, body: dict) -> dict:
    """The JSON answer of a REST request in Paddle Serving's form, whatever its HTTP status."""
    return requests.post(prediction_url(service), json=body, timeout=HTTP_TIMEOUT_S).json()


def test_a_second_timeline_at_once_is_told_to_retry_and_single_clips_keep_a_thread(
        service, long_video) -> None:
    """Two timelines sent together: one runs, the other is answered 503 (timeline.max_concurrent
    is 1) at once; a clip sent meanwhile is answered, on the sample thread the timeline left."""
    keys, values = _twenty_minutes_of_frames(window_s="2", stride_s="2")
    body = {"key": keys, "value": values}
    start = threading.Barrier(2)

    def send() -> dict:
        start.wait()
        return _post_any_status(service, body)

    with ThreadPoolExecutor(2) as pool:
        timelines = [pool.submit(send) for _ in range(2)]
        refused = next(as_completed(timelines)).result()
        assert refused["err_no"] == 503, refused
        assert "timeline.max_concurrent" in refused["err_msg"]
        clip = _post_any_status(service, {"key": ["video"], "value": [b64(long_video)]})
        assert clip["err_no"] == 0, clip
        ran = [future.result() for future in timelines if future.result() is not refused]
    assert [answer["err_no"] for answer in ran] == [0]


def test_timelines_may_not_take_every_sample_thread(model_dir, tmp_path) -> None:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["timeline"]["max_concurrent"] = config["op"]["sample"]["concurrency"]
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"timeline\.max_concurrent \(2\) must be below "
                                          r"op\.sample\.concurrency \(2\)"):
        load_service_config(path, http_port=None, rpc_port=None, meta=load_meta(model_dir))
