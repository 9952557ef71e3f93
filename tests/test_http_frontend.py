"""The REST front end on its own: request parsing, and a stop while requests are in flight (with
a stand-in for the pipeline that answers when the test lets it). tests/test_bad_inputs.py sends
bad bodies to the real service."""
from __future__ import annotations

import http.client
import json
import threading
import time
from http import HTTPStatus

import pytest

from serving import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.http_frontend import (  # noqa: E402
    RequestRejected,
    RestServer,
    max_body_bytes,
    parse_request_body,
)


def test_the_json_form_becomes_a_request() -> None:
    body = json.dumps({"key": ["video", "topk"], "value": ["QUJD", "3"], "logid": 77}).encode()
    request = parse_request_body(body)
    assert (list(request.key), list(request.value), request.logid) == (
        ["video", "topk"], ["QUJD", "3"], 77)


@pytest.mark.parametrize("body, expected", [
    (b"", ([], [], 0)),
    (b"  \n", ([], [], 0)),
    (b"{}", ([], [], 0)),
    (b'{"key": null, "value": null, "logid": null}', ([], [], 0)),
    (b'{"key": ["ping"], "value": [""], "logid": "12", "name": "x", "other": [1]}',
     (["ping"], [""], 12)),
    (b'{"logid": -5}', ([], [], -5)),
])
def test_gateway_rules_empty_body_unknown_fields_and_int64_as_text(body, expected) -> None:
    request = parse_request_body(body)
    assert (list(request.key), list(request.value), request.logid) == expected


def test_tensors_are_counted_for_the_pipeline_to_refuse() -> None:
    assert len(parse_request_body(b'{"tensors": [{"name": "x"}, {}]}').tensors) == 2


@pytest.mark.parametrize("body, message", [
    (b"not json", "request body: not valid JSON"),
    (b'["video"]', "request body: a JSON object with 'key' and 'value' lists expected, got list"),
    (b'"text"', "got str"),
    (b'{"key": "video"}', "request body: 'key' must be a list of strings"),
    (b'{"key": ["video"], "value": [12]}', "request body: 'value' must be a list of strings"),
    (b'{"key": [null]}', "'key' must be a list of strings"),
    (b'{"logid": 1.5}', "request body: 'logid' must be a 64-bit integer"),
    (b'{"logid": true}', "'logid' must be a 64-bit integer"),
    (b'{"logid": "1e3"}', "'logid' must be a 64-bit integer"),
    (b'{"logid": 9223372036854775808}', "'logid' must be a 64-bit integer"),
    (b'{"tensors": {}}', "request body: 'tensors' must be a list"),
    (b'{"key": ""}', "'key' must be a list of strings"),
    (b'{"logid": ""}', "'logid' must be a 64-bit integer"),
])
def test_bodies_that_are_not_the_json_form_are_refused_naming_the_field(body, message) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_request_body(body)
    assert caught.value.status == HTTPStatus.BAD_REQUEST and caught.value.err_no == 51
    assert message in caught.value.message


def test_body_limit_leaves_room_for_the_pipeline_to_explain_moderate_excess() -> None:
    assert max_body_bytes(1_000) == 2_000


class _GatedServicer:
    """Stands in for the pipeline: answers each request once `gate` is open."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def inference(self, request, context):
        self.entered.release()
        self.gate.wait(timeout=30)
        return pipeline_service_pb2.Response(err_no=0, key=["keys"], value=[",".join(request.key)])


def _post(connection: http.client.HTTPConnection, keys: list[str]) -> tuple[int, dict]:
    body = json.dumps({"key": keys, "value": [""] * len(keys)})
    connection.request("POST", "/pptsm/prediction", body)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_a_stopping_server_answers_requests_in_flight_and_refuses_new_ones_with_503() -> None:
    servicer = _GatedServicer()
    server = RestServer(("127.0.0.1", 0), servicer, service_name="pptsm", max_body_bytes=10_000)
    server.start()
    port = server.server_address[1]
    servicer.gate.set()
    kept_alive = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    assert _post(kept_alive, ["ping"]) == (200, {"err_no": 0, "err_msg": "", "key": ["keys"],
                                                 "value": ["ping"], "tensors": []})
    servicer.gate.clear()
    in_flight: list[tuple[int, dict]] = []
    sender = threading.Thread(target=lambda: in_flight.append(
        _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30), ["video"])))
    sender.start()
    assert servicer.entered.acquire(timeout=30)  # the first request's, then this one's
    assert servicer.entered.acquire(timeout=30)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(server.stop(grace_s=30)))
    stopper.start()
    while not server.is_stopping:
        time.sleep(0.01)
    status, answer = _post(kept_alive, ["ping"])  # a new request on an open connection
    assert (status, answer["err_no"]) == (503, 503) and "stopping" in answer["err_msg"]
    servicer.gate.set()
    sender.join(timeout=30)
    stopper.join(timeout=30)
    assert in_flight == [(200, {"err_no": 0, "err_msg": "", "key": ["keys"], "value": ["video"],
                                "tensors": []})]
    assert stopped == [True]


def test_connections_over_the_limit_are_answered_503_and_closed() -> None:
    servicer = _GatedServicer()
    servicer.gate.set()
    server = RestServer(("127.0.0.1", 0), servicer, service_name="pptsm", max_body_bytes=10_000,
                        max_connections=2)
    server.start()
    port = server.server_address[1]
    try:
        held = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
        for connection in held:  # two kept-alive connections, open and idle
            assert _post(connection, ["ping"])[0] == 200
        status, answer = _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30),
                               ["ping"])
        assert (status, answer["err_no"]) == (503, 503)
        assert answer["err_msg"] == "too many open connections (at most 2); retry later"
        held[0].close()  # a slot frees up once that connection's thread has ended
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _ = _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30), ["ping"])
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        server.stop(grace_s=5)
