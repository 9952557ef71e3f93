"""The bad-input corpus: every kind of malformed, hostile or odd request a public endpoint sees,
generated here, sent to the real service (HTTP, and the key ones over gRPC too), each answered
with a specific err_no and err_msg, each followed by a normal request that must still succeed.

The service runs with small limits (1 MiB uploads, 640x480 frames, 600 frames, 60 s) so the
limit cases stay cheap. The end of the module checks what must hold after all of it: the decode
temp folder is empty and the request log has one line per request and no payload bytes.
"""
from __future__ import annotations

import base64
import http.server
import io
import json
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import requests

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
import grpc  # noqa: E402
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402


from tests.hostile_corpus import grpc_tensors_flood, send_raw_grpc  # noqa: E402
from tests.process_watch import resident_bytes  # noqa: E402
from tests.service_client import (  # noqa: E402
    TestService,
    b64,
    fields,
    grpc_call,
    post,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS, raw_frames  # noqa: E402
from tests.video_corpus import (  # noqa: E402
    corrupted_middle,
    declare_frame_size,
    encode_audio_only,
    encode_video,
    jpeg_image,
    truncated,
)

MAX_BYTES = 1024 * 1024
LIMITS = {"max_bytes": MAX_BYTES, "max_pixels_per_frame": 640 * 480, "max_frames": 600,
          "max_duration_s": 60}
PADDING_BYTES = 100 * 1000 * 1000
# Resident memory a refused flood may add to the service (parsed, it would add ~240 MB).
FLOOD_RSS_BOUND_KIB = 40 * 1024
# The largest request: the base64 of a MAX_BYTES upload (4 * ceil(MAX_BYTES / 3)) + 64 KiB.
MAX_REQUEST_CHARS = 1463640


def _small_limits(config: dict) -> None:
    config["request_limits"] = dict(LIMITS)


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn):
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("bad_inputs"), _small_limits) as process:
        yield process


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, bytes]:
    """Every video-like payload of the corpus, by name."""
    folder = tmp_path_factory.mktemp("corpus")

    def video(name: str, **options) -> bytes:
        return encode_video(folder / name, **options).read_bytes()

    good_mpeg4 = video("good.mp4", codec="mpeg4")
    mjpeg_avi = video("mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p", num_frames=2)
    return {
        "good": video("good_h264.mp4"),
        "random bytes": np.random.RandomState(1).bytes(3000),
        "text file": ("Meeting notes\n" * 200).encode(),
        "JPEG image": jpeg_image(),
        "truncated 10%": truncated(good_mpeg4, 0.1),
        "truncated 50%": truncated(good_mpeg4, 0.5),
        "truncated 90%": truncated(good_mpeg4, 0.9),
        "truncated AVI 50%": truncated(video("clip.avi", codec="mpeg4"), 0.5),
        "corrupted header": bytes(256) + good_mpeg4[256:],
        "corrupted middle": corrupted_middle(good_mpeg4),
        "zero frames": video("zero.mp4", num_frames=0),
        "one frame": video("one.mp4", num_frames=1),
        "fewer frames than segments": video("three.mp4", num_frames=3),
        "1x1 frames": video("tiny.mkv", codec="ffv1", width=1, height=1, pix_fmt="yuv444p"),
        "odd size 33x17": video("odd.mkv", codec="ffv1", width=33, height=17, pix_fmt="yuv444p"),
        "grayscale": video("gray.mkv", codec="ffv1", pix_fmt="gray"),
        "10-bit H.264": video("ten_bit.mp4", pix_fmt="yuv420p10le"),
        "alpha channel": video("alpha.mkv", codec="ffv1", pix_fmt="yuva420p"),
        "declared 65000x65000 (bomb)": declare_frame_size(mjpeg_avi, 65000, 65000),
        "frames over the pixel limit": video("large.mp4", codec="mpeg4", width=1280,
                                             height=720, num_frames=2),
        "200 s long": video("long.mp4", codec="mpeg4", num_frames=20, fps=Fraction(1, 10)),
        "700 frames": video("many.mp4", codec="mpeg4", num_frames=700, width=16, height=16),
        "audio only": encode_audio_only(folder / "audio.mp4").read_bytes(),
        # Over the request limit in base64, within the HTTP body limit (its 64 KiB for the JSON).
        "1.12 MB upload": np.random.RandomState(2).bytes(1_120_000),
        "1.03 MiB upload": np.random.RandomState(3).bytes(MAX_BYTES + 30_000),
    }


