"""Request validation and response building: every bad field gets a message that names it."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import InvalidInputError, LimitExceededError  # noqa: E402
from serving.pipeline.grpc_guard import (  # noqa: E402
    MAX_ENTRIES,
    MAX_NAME_BYTES,
    RefusedRequest,
    deserialize_request,
    scan,
)
from serving.core.metadata import InferenceSpec, ModelMeta, PreprocessSpec  # noqa: E402
from serving.core.preprocess.decode_limits import DecodeLimits  # noqa: E402
from serving.core.preprocess.raw_frames import RawFrames
from serving.pipeline.protocol import (  # noqa: E402
    OPTIONS_ALLOWANCE_BYTES,
    ClassifyRequest,
    PingRequest,
    check_envelope,
    classification_response,
    max_request_bytes,
    parse_frames_shape,
    parse_request,
    ping_response,
)

LIMITS = DecodeLimits(max_bytes=10_000, max_pixels_per_frame=40 * 40, max_frames=20,
                      max_duration_s=60)
LABELS = ("run", "jump", "swim", "walk", "sit", "stand", "wave")


def _parse(fields: dict, num_classes: int = len(LABELS), default_mode: str = "uniform"):
    return parse_request(fields, num_classes=num_classes, default_mode=default_mode, limits=LIMITS)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _frames(count: int = 3, height: int = 4, width: int = 5) -> np.ndarray:
    return np.arange(count * height * width * 3, dtype=np.uint8).reshape(count, height, width, 3)


def _meta() -> ModelMeta:
    return ModelMeta(
        name="demo", version="7", architecture="pptsm_v2_lcnet", labels=LABELS,
        preprocess=PreprocessSpec(),
        inference=InferenceSpec(format="pdmodel", model_file="m.pdmodel", params_file="m.pdiparams",
                                input_name="data_batch_0", input_shape=(-1, 8, 3, 224, 224),
                                output_name="out", output_shape=(-1, len(LABELS))))


def test_video_request_with_defaults() -> None:
    request = _parse({"video": _b64(b"\x00\x01video bytes")})
    assert request == ClassifyRequest(topk=5, mode="uniform", video=b"\x00\x01video bytes")


def test_base64_with_line_breaks_is_accepted() -> None:
    text = base64.encodebytes(b"x" * 200).decode()  # wrapped at 76 characters
    assert "\n" in text
    assert _parse({"video": text}).video == b"x" * 200


def test_options_are_parsed() -> None:
    request = _parse({"video": _b64(b"v"), "topk": "7", "mode": "dense"})
    assert (request.topk, request.mode) == (7, "dense")


def test_default_topk_never_exceeds_class_count_and_mode_follows_model() -> None:
    request = _parse({"video": _b64(b"v")}, num_classes=3, default_mode="dense")
    assert (request.topk, request.mode) == (3, "dense")


def test_ping_is_answered_alone() -> None:
    assert _parse({"ping": ""}) == PingRequest()
    with pytest.raises(InvalidInputError, match="ping: send it alone"):
        _parse({"ping": "", "video": _b64(b"v")})


def test_serving_profile_key_is_tolerated() -> None:
    assert _parse({"ping": "", "pipeline.profile": "1"}) == PingRequest()


@pytest.mark.parametrize("fields, message", [
    ({"video": "not base64 at all!"}, "video: not valid base64"),
    ({"video": "QUJDRA"}, "video: not valid base64"),  # missing padding
    ({"video": "  \n"}, "video: empty value"),
    ({"video": ""}, "video: empty value"),
    ({"video": _b64(b"v"), "topk": "0"}, "topk: must be an integer from 1 to 7, got '0'"),
    ({"video": _b64(b"v"), "topk": "8"}, "topk: must be an integer from 1 to 7"),
    ({"video": _b64(b"v"), "topk": "2.5"}, "topk: must be an integer"),
    ({"video": _b64(b"v"), "topk": "-1"}, "topk: must be an integer"),
    ({"video": _b64(b"v"), "mode": "random"}, "mode: must be one of uniform, dense"),
    ({"video": _b64(b"v"), "clip": "x"}, "unknown key 'clip'; allowed keys: video, frames"),
    ({"video": b"bytes", "topk": b"1"}, "topk: value must be a string"),
    ({"topk": "1"}, "the request has no 'video'"),
    ({}, "the request has no 'video'"),
    ({"video": _b64(b"v"), "frames": _b64(b"f"), "frames_shape": "(1, 1, 1, 3)"},
     "either 'video' or 'frames'"),
    ({"frames": _b64(b"abc")}, "'frames' and 'frames_shape' must be sent together"),
    ({"frames_shape": "(1, 1, 1, 3)"}, "'frames' and 'frames_shape' must be sent together"),
])
def test_invalid_requests_name_the_problem(fields: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)) as info:
        _parse(fields)
    assert info.value.code == InvalidInputError.CODE


def test_oversized_upload_is_refused_before_decoding() -> None:
    with pytest.raises(LimitExceededError, match="max_bytes") as info:
        _parse({"video": "A" * 20_000})  # valid alphabet, never decoded
    assert info.value.code == LimitExceededError.CODE


def test_frames_request_round_trip() -> None:
    frames = _frames()
    request = _parse({"frames": _b64(frames.tobytes()), "frames_shape": str(frames.shape)})
    assert request.video is None
    np.testing.assert_array_equal(request.frames, frames)


@pytest.mark.parametrize("text, shape", [
    ("(8, 224, 224, 3)", (8, 224, 224, 3)),
    ("[2,4,5,3]", (2, 4, 5, 3)),
    (" ( 1 , 2 , 3 , 3 , ) ", (1, 2, 3, 3)),
])
def test_frames_shape_accepts_tuple_and_list_spellings(text: str, shape: tuple) -> None:
    assert parse_frames_shape(text) == shape


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('touch /tmp/pwned')", "expected four integers"),
    ("(2*4, 4, 5, 3)", "expected four integers"),
    ("(8, 224, 224)", "expected four integers"),
    ("(8, -224, 224, 3)", "expected four integers"),
    ("(8, 224, 224, 4)", "last dimension must be 3"),
    ("(0, 224, 224, 3)", "T, H and W must be >= 1"),
])
def test_frames_shape_is_parsed_strictly_never_evaluated(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_frames_shape(text)


def test_frames_bytes_must_match_the_shape() -> None:
    frames = _frames()
    with pytest.raises(InvalidInputError, match=r"frames: 180 bytes do not match frames_shape "
                                                r"\(4, 4, 5, 3\) = 240 bytes"):
        _parse({"frames": _b64(frames.tobytes()), "frames_shape": "(4, 4, 5, 3)"})


@pytest.mark.parametrize("shape, limit", [
    ("(21, 4, 5, 3)", "max_frames"),
    ("(1, 41, 40, 3)", "max_pixels_per_frame"),
    ("(20, 40, 40, 3)", "max_bytes"),  # 96 000 bytes
])
def test_frames_limits_are_checked_from_the_declared_shape(shape: str, limit: str) -> None:
    with pytest.raises(LimitExceededError, match=limit):
        _parse({"frames": "AAAA", "frames_shape": shape})


def test_raw_frames_read_like_a_video_source() -> None:
    frames = _frames(count=4)
    with RawFrames(frames) as source:
        assert source.num_frames == 4
        np.testing.assert_array_equal(source.read([3, 0, 0]), frames[[3, 0, 0]])


def test_classification_response_is_strings_with_json_fields() -> None:
    response = classification_response(_meta(), [(2, 0.8123456789), (0, 0.1)],
                                       {"decode": 1.234, "infer": 20.0})
    assert all(isinstance(value, str) for value in response.values())
    assert (response["label"], response["class_id"], response["score"]) == ("swim", "2", "0.812346")
    assert json.loads(response["topk"]) == [
        {"class_id": 2, "label": "swim", "score": 0.812346},
        {"class_id": 0, "label": "run", "score": 0.1}]
    assert json.loads(response["model"]) == {"name": "demo", "version": "7", "num_classes": 7}
    assert json.loads(response["timing_ms"]) == {"decode": 1.23, "infer": 20.0}


def test_ping_response_names_the_model() -> None:
    assert json.loads(ping_response(_meta())["model"]) == {
        "name": "demo", "version": "7", "num_classes": 7}


@pytest.mark.parametrize("keys, values, tensors, message", [
    (["video"], ["a", "b"], 0, "the request has 1 keys but 2 values"),
    (["video", "video"], ["a", "b"], 0, "'video' is sent twice"),
    (["video"], ["a"], 1, "tensors: this service does not accept Paddle Serving tensors (1 sent)"),
])
def test_envelope_refuses_what_the_key_value_form_cannot_mean(keys, values, tensors, message) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        check_envelope(keys, values, tensor_count=tensors, limits=LIMITS)


def test_envelope_bounds_the_whole_request_by_the_upload_limit() -> None:
    limit = max_request_bytes(LIMITS)
    assert limit == 4 * ((LIMITS.max_bytes + 2) // 3) + OPTIONS_ALLOWANCE_BYTES
    check_envelope(["video", "topk"], ["A" * (limit - 1), "1"], tensor_count=0, limits=LIMITS)
    with pytest.raises(LimitExceededError, match=f"request: {limit + 1} characters of values "
                                                 f"exceed the limit of {limit}"):
        check_envelope(["video", "pad"], ["A" * limit, "x"], tensor_count=0, limits=LIMITS)


def test_decoded_size_is_checked_exactly_before_decoding() -> None:
    limits = DecodeLimits(max_bytes=10)
    assert _parse_with(limits, {"video": _b64(b"x" * 10)}).video == b"x" * 10
    with pytest.raises(LimitExceededError, match="video: 11 bytes exceeds the limit of 10"):
        _parse_with(limits, {"video": _b64(b"x" * 11)})


def _parse_with(limits: DecodeLimits, fields: dict):
    return parse_request(fields, num_classes=len(LABELS), default_mode="uniform", limits=limits)


def test_client_text_in_messages_is_cut_short() -> None:
    with pytest.raises(InvalidInputError) as info:
        _parse({"video": _b64(b"v"), "topk": "9" * 1000})
    assert info.value.message == f"topk: must be an integer from 1 to 7, got '{'9' * 40}...'"


def test_response_carries_paddlevideo_prob() -> None:
    response = classification_response(_meta(), [(1, 0.25)], {})
    assert response["prob"] == "[0.250000]"


# ---- the gRPC request deserializer (serving.pipeline.grpc_guard): what it refuses unparsed -----------


def _wire(**fields) -> bytes:
    return pipeline_service_pb2.Request(**fields).SerializeToString()


def test_an_honest_grpc_request_is_parsed_whole() -> None:
    data = _wire(key=["video", "topk"], value=["AAAA", "3"], name="pptsm", logid=7)
    request = deserialize_request(data)
    assert isinstance(request, pipeline_service_pb2.Request)
    assert (list(request.key), list(request.value), request.logid) == (["video", "topk"],
                                                                       ["AAAA", "3"], 7)


@pytest.mark.parametrize("fields, message", [
    ({"tensors": [pipeline_service_pb2.Tensor()] * 3}, "tensors: this service does not accept"),
    ({"key": [""] * (MAX_ENTRIES + 1)}, f"key: more than {MAX_ENTRIES} entries"),
    ({"value": [""] * (MAX_ENTRIES + 1)}, f"value: more than {MAX_ENTRIES} entries"),
    ({"name": "n" * (MAX_NAME_BYTES + 1)}, f"name: {MAX_NAME_BYTES + 1} bytes exceed the limit"),
])
def test_grpc_requests_the_service_cannot_mean_are_refused_unparsed(fields, message) -> None:
    refused = deserialize_request(_wire(**fields))
    assert isinstance(refused, RefusedRequest)
    assert refused.error.code == 51
    assert refused.error.message.startswith(message)


def test_a_million_tensors_cost_one_look() -> None:
    """10^6 empty `tensors` entries: 2 MB on the wire, refused at the first entry."""
    data = b"\x1a\x00" * 1_000_000
    problem = scan(data)
    assert problem is not None and problem.message.startswith("tensors:")


@pytest.mark.parametrize("data, message", [
    (b"\x0a\x05ab", "request: not a valid protobuf Request message"),  # length past the end
    (b"\x0b", "request: not a valid protobuf Request message"),  # a group (wire type 3)
    (b"\xff" * 11, "request: not a valid protobuf Request message"),  # endless varint
    (b"\x48\x01", "request: field number 9 is not part of the PipelineService Request"),
    (b"\x0a\x02\xff\xfe", "request: not a valid protobuf Request message"),  # key not UTF-8
    (b"\x30\x01" * 100, "request: more than 48 fields"),  # a scalar repeated
])
def test_malformed_grpc_messages_are_invalid_input(data: bytes, message: str) -> None:
    refused = deserialize_request(data)
    assert isinstance(refused, RefusedRequest)
    assert refused.error.code == 51 and refused.error.message.startswith(message)
