"""The REST front door on the real service: the three request forms (JSON, the file as the body,
multipart) and gRPC give the same answer for the same clip, PaddleVideo's client form works on
/video/prediction, the GET routes answer (readiness too, under a load of predictions), probes
stay out of the request log, and every live answer matches the OpenAPI document."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import jsonschema
import numpy as np
import pytest
import referencing
import requests
from prometheus_client.parser import text_string_to_metric_families

from serving.core.metadata import load_meta
from tests.service_client import (
    HTTP_TIMEOUT_S,
    TestService,
    b64,
    fields,
    grpc_call,
    post,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS, raw_frames
from tests.video_corpus import encode_video

CONCURRENCY = 16
BIG_CLIP_BYTES = 50_000_000
# docs/api.md's curl lines, as a user types them (the port is the test service's).
CURL_LINES = (
    "curl -s --data-binary @clip.mp4 -H 'Content-Type: video/mp4' "
    "'http://127.0.0.1:{port}/pptsm/prediction?topk=3&mode=dense'",
    "curl -s -F video=@clip.mp4 -F topk=3 -F mode=dense http://127.0.0.1:{port}/pptsm/prediction",
    "printf '{{\"key\": [\"video\", \"topk\", \"mode\"], \"value\": [\"%s\", \"3\", \"dense\"]}}' "
    "\"$(base64 -w0 clip.mp4)\" | curl -s -H 'Content-Type: application/json' --data-binary @- "
    "http://127.0.0.1:{port}/pptsm/prediction",
)
# What differs between two answers for the same clip: the request id and the stage times.
PER_REQUEST_KEYS = ("request_id", "timing_ms")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    with TestService(model_dir, tmp_path_factory.mktemp("front_door")) as process:
        yield process


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return encode_video(tmp_path_factory.mktemp("front_door_clip") / "clip.mp4", num_frames=30,
                        seed=3)


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """A real 50 MB MPEG-4 clip: noise, every frame a keyframe at a high bitrate."""
    path = tmp_path_factory.mktemp("front_door_big") / "clip.mp4"
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.codec_context.bit_rate, stream.codec_context.gop_size = 400_000_000, 1
        written, index = 0, 0
        while written < BIG_CLIP_BYTES:
            frame = av.VideoFrame.from_ndarray(np.roll(noise, 7 * index, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                written += packet.size
                output.mux(packet)
            index += 1
        for packet in stream.encode():
            output.mux(packet)
    return path


def _url(service: TestService, path: str) -> str:
    return f"http://127.0.0.1:{service.http_port}{path}"


def _result(answer: dict) -> dict[str, str]:
    """The answer's fields without what differs per request."""
    return {key: value for key, value in fields(answer).items() if key not in PER_REQUEST_KEYS}


def _binary(service: TestService, data: bytes, *, path: str = "/pptsm/prediction",
            content_type: str = "video/mp4", **options: str) -> requests.Response:
    return requests.post(_url(service, path), data=data, params=options,
                         headers={"Content-Type": content_type}, timeout=HTTP_TIMEOUT_S)


def _multipart(service: TestService, files: list[tuple[str, Any]],
               **options: str) -> requests.Response:
    return requests.post(_url(service, "/pptsm/prediction"), files=files, data=options,
                         timeout=HTTP_TIMEOUT_S)


def test_json_binary_multipart_grpc_and_the_paddlevideo_path_give_the_same_answer(
        service, clip) -> None:
    data = clip.read_bytes()
    expected = _result(post(service, ["video", "topk", "mode"], [b64(data), "2", "dense"]))
    binary = _binary(service, data, topk="2", mode="dense")
    octet = _binary(service, data, content_type="application/octet-stream", topk="2",
                    mode="dense", path="/video/prediction")
    multipart = _multipart(service, [("video", ("clip.mp4", data, "video/mp4"))],
                           topk="2", mode="dense")
    for response in (binary, octet, multipart):
        assert response.status_code == 200, response.text[:300]
        assert _result(response.json()) == expected
    reply = grpc_call(service, ["video", "topk", "mode"], [b64(data), "2", "dense"])
    grpc_fields = dict(zip(reply.key, reply.value))
    assert {key: grpc_fields[key] for key in expected} == expected
    assert len(json.loads(expected["topk"])) == 2 and expected["label"] in TINY_LABELS


def test_paddlevideos_own_request_form_is_answered_on_video_prediction(service) -> None:
    """deploy/python_serving/pipeline_http_client.py: frames + frames_shape, a JSON string
    posted with no Content-Type to /video/prediction."""
    frames = raw_frames(num_frames=12, height=48, width=64, seed=5)
    body = json.dumps({"key": ["frames", "frames_shape"],
                       "value": [b64(frames.tobytes()), str(frames.shape)]})
    response = requests.post(_url(service, "/video/prediction"), data=body, timeout=100)
    assert response.status_code == 200
    answer = _result(response.json())
    assert answer == _result(post(service, ["frames", "frames_shape"],
                                  [b64(frames.tobytes()), str(frames.shape)]))
    assert answer["prob"] == f"[{answer['score']}]"  # PaddleVideo's own answer key