Request = tuple[list[str], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad (or odd) request and the answer it must get: err_no 0 means a classification."""

    name: str
    build: Callable[[dict[str, bytes]], Request]
    err_no: int
    message: str = ""  # the start of err_msg
    over_grpc: bool = False


def _video(name: str, **options: str) -> Callable[[dict[str, bytes]], Request]:
    return lambda corpus: (["video", *options], [b64(corpus[name]), *options.values()])


def _fixed(keys: list[str], values: list[str]) -> Callable[[dict[str, bytes]], Request]:
    return lambda corpus: (keys, values)


def _frames(shape_text: str,
            frames: np.ndarray | None = None) -> Callable[[dict[str, bytes]], Request]:
    data = b64((frames if frames is not None else raw_frames(2, 4, 5)).tobytes())
    return _fixed(["frames", "frames_shape"], [data, shape_text])


NOT_A_CONTAINER = "video: not a decodable video container"
NO_VIDEO_STREAM = "video: the container has no video stream"
OVER_PIXEL_LIMIT = ("video: cannot read the frame size: the stream is undecodable or its frames "
                    "exceed the limit of 307200 pixels per frame (max_pixels_per_frame)")
CASES = [
    # The request envelope.
    Case("empty request", _fixed([], []), 51, "the request has no 'video'", over_grpc=True),
    Case("key without value", _fixed(["video", "topk"], ["AAAA"]), 51,
         "the request has 2 keys but 1 values", over_grpc=True),
    Case("value without key", _fixed(["video"], ["AAAA", "3"]), 51,
         "the request has 1 keys but 2 values", over_grpc=True),
    Case("unknown key", _fixed(["video", "colour"], ["AAAA", "red"]), 51,
         "unknown key 'colour'; allowed keys: video, frames", over_grpc=True),
    Case("key sent twice", _fixed(["video", "video"], ["AAAA", "AAAA"]), 51,
         "'video' is sent twice"),
    Case("ping with another key", _fixed(["ping", "video"], ["", "AAAA"]), 51,
         "ping: send it alone"),
    Case("video and frames together", _fixed(["video", "frames", "frames_shape"],
                                             ["AAAA", "AAAA", "(1, 1, 1, 3)"]), 51,
         "send either 'video' or 'frames'"),
    # The video value.
    Case("invalid base64", _fixed(["video"], ["%%% not base64 %%%"]), 51,
         "video: not valid base64", over_grpc=True),
    Case("base64 without padding", _fixed(["video"], ["QUJDRA"]), 51, "video: not valid base64"),
    Case("empty video", _fixed(["video"], [""]), 51, "video: empty value"),
    Case("random bytes", _video("random bytes"), 52, NOT_A_CONTAINER, over_grpc=True),
    Case("text file", _video("text file"), 52, NOT_A_CONTAINER),
    Case("JPEG image", _video("JPEG image"), 52, NOT_A_CONTAINER),
    Case("truncated 10%", _video("truncated 10%"), 52, NOT_A_CONTAINER, over_grpc=True),
    Case("truncated 50%", _video("truncated 50%"), 52, NOT_A_CONTAINER),
    Case("truncated 90%", _video("truncated 90%"), 52, NO_VIDEO_STREAM),
    Case("corrupted header", _video("corrupted header"), 52, NOT_A_CONTAINER),
    Case("zero frames", _video("zero frames"), 52, NO_VIDEO_STREAM),
    Case("audio only", _video("audio only"), 52, NO_VIDEO_STREAM),
    # libavcodec's max_pixels guard refuses the oversized frame while the container is opened,
    # so the size is never read back: 52, with a message that names the limit.
    Case("declared 65000x65000 (bomb)", _video("declared 65000x65000 (bomb)"), 52,
         OVER_PIXEL_LIMIT, over_grpc=True),
    Case("frames over the pixel limit", _video("frames over the pixel limit"), 52,
         OVER_PIXEL_LIMIT),
    Case("200 s long", _video("200 s long"), 53,
         "video: 200.0 s exceeds the limit of 60 s (max_duration_s)"),
    Case("700 frames", _video("700 frames"), 53,
         "video: 700 frames exceeds the limit of 600 (max_frames)"),
    Case("1.03 MiB upload", _video("1.03 MiB upload"), 53,
         f"video: {MAX_BYTES + 30_000} bytes exceeds the limit of {MAX_BYTES} (max_bytes)"),
    # Over gRPC a message this far past the limit is refused by gRPC itself (see below).
    Case("1.12 MB upload", _video("1.12 MB upload"), 53, "request: 1493336 characters of values "
         f"exceed the limit of {MAX_REQUEST_CHARS}"),
    # Odd but valid videos: answered with a classification.
    Case("truncated AVI 50%", _video("truncated AVI 50%"), 0),
    Case("corrupted middle", _video("corrupted middle"), 0),
    Case("one frame", _video("one frame"), 0),
    Case("fewer frames than segments", _video("fewer frames than segments"), 0),
    Case("1x1 frames", _video("1x1 frames"), 0),
    Case("odd size 33x17", _video("odd size 33x17"), 0),
    Case("grayscale", _video("grayscale"), 0),
    Case("10-bit H.264", _video("10-bit H.264"), 0),
    Case("alpha channel", _video("alpha channel"), 0),
    # Options.
    Case("topk 0", _video("good", topk="0"), 51, "topk: must be an integer from 1 to 3, got '0'",
         over_grpc=True),
    Case("topk -1", _video("good", topk="-1"), 51, "topk: must be an integer from 1 to 3"),
    Case("topk 10000", _video("good", topk="10000"), 51, "topk: must be an integer from 1 to 3"),
    Case("topk abc", _video("good", topk="abc"), 51,
         "topk: must be an integer from 1 to 3, got 'abc'"),
    Case("unknown mode", _video("good", mode="fast"), 51,
         "mode: must be one of uniform, dense, timeline, got 'fast'", over_grpc=True),
    # Raw frames (PaddleVideo's protocol).
    Case("frames without frames_shape", _fixed(["frames"], ["AAAA"]), 51,
         "'frames' and 'frames_shape' must be sent together"),
    Case("frames_shape not matching the bytes", _frames("(3, 4, 5, 3)"), 51,
         "frames: 120 bytes do not match frames_shape (3, 4, 5, 3) = 180 bytes"),
    Case("negative frames_shape", _frames("(2, -4, 5, 3)"), 51,
         "frames_shape: expected four integers"),
    Case("absurd frames_shape", _frames("(100000, 100000, 100000, 3)"), 53,
         "video: 100000 frames exceeds the limit of 600 (max_frames)"),
    Case("non-numeric frames_shape", _frames("(two, 4, 5, 3)"), 51,
         "frames_shape: expected four integers"),
    Case("Python expression in frames_shape",
         _frames("__import__('os').system('touch /tmp/pptsm-pwned')"), 51,
         "frames_shape: expected four integers", over_grpc=True),
    Case("frames with 4 channels", _frames("(2, 4, 5, 4)", raw_frames(2, 4, 5)), 51,
         "frames_shape: the last dimension must be 3"),
    Case("1x1 raw frames", _frames("(1, 1, 1, 3)", raw_frames(1, 1, 1)), 0),
    Case("odd-sized raw frames", _frames("(3, 17, 33, 3)", raw_frames(3, 17, 33)), 0),
]


def _assert_answer(err_no: int, err_msg: str, answer_fields: dict[str, str], case: Case) -> None:
    assert (err_no, err_msg[:len(case.message)]) == (case.err_no, case.message), err_msg
    assert "Traceback" not in err_msg and "File \"" not in err_msg
    assert answer_fields.get("request_id", "").isdigit()
    if case.err_no == 0:
        assert answer_fields["label"] in TINY_LABELS


def _assert_still_serving(service: TestService, corpus: dict[str, bytes]) -> None:
    assert fields(post(service, ["video"], [b64(corpus["good"])]))["label"] in TINY_LABELS


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_over_http(service, corpus, case: Case) -> None:
    keys, values = case.build(corpus)
    answer = post(service, keys, values)
    _assert_answer(answer["err_no"], answer["err_msg"],
                   dict(zip(answer.get("key", []), answer.get("value", []))), case)
    _assert_still_serving(service, corpus)


GRPC_CASES = [case for case in CASES if case.over_grpc]


@pytest.mark.parametrize("case", GRPC_CASES, ids=[case.name for case in GRPC_CASES])
def test_bad_input_over_grpc(service, corpus, case: Case) -> None:
    keys, values = case.build(corpus)
    answer = grpc_call(service, keys, values)
    _assert_answer(answer.err_no, answer.err_msg, dict(zip(answer.key, answer.value)), case)
    _assert_still_serving(service, corpus)


def test_every_corpus_file_is_sent_by_a_case(corpus) -> None:
    assert len(CASES) >= 30
    sent = {value for case in CASES for value in case.build(corpus)[1]}
    assert [name for name, data in corpus.items() if b64(data) not in sent] == []


class _CreatesFileWhenUnpickled:
    """Unpickling this object opens `path` for writing: proof of code execution if it exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_pickled_tensors_are_refused_unopened(service, corpus, tmp_path) -> None:
    """Paddle Serving's stock request op np.load()s BYTES tensors with allow_pickle=True."""
    marker = tmp_path / "unpickled"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_CreatesFileWhenUnpickled(marker)], dtype=object), allow_pickle=True)
    tensor = pipeline_service_pb2.Tensor(name="video", elem_type=13, byte_data=buffer.getvalue(),
                                         shape=[1])
    answer = grpc_call(service, [], [], tensors=[tensor])
    assert answer.err_no == 51
    assert answer.err_msg.startswith("tensors: this service does not accept Paddle Serving tensors")
    assert not marker.exists()
    _assert_still_serving(service, corpus)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Records every path fetched from it: any hit means the service fetched a URL."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        """Silent: the test reads `hits`."""


@pytest.fixture()
def url_trap():
    """A loopback HTTP server that records requests; yields its base URL."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RecordingHandler.hits.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_playlists_and_file_lists_fetch_nothing(service, corpus, url_trap, tmp_path) -> None:
    """Requests carry video bytes only. FFmpeg's HLS and concat demuxers would open the URLs and
    files such a payload names; the service answers 52 without fetching any of them."""
    local_file = tmp_path / "local.mp4"
    local_file.write_bytes(corpus["good"])
    payloads = [
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{url_trap}/segment.ts\n#EXT-X-ENDLIST\n",
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{local_file}\n#EXT-X-ENDLIST\n",
        f"ffconcat version 1.0\nfile '{url_trap}/part.mp4'\n",
        f"ffconcat version 1.0\nfile '{local_file}'\n",
        f"{url_trap}/video.mp4",
    ]
    for payload in payloads:
        answer = post(service, ["video"], [b64(payload.encode())])
        assert (answer["err_no"], answer["err_msg"]) == (52, NOT_A_CONTAINER), payload
    assert _RecordingHandler.hits == []
    _assert_still_serving(service, corpus)


