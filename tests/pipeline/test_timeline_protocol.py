"""The timeline request options and answer keys (serving.pipeline.protocol), without a service."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from serving.core.errors import InvalidInputError
from serving.core.metadata import InferenceSpec, ModelMeta
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.timeline import (
    RankedClass,
    Segment,
    TimelineOptions,
    TimelineResult,
    TimelineStats,
    WindowResult,
)
from serving.pipeline.protocol import ClassifyRequest, parse_request, timeline_response
from tests.serving_helpers import TINY_LABELS, TINY_PREPROCESS

VIDEO = base64.b64encode(b"not decoded by the parser").decode("ascii")


def _parse(**fields: str) -> ClassifyRequest:
    request = parse_request(fields, num_classes=len(TINY_LABELS), default_mode="uniform",
                            limits=DecodeLimits())
    assert isinstance(request, ClassifyRequest)
    return request


def test_timeline_defaults_and_options() -> None:
    assert _parse(video=VIDEO, mode="timeline").timeline == TimelineOptions()
    request = _parse(video=VIDEO, mode="timeline", window_s="4.5", stride_s="1", min_score="0")
    assert request.timeline == TimelineOptions(window_s=4.5, stride_s=1.0, min_score=0.0)
    assert _parse(video=VIDEO).timeline is None


def test_raw_frames_take_their_frame_rate_from_frames_fps() -> None:
    frames = np.zeros((4, 2, 2, 3), np.uint8)
    fields = {"frames": base64.b64encode(frames.tobytes()).decode("ascii"),
              "frames_shape": str(frames.shape), "mode": "timeline"}
    assert _parse(**fields).frames_fps == 25.0
    assert _parse(**fields, frames_fps="7.5").frames_fps == 7.5
    with pytest.raises(InvalidInputError, match="frames_fps: must be > 0"):
        _parse(**fields, frames_fps="0")


def test_smoothing_is_on_unless_switched_off() -> None:
    assert _parse(video=VIDEO, mode="timeline").timeline.smooth
    for text, smooth in (("0", False), ("false", False), ("1", True), ("TRUE", True)):
        assert _parse(video=VIDEO, mode="timeline", smooth=text).timeline.smooth is smooth
    with pytest.raises(InvalidInputError, match="smooth: must be 1 or 0"):
        _parse(video=VIDEO, mode="timeline", smooth="yes")
    with pytest.raises(InvalidInputError, match="smooth: only with mode 'timeline'"):
        _parse(video=VIDEO, smooth="0")


@pytest.mark.parametrize("value", ["-1", "1e3", "inf", "ten"])
def test_option_values_must_be_plain_numbers(value: str) -> None:
    with pytest.raises(InvalidInputError, match="window_s: must be a number"):
        _parse(video=VIDEO, mode="timeline", window_s=value)


def test_the_answer_carries_the_timeline_as_json_strings() -> None:
    ranked = (RankedClass(2, "jumping", 0.75), RankedClass(0, "waving", 0.25))
    result = TimelineResult(
        windows=(WindowResult(0.0, 10.0, ranked), WindowResult(5.0, 12.0, ranked)),
        segments=(Segment(0.0, 12.0, 2, "jumping", 0.75),),
        stats=TimelineStats(windows=2, frames_decoded=14, fps=25.0, duration_s=12.0,
                            window_s=10.0, stride_s=5.0))
    meta = ModelMeta(
        name="tiny", version="1", architecture="pptsm_v2_lcnet", labels=TINY_LABELS,
        preprocess=TINY_PREPROCESS,
        inference=InferenceSpec(format="pdmodel", model_file="m.pdmodel", params_file="m.pdiparams",
                                input_name="x", input_shape=(-1, 8, 3, 56, 56), output_name="out",
                                output_shape=(-1, len(TINY_LABELS))))
    answer = timeline_response(meta, result, {"decode": 1.0, "infer": 2.0})
    assert set(answer) == {"timeline", "segments", "timeline_stats", "model", "timing_ms"}
    assert json.loads(answer["segments"]) == [
        {"start_s": 0.0, "end_s": 12.0, "class_id": 2, "label": "jumping", "score": 0.75}]
    assert json.loads(answer["timeline"])[1] == {
        "start_s": 5.0, "end_s": 12.0,
        "topk": [{"class_id": 2, "label": "jumping", "score": 0.75},
                 {"class_id": 0, "label": "waving", "score": 0.25}]}
    assert json.loads(answer["timeline_stats"])["frames_decoded"] == 14