def test_an_error_in_the_values_is_the_same_error_in_every_form(service, clip) -> None:
    data = clip.read_bytes()
    via_json = post(service, ["video", "topk"], [b64(data), "99"])
    via_binary = _binary(service, data, topk="99").json()
    via_multipart = _multipart(service, [("video", ("c.mp4", data))], topk="99").json()
    assert via_json["err_no"] == 51 and via_json["err_msg"].startswith("topk: must be")
    for answer in (via_binary, via_multipart):
        assert (answer["err_no"], answer["err_msg"]) == (via_json["err_no"], via_json["err_msg"])
    not_a_video = _binary(service, b"\x00" * 4096).json()
    assert not_a_video["err_no"] == post(service, ["video"], [b64(b"\x00" * 4096)])["err_no"] != 0


@pytest.mark.parametrize("send, status, message", [
    (lambda s, d: _multipart(s, [("topk", (None, "2"))]), 400, "no 'video' field"),
    (lambda s, d: _multipart(s, [("video", ("a.mp4", d)), ("video", ("b.mp4", d))]), 400,
     "field 'video': 2 files"),
    (lambda s, d: _multipart(s, [("file", ("a.mp4", d))]), 400,
     "field 'file' holds a file; send the video in the 'video' field"),
    (lambda s, d: _multipart(s, [("video", ("a.mp4", d)), ("top_k", (None, "2"))]), 400,
     "field 'top_k' is not an option; options: topk, mode"),
    (lambda s, d: _binary(s, d, content_type="text/plain"), 415,
     "Content-Type: 'text/plain' is not accepted"),
    (lambda s, d: _binary(s, d, top_k="3"), 400,
     "query parameter 'top_k' is not an option"),
    (lambda s, d: _binary(s, b""), 400, "request body: empty; send the video file"),
    (lambda s, d: requests.post(_url(s, "/pptsm/prediction"), data=d, timeout=30, headers={
        "Content-Type": "multipart/form-data"}), 400, "without a boundary"),
    (lambda s, d: requests.get(_url(s, "/nowhere"), timeout=30), 404, "no such endpoint"),
    (lambda s, d: requests.post(_url(s, "/v2/health/ready"), timeout=30), 405,
     "POST is not supported; GET /v2/health/ready"),
])
def test_uploads_that_are_not_a_form_get_a_4xx_json_error(service, clip, send, status,
                                                          message) -> None:
    response = send(service, clip.read_bytes())
    assert response.status_code == status
    answer = response.json()
    assert answer["err_no"] == 51 and message in answer["err_msg"], answer["err_msg"]


@pytest.mark.parametrize("content_type", ["video/mp4", "multipart/form-data; boundary=x"])
def test_an_upload_over_the_limit_is_refused_unread(service, content_type) -> None:
    """Its Content-Length alone gets the 413: the client is still sending when it comes."""
    limit = requests.get(_url(service, "/pptsm/metadata"), timeout=30).json()["limits"]
    with socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock:
        sock.sendall(f"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     f"{content_type}\r\nContent-Length: {limit['max_bytes'] * 2}\r\n\r\n"
                     f"xx".encode())
        answer = sock.makefile("rb").read().decode()
    head, _, body = answer.partition("\r\n\r\n")
    assert head.split()[1] == "413"
    refusal = json.loads(body)
    assert refusal["err_no"] == 53 and "request_limits.max_bytes" in refusal["err_msg"]


def test_metadata_names_the_model_its_classes_preprocessing_and_limits(service,
                                                                       model_dir) -> None:
    answer = requests.get(_url(service, "/pptsm/metadata"), timeout=30).json()
    meta = load_meta(model_dir)
    assert (answer["name"], answer["version"], answer["precision"]) == (
        meta.name, meta.version, "fp32")
    assert [c["label"] for c in answer["classes"]] == list(TINY_LABELS)
    recorded = json.loads((model_dir / "model_meta.json").read_text())["preprocess"]
    assert answer["preprocess"] == recorded
    assert answer["limits"]["max_bytes"] > 0 and set(answer["sampling_modes"]) >= {"uniform",
                                                                                  "dense"}


def _answered_ok(service: TestService) -> float:
    """How many requests the latency metric has counted as answered ok."""
    return sum(sample.value for family in text_string_to_metric_families(service.metrics_text())
               for sample in family.samples
               if sample.name == "pptsm_request_duration_seconds_count"
               and sample.labels.get("outcome") == "ok")