def test_100_mb_of_padding_is_refused_before_parsing(service, corpus) -> None:
    """Over HTTP the body is refused unread (413); over gRPC the message is past
    max_receive_message_length, which is tied to the request limits: gRPC refuses it unread."""
    keys, values = ["video", "padding"], [b64(corpus["good"]), "x" * PADDING_BYTES]
    response = requests.post(service.url, json={"key": keys, "value": values}, timeout=60)
    assert response.status_code == 413
    answer = response.json()
    assert answer["err_no"] == 53 and "bytes exceed the limit of" in answer["err_msg"]
    with pytest.raises(grpc.RpcError) as info:
        grpc_call(service, keys, values)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_still_serving(service, corpus)
    _assert_grpc_still_serving(service, corpus)


def test_grpc_message_just_over_the_values_limit_gets_a_clean_answer(service, corpus) -> None:
    """Between the values' limit and max_receive_message_length (the limit plus the envelope's
    allowance) the envelope check answers, as over HTTP."""
    values = ["x" * (MAX_REQUEST_CHARS + 1)]
    reply = grpc_call(service, ["video"], values)
    assert reply.err_no == 53
    assert reply.err_msg.startswith(f"request: {MAX_REQUEST_CHARS + 1} characters of values "
                                    f"exceed the limit of {MAX_REQUEST_CHARS}")
    _assert_grpc_still_serving(service, corpus)


