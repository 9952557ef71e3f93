"""The front door's parts on their own: the plain-upload forms (serving.pipeline.uploads,
serving.pipeline.attached): what each Content-Type is read as, options from a query string or
multipart fields, malformed multipart bodies refused with a message naming the problem; and the
readiness state (serving.pipeline.health) against a stand-in pipeline that fails, then answers,
then hangs. tests/pipeline/test_front_door.py sends the same forms to the real service."""
from __future__ import annotations

import io
import threading
import time
from http import HTTPStatus

import pytest

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import InvalidInputError, LimitExceededError  # noqa: E402
from serving.core.metadata import load_meta  # noqa: E402
from serving.core.preprocess.decode_limits import DecodeLimits  # noqa: E402
from serving.pipeline.attached import AttachedRequest, request_fields  # noqa: E402
from serving.pipeline.health import Readiness  # noqa: E402
from serving.pipeline.http_base import HttpSettings, RequestRejected  # noqa: E402
from serving.pipeline.protocol import parse_request  # noqa: E402
from serving.pipeline.uploads import (  # noqa: E402
    BINARY,
    JSON,
    MULTIPART,
    body_form,
    query_options,
    read_multipart,
)
from tests.service_client import tiny_model_dir  # noqa: E402

BOUNDARY = b"b0undary"


def _multipart(*parts: tuple[str, bytes, str | None], end: bool = True) -> bytes:
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                      else "")
        body += b"--" + BOUNDARY + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    return body + (b"--" + BOUNDARY + b"--\r\n" if end else b"")


def _read(body: bytes):
    return read_multipart(io.BytesIO(body), len(body), {b"boundary": BOUNDARY})


@pytest.mark.parametrize("header, form", [
    (None, JSON), ("application/json; charset=utf-8", JSON),
    ("application/x-www-form-urlencoded", JSON), ("video/mp4", BINARY), ("Video/WebM", BINARY),
    ("application/octet-stream", BINARY), ("multipart/form-data; boundary=x", MULTIPART),
])
def test_each_content_type_is_read_as_its_form(header, form) -> None:
    assert body_form(header)[0] == form


@pytest.mark.parametrize("header", ["text/plain", "image/png", "application/xml"])
def test_other_content_types_get_415_naming_the_accepted_ones(header) -> None:
    with pytest.raises(RequestRejected) as caught:
        body_form(header)
    assert caught.value.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert f"'{header}' is not accepted" in caught.value.message
    assert "multipart/form-data" in caught.value.message


def test_query_options_and_their_refusals() -> None:
    assert query_options("topk=3&mode=dense") == {"topk": "3", "mode": "dense"}
    assert query_options("") == {}
    for query, message in [("topk=1&topk=2", "query parameter 'topk' is sent twice"),
                           ("video=x", "query parameter 'video' is not an option"),
                           ("topk", "not name=value pairs")]:
        with pytest.raises(RequestRejected, match=message):
            query_options(query)


def test_a_multipart_body_becomes_an_attached_request_of_options_and_bytes() -> None:
    video = bytes(range(256)) * 10 + b"\r\n--not-the-boundary"
    parsed = _read(_multipart(("topk", b"2", None), ("video", video, "clip.mp4")))
    request = parsed.request
    assert isinstance(request, AttachedRequest) and request.attachments == {"video": video}
    assert (list(request.key), list(request.value)) == (["topk"], ["2"])
    assert request_fields(request) == (["topk", "video"], ["2", video])
    request.logid, request.name = 7, "pptsm"  # set on the Request underneath
    assert (request.request.logid, request.request.name) == (7, "pptsm")


@pytest.mark.parametrize("body, message", [
    (_multipart(("video", b"abc", "a.mp4"), end=False), "ends before its closing boundary"),
    (_multipart(("topk", b"2", None)), "no 'video' field"),
    (_multipart(("video", b"a", "a.mp4"), ("video", b"b", "b.mp4")), "'video': 2 files"),
    (_multipart(("video", b"a", "a.mp4"), ("mode", b"\xff", None)), "'mode': not UTF-8"),
    (b"garbage without any boundary", "multipart body:"),
])
def test_malformed_multipart_bodies_are_refused(body, message) -> None:
    with pytest.raises(RequestRejected) as caught:
        _read(body)
    assert caught.value.status == HTTPStatus.BAD_REQUEST and caught.value.err_no == 51
    assert message in caught.value.message


def test_a_multipart_body_shorter_than_its_content_length_is_refused() -> None:
    body = _multipart(("video", b"abc", "a.mp4"))
    with pytest.raises(RequestRejected, match=f"{len(body)} of {len(body) + 10} bytes arrived"):
        read_multipart(io.BytesIO(body), len(body) + 10, {b"boundary": BOUNDARY})


def test_the_protocol_takes_video_bytes_under_the_same_limits() -> None:
    limits = DecodeLimits(max_bytes=100)
    request = parse_request({"video": b"x" * 100}, num_classes=3, default_mode="uniform",
                            limits=limits)
    assert request.video == b"x" * 100
    with pytest.raises(LimitExceededError):
        parse_request({"video": b"x" * 101}, num_classes=3, default_mode="uniform", limits=limits)
    with pytest.raises(InvalidInputError, match="video: empty value"):
        parse_request({"video": b""}, num_classes=3, default_mode="uniform", limits=limits)
    with pytest.raises(InvalidInputError, match="topk: value must be a string"):
        parse_request({"video": b"x", "topk": b"1"}, num_classes=3, default_mode="uniform",
                      limits=limits)


@pytest.mark.parametrize("paths", ["/a", [], ["a"], ["/a?b"], [1], ["/a b"]])
def test_prediction_paths_must_be_a_list_of_paths(paths) -> None:
    with pytest.raises(ValueError, match="prediction_paths: a list of paths"):
        HttpSettings(prediction_paths=paths)


class _Pipeline:
    """Stands in for the pipeline behind Readiness: answers with `err_no`, or holds every
    request while `held` is clear."""

    def __init__(self, err_no: int) -> None:
        self.err_no = err_no
        self.held = threading.Event()
        self.held.set()
        self.pings = 0

    def __call__(self, request):
        if list(request.key) == ["ping"]:
            self.pings += 1
            self.held.wait(timeout=30)
        return pipeline_service_pb2.Response(err_no=self.err_no, err_msg="boom")


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_readiness_follows_the_warm_up_and_the_pipelines_pings(calibrate_bn,
                                                               tmp_path_factory) -> None:
    meta = load_meta(tiny_model_dir(tmp_path_factory, calibrate_bn))
    pipeline = _Pipeline(err_no=54)
    readiness = Readiness(pipeline, meta, ping_interval_s=0.01, stale_after_s=0.2)
    assert readiness.state() == (False, "warming up: the first classifications have not run yet")
    readiness.start()
    _wait_for(lambda: readiness.state()[1].startswith("warm-up failed"))
    assert readiness.state() == (False, "warm-up failed: err_no 54: boom")
    pipeline.err_no = 0
    _wait_for(lambda: readiness.state()[0])
    pipeline.held.clear()  # the next ping gets no answer: the pipeline is stuck
    _wait_for(lambda: not readiness.state()[0])
    assert "has not answered a ping for" in readiness.state()[1]
    pipeline.held.set()
    _wait_for(lambda: readiness.state()[0])
    readiness.stop()
    assert readiness.state() == (False, "stopping: finishing the requests in flight")