def test_health_routes_page_and_probes_stay_out_of_the_request_log_and_metrics(service) -> None:
    before, answered_before = len(service.request_log_lines()), _answered_ok(service)
    live = requests.get(_url(service, "/v2/health/live"), timeout=30)
    ready = requests.get(_url(service, "/v2/health/ready"), timeout=30)
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert post(service, ["ping"], [""])["err_no"] == 0
    assert _answered_ok(service) == answered_before
    page = requests.get(_url(service, "/"), timeout=30)
    if page.status_code == 200:
        assert page.headers["Content-Type"].startswith("text/html")
    else:  # the page is another part's work; until it exists the route answers JSON
        assert (page.status_code, page.json()["err_no"]) == (404, 51)
    requests.post(_url(service, "/pptsm/prediction"), json={"key": ["topk"], "value": ["1"]},
                  timeout=30)
    lines = service.request_log_lines()[before:]
    assert [line["keys"] for line in lines] == [["topk"]]  # the failed prediction alone


def test_readiness_answers_while_16_predictions_are_in_flight(service, clip) -> None:
    data = clip.read_bytes()
    stop = threading.Event()
    intervals: list[tuple[float, float]] = []
    clock = threading.Lock()
    counter = iter(range(10**9))

    def tick() -> int:
        with clock:
            return next(counter)

    def predict_until_stopped() -> int:
        answered = 0
        while not stop.is_set():
            started = tick()
            assert _binary(service, data, mode="dense").json()["err_no"] == 0
            intervals.append((started, tick()))
            answered += 1
        return answered

    probes: list[tuple[int, int]] = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        senders = [pool.submit(predict_until_stopped) for _ in range(CONCURRENCY)]
        while len(intervals) < CONCURRENCY:  # the load has been running for a while
            threading.Event().wait(0.05)
        for _ in range(5):
            response = requests.get(_url(service, "/v2/health/ready"), timeout=30)
            probes.append((tick(), response.status_code))
        stop.set()
        assert sum(sender.result() for sender in senders) >= CONCURRENCY
    assert [status for _, status in probes] == [200] * 5
    # Each probe was answered while some prediction was still in flight.
    assert all(any(start < at < end for start, end in intervals) for at, _ in probes)


@pytest.fixture(scope="module")
def openapi(service) -> dict[str, Any]:
    return requests.get(_url(service, "/openapi.json"), timeout=30).json()


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    registry = referencing.Registry().with_resource(
        "urn:openapi", referencing.Resource.from_contents(
            document, default_specification=referencing.jsonschema.DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": "urn:openapi#" + schema["$ref"][1:]}
                                           if "$ref" in schema else schema, registry=registry)


def _response_schema(document: dict[str, Any], path: str, method: str,
                     status: int) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


def test_every_route_and_form_is_in_the_document(openapi) -> None:
    from openapi_spec_validator import validate

    validate(openapi)
    assert {"/pptsm/prediction", "/video/prediction", "/v2/health/live", "/v2/health/ready",
            "/pptsm/metadata", "/openapi.json", "/"} <= set(openapi["paths"])
    forms = openapi["paths"]["/pptsm/prediction"]["post"]["requestBody"]["content"]
    assert set(forms) == {"application/json", "video/*", "application/octet-stream",
                          "multipart/form-data"}


@pytest.mark.parametrize("method, path, body, status", [
    ("get", "/v2/health/live", None, 200),
    ("get", "/v2/health/ready", None, 200),
    ("get", "/pptsm/metadata", None, 200),
    ("post", "/pptsm/prediction", {"key": ["ping"], "value": [""]}, 200),
    ("post", "/pptsm/prediction", b"not json", 400),
    ("post", "/video/prediction", {"key": ["video"], "value": ["!"]}, 200),
])
def test_live_answers_match_the_documents_schemas(service, openapi, method, path, body,
                                                  status) -> None:
    send = {"json": body} if isinstance(body, dict) else {"data": body}
    response = requests.request(method, _url(service, path), timeout=30, **send)
    assert response.status_code == status
    schema = _response_schema(openapi, path, method, status)
    _validator(openapi, schema).validate(response.json())


def test_a_prediction_answer_matches_the_documents_schema(service, clip, openapi) -> None:
    response = _binary(service, clip.read_bytes())
    _validator(openapi, _response_schema(openapi, "/pptsm/prediction", "post", 200)).validate(
        response.json())
    assert np.isfinite(float(fields(response.json())["score"]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_lines_classify_a_50_mb_clip(service, big_clip) -> None:
    """Through a real shell, as docs/api.md shows them: the file body, multipart, and the JSON
    form with the base64 piped in (as one program argument Linux would refuse it)."""
    assert big_clip.stat().st_size >= BIG_CLIP_BYTES
    answers = []
    for line in CURL_LINES:
        done = subprocess.run(["bash", "-c", line.format(port=service.http_port)],
                              cwd=big_clip.parent, capture_output=True, text=True,
                              timeout=HTTP_TIMEOUT_S, check=True)
        answers.append(_result(json.loads(done.stdout)))
    assert answers[0] == answers[1] == answers[2] and len(json.loads(answers[0]["topk"])) == 3