def _grpc_raw(service: TestService, data: bytes) -> pipeline_service_pb2.Response:
    """Sends `data` as the serialized Request, byte for byte (for messages that protobuf would
    not build, or would build slowly)."""
    return pipeline_service_pb2.Response.FromString(
        send_raw_grpc(f"127.0.0.1:{service.rpc_port}", data, timeout=120))


def _assert_grpc_still_serving(service: TestService, corpus: dict[str, bytes]) -> None:
    reply = grpc_call(service, ["video"], [b64(corpus["good"])])
    assert reply.err_no == 0, reply.err_msg
    assert dict(zip(reply.key, reply.value))["label"] in TINY_LABELS


def test_grpc_tensors_flood_is_refused_unparsed(service, corpus) -> None:
    """700,000 empty `tensors` entries (1.4 MB, within the message limit) would be 700,000
    protobuf objects (about 350 bytes each) if parsed: the deserializer refuses the message at
    its first entry, and the service's memory does not grow with it."""
    flood = grpc_tensors_flood(700_000)
    before = resident_bytes(service.process.pid) // 1024
    for _ in range(3):
        reply = _grpc_raw(service, flood)
        assert reply.err_no == 51 and reply.err_msg.startswith(
            "tensors: this service does not accept Paddle Serving tensors")
        assert dict(zip(reply.key, reply.value))["request_id"].isdigit()
    assert resident_bytes(service.process.pid) // 1024 - before < FLOOD_RSS_BOUND_KIB
    # 10^6 entries (2 MB) are past max_receive_message_length: refused by gRPC, unread.
    with pytest.raises(grpc.RpcError) as info:
        _grpc_raw(service, grpc_tensors_flood(1_000_000))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _assert_grpc_still_serving(service, corpus)


def test_grpc_key_flood_is_refused_unparsed(service, corpus) -> None:
    reply = _grpc_raw(service, b"\x0a\x00" * 700_000)
    assert (reply.err_no, reply.err_msg) == (51, "key: more than 16 entries; the protocol has "
                                                 "at most 7 keys")
    _assert_grpc_still_serving(service, corpus)


def test_grpc_long_names_are_refused_and_never_logged(service, corpus) -> None:
    """Paddle Serving's servicer logs `name` in full, twice per request. A 100 MB name is past
    the message limit (gRPC refuses it); a 1 MB one is refused by the deserializer; neither
    reaches a log."""
    with pytest.raises(grpc.RpcError) as info:
        huge = pipeline_service_pb2.Request(name="N" * 100_000_000, key=["ping"], value=[""])
        _grpc_raw(service, huge.SerializeToString())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    reply = _grpc_raw(service, pipeline_service_pb2.Request(name="N" * 1_000_000, key=["ping"],
                                                            value=[""]).SerializeToString())
    assert (reply.err_no, reply.err_msg) == (51, "name: 1000000 bytes exceed the limit of 128; "
                                                 "send the service's name or leave it empty")
    other = pipeline_service_pb2.Request(name="other-service", key=["ping"], value=[""])
    reply = _grpc_raw(service, other.SerializeToString())
    assert reply.err_no == 51 and reply.err_msg.startswith("name: this service is 'pptsm'")
    _assert_grpc_still_serving(service, corpus)
    logs = [service.log_path, service.request_log,
            *(service.work / "PipelineServingLogs").glob("pipeline.*")]
    assert all("N" * 200 not in path.read_text(errors="replace") for path in logs)


def test_profile_requests_return_nothing_on_both_transports(service, corpus) -> None:
    """Paddle Serving's `pipeline.profile` key would return the DAG's profile (other clients'
    timings, the process id); the service accepts the key and returns nothing for it."""
    keys, values = ["video", "pipeline.profile"], [b64(corpus["good"]), "1"]
    answer = fields(post(service, keys, values))
    reply = grpc_call(service, keys, values)
    assert reply.err_no == 0, reply.err_msg
    for returned in (answer, dict(zip(reply.key, reply.value))):
        assert "pipeline.profile" not in returned and returned["label"] in TINY_LABELS
        assert not any("#DAG" in value or "call_" in value for value in returned.values())
    _assert_grpc_still_serving(service, corpus)


def test_small_padding_is_an_unknown_key(service, corpus) -> None:
    answer = post(service, ["video", "padding"], [b64(corpus["good"]), "x" * 1000])
    assert (answer["err_no"], answer["err_msg"].split(";")[0]) == (51, "unknown key 'padding'")


def test_huge_key_name_is_quoted_cut_short(service, corpus) -> None:
    answer = post(service, ["video", "k" * 100_000], [b64(corpus["good"]), "1"])
    assert answer["err_no"] == 51
    assert answer["err_msg"].startswith("unknown key '" + "k" * 40 + "...'")
    assert len(answer["err_msg"]) < 200


@pytest.mark.parametrize("body, message", [
    ("not json", "request body: not valid JSON"),
    ('{"key": ["video"], "value": [12]}', "request body: 'value' must be a list of strings"),
    ('{"key": "video", "value": "AAAA"}', "request body: 'key' must be a list of strings"),
    ('["video", "AAAA"]', "request body: a JSON object with 'key' and 'value' lists expected"),
    ('{"key": ["ping"], "value": [""], "logid": 1.5}', "request body: 'logid' must be a 64-bit"),
    (b"\xff\xfe\x00{", "request body:"),
])
def test_bodies_that_are_not_the_json_form_get_http_400(service, corpus, body, message) -> None:
    """The REST front end parses the JSON before the pipeline sees anything; it answers 400
    with err_no 51 and a message naming what is wrong."""
    response = requests.post(service.url, data=body, timeout=30)
    assert response.status_code == 400
    answer = response.json()
    assert answer["err_no"] == 51 and answer["err_msg"].startswith(message)
    _assert_still_serving(service, corpus)


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/pptsm/prediction", 405, "GET is not supported; POST"),
    ("POST", "/other/prediction", 404, "no such endpoint '/other/prediction'"),
    ("POST", "/pptsm", 404, "no such endpoint '/pptsm'"),
    ("POST", "/", 405, "POST is not supported; GET /"),
])
def test_wrong_method_or_path_is_refused_with_a_json_error(service, corpus, method, path, status,
                                                           message) -> None:
    url = service.url.replace("/pptsm/prediction", path)
    response = requests.request(method, url, json={"key": ["ping"], "value": [""]}, timeout=30)
    assert response.status_code == status
    assert response.json()["err_msg"].startswith(message)
    _assert_still_serving(service, corpus)


def test_body_over_the_limit_is_refused_unread(service, corpus) -> None:
    """A Content-Length past the request limits gets 413 at once: the body is never read (the
    client is still sending it when the answer comes back)."""
    with socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock:
        sock.sendall(b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 99999999999\r\n\r\n{")
        answer = sock.makefile("rb").read().decode()
    status_line, _, rest = answer.partition("\r\n")
    assert status_line.split()[1] == "413"
    body = json.loads(rest.split("\r\n\r\n", 1)[1])
    assert body["err_no"] == 53 and "exceed the limit" in body["err_msg"]
    _assert_still_serving(service, corpus)


def test_chunked_body_is_refused_with_411(service, corpus) -> None:
    chunks = iter([b'{"key": ["ping"], ', b'"value": [""]}'])
    response = requests.post(service.url, data=chunks, timeout=30)  # a generator is sent chunked
    assert response.status_code == 411
    assert "send Content-Length" in response.json()["err_msg"]
    _assert_still_serving(service, corpus)


@pytest.mark.parametrize("body", ["", "{}", '{"video": "AAAA"}'])
def test_bodies_without_key_and_value_are_empty_requests(service, body: str) -> None:
    response = requests.post(service.url, data=body, timeout=30)
    answer = response.json()
    assert (response.status_code, answer["err_no"]) == (200, 51)
    assert answer["err_msg"].startswith("the request has no 'video'")


def test_decode_temp_folder_is_empty_after_all_requests(service) -> None:
    """Runs after the corpus (tests run in file order): no upload outlives its request."""
    assert list(service.decode_temp_dir.iterdir()) == []


def test_request_log_has_one_line_per_request_and_no_payload(service, corpus) -> None:
    keys, values = _video("good", topk="2")(corpus)
    answer = post(service, keys, values, logid=424242)
    assert fields(answer)["request_id"] == "424242"
    log_text = service.request_log.read_text()
    lines = service.request_log_lines()
    (mine,) = [line for line in lines if line["request_id"] == "424242"]
    assert mine["outcome"] == "ok" and mine["keys"] == ["video", "topk"]
    assert mine["options"] == {"topk": "2"} and mine["label"] in TINY_LABELS
    assert set(mine["timing_ms"]) == {"decode", "sample", "normalize", "infer"}
    outcomes = {line["outcome"] for line in lines}
    assert {"ok", "invalid_input", "decode_error", "limit_exceeded"} <= outcomes
    assert len({line["request_id"] for line in lines}) == len(lines)
    video_b64 = b64(corpus["good"])
    assert video_b64[100:160] not in log_text and "x" * 100 not in log_text
    assert base64.b64encode(corpus["random bytes"][:300]).decode()[:60] not in log_text
    assert max(len(line) for line in log_text.splitlines()) < 2000
    assert all(json.loads(line) for line in log_text.splitlines())


@pytest.mark.parametrize("sent", [
    b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"{" * 100,
    b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Le",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain HTTP port
    "whole request",  # the connection is reset while the service works on it
], ids=["body cut short", "headers cut short", "TLS hello", "reset while answered"])
def test_a_client_that_hangs_up_midway_costs_only_its_connection(service, corpus, sent) -> None:
    if sent == "whole request":
        body = json.dumps({"key": ["video"], "value": [b64(corpus["good"])]}).encode()
        sent = (b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % len(body) + body)
    with socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock:
        sock.sendall(sent)
        # Linger 0: close() resets the connection instead of a graceful end.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _assert_still_serving(service, corpus)
    assert "Traceback" not in service.log_tail(200)


def test_paddle_servings_routine_lines_stay_off_stderr(service) -> None:
    """After the whole corpus: Paddle Serving's per-request lines are in its rotating
    pipeline.log, not on stderr (the service log), which keeps warnings and errors."""
    pipeline_log = service.work / "PipelineServingLogs" / "pipeline.log"
    assert "skip process stage" in pipeline_log.read_text()
    stderr = service.log_path.read_text(errors="replace")
    assert "skip process stage" not in stderr and "return product error" not in stderr


def _opencv_decoding(config: dict) -> None:
    _small_limits(config)
    config["decode"]["backend"] = "opencv"  # writes each upload to decode.temp_dir


@pytest.fixture(scope="module")
def opencv_service(tmp_path_factory, calibrate_bn):
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("internal_errors"),
                     _opencv_decoding) as process:
        yield process


INTERNAL_ERROR = re.compile(r"internal error in the (\w+) stage \(request (\d+)\); reported in "
                            r"the server log")


def test_an_internal_error_tells_the_client_the_stage_and_request_id_only(opencv_service,
                                                                         corpus) -> None:
    """The decode temp folder disappears under the running service: OpenCV's decoder cannot
    write the upload, a real failure inside the server. The client learns the stage and its
    request id; the exception (with the temp file's path) goes to the server log under that id."""
    service = opencv_service
    temp_dir = service.decode_temp_dir
    temp_dir.rmdir()
    try:
        answer = post(service, ["video"], [b64(corpus["good"])], logid=515151)
        reply = grpc_call(service, ["video"], [b64(corpus["good"])], logid=525252)
    finally:
        temp_dir.mkdir()
    for err_no, err_msg, request_id in ((answer["err_no"], answer["err_msg"], "515151"),
                                        (reply.err_no, reply.err_msg, "525252")):
        match = INTERNAL_ERROR.fullmatch(err_msg)
        assert err_no == 54 and match is not None, err_msg
        assert match.group(2) == request_id
        assert str(temp_dir) not in err_msg and "Errno" not in err_msg
    log = service.log_tail(400)
    assert "515151" in log and "525252" in log and str(temp_dir) in log
    assert fields(post(service, ["video"], [b64(corpus["good"])]))["label"] in TINY_LABELS
