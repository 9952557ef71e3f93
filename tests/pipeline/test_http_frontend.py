"""The REST front end on its own: request parsing, and a stop while requests are in flight (with
a stand-in for the pipeline that answers when the test lets it). tests/pipeline/test_bad_inputs.py sends
bad bodies to the real service, tests/pipeline/test_http_hostile.py hostile HTTP clients."""
from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from http import HTTPStatus

import pytest

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import UNAVAILABLE_CODE, CodedError  # noqa: E402
from serving.pipeline.http_base import MIN_EVICTABLE_AGE_S, HttpSettings, RequestRejected  # noqa: E402
from serving.pipeline.http_frontend import RestServer  # noqa: E402
from serving.pipeline.json_form import (  # noqa: E402
    JSON_ENVELOPE_ALLOWANCE_BYTES,
    max_body_bytes,
    parse_request_body,
)
from serving.core.preprocess.decode_limits import DecodeLimits  # noqa: E402

LIMITS = DecodeLimits(max_bytes=7_000)


def test_the_json_form_becomes_a_request() -> None:
    body = json.dumps({"key": ["video", "topk"], "value": ["QUJD", "3"], "logid": 77}).encode()
    request = parse_request_body(body).request
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
    request = parse_request_body(body).request
    assert (list(request.key), list(request.value), request.logid) == expected


def test_tensors_are_counted_never_built() -> None:
    parsed = parse_request_body(b'{"tensors": [{"name": "x"}, {}]}')
    assert parsed.tensor_count == 2 and len(parsed.request.tensors) == 0


def test_a_paired_surrogate_escape_is_text() -> None:
    request = parse_request_body(b'{"key": ["\\ud83d\\ude00"], "value": ["1"]}').request
    assert list(request.key) == ["\U0001f600"]


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
    (b'{"tensors": [' + b"{}," * 1_000_000 + b'{}]}',
     "request body: 2000003 JSON separators (',' '[' '{') exceed the limit of 10000"),
    (b"[" * 5000 + b"]" * 5000, "request body: JSON nested too deeply"),
    (b'{"a":' * 3000 + b"1" + b"}" * 3000, "request body: JSON nested too deeply"),
    (b'{"key": ["\\ud800"], "value": ["1"]}', "request body: 'key' holds a lone UTF-16 surrogate"),
    (b'{"key": ["video"], "value": ["x\\udfff"]}', "'value' holds a lone UTF-16 surrogate"),
])
def test_bodies_that_are_not_the_json_form_are_refused_naming_the_field(body, message) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_request_body(body)
    assert caught.value.status == HTTPStatus.BAD_REQUEST and caught.value.err_no == 51
    assert message in caught.value.message


def test_body_limit_is_the_request_limit_plus_the_json_around_it() -> None:
    assert max_body_bytes(1_000) == 1_000 + JSON_ENVELOPE_ALLOWANCE_BYTES


class _GatedServicer:
    """Stands in for the pipeline: answers each request once `gate` is open."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def inference(self, request, context, *, slot_wait_s=None):
        self.entered.release()
        self.gate.wait(timeout=30)
        return pipeline_service_pb2.Response(err_no=0, key=["keys"], value=[",".join(request.key)])

    def refuse(self, request, error: CodedError):
        return pipeline_service_pb2.Response(err_no=error.code, err_msg=error.message)


def _post(connection: http.client.HTTPConnection, keys: list[str]) -> tuple[int, dict]:
    body = json.dumps({"key": keys, "value": [""] * len(keys)})
    connection.request("POST", "/pptsm/prediction", body)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_a_stopping_server_answers_requests_in_flight_and_refuses_new_ones_with_503() -> None:
    servicer = _GatedServicer()
    server = RestServer(("127.0.0.1", 0), servicer, service_name="pptsm", limits=LIMITS)
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


def _server(servicer, **settings) -> RestServer:
    server = RestServer(("127.0.0.1", 0), servicer, service_name="pptsm", limits=LIMITS,
                        settings=HttpSettings(**settings))
    server.start()
    return server


def _post_in_thread(port: int, keys: list[str], into: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.append(
        _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30), keys)))
    thread.start()
    return thread


def test_connections_over_the_limit_are_answered_503_while_all_are_busy() -> None:
    servicer = _GatedServicer()
    server = _server(servicer, max_connections=2)
    port = server.server_address[1]
    answers: list[tuple[int, dict]] = []
    try:
        senders = [_post_in_thread(port, ["video"], answers) for _ in range(2)]
        assert servicer.entered.acquire(timeout=30) and servicer.entered.acquire(timeout=30)
        time.sleep(MIN_EVICTABLE_AGE_S + 0.2)  # old enough to evict, were they evictable
        response = _raw_exchange(port, b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 2\r\n\r\n{}")
        assert response.status == 503 and response.getheader("Retry-After") == "2"
        assert json.loads(response.read())["err_msg"] == (
            "too many open connections (at most 2); retry later")
        servicer.gate.set()
        for sender in senders:
            sender.join(timeout=30)
        assert [status for status, _ in answers] == [200, 200]
    finally:
        servicer.gate.set()
        server.stop(grace_s=5)


def test_a_new_connection_takes_the_place_of_the_one_idle_the_longest() -> None:
    servicer = _GatedServicer()
    servicer.gate.set()
    server = _server(servicer, max_connections=2)
    port = server.server_address[1]
    try:
        held = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
        for connection in held:  # two kept-alive connections, open and idle
            assert _post(connection, ["ping"])[0] == 200
        time.sleep(MIN_EVICTABLE_AGE_S + 0.2)
        assert _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30),
                     ["ping"])[0] == 200
        assert held[0].sock.recv(1) == b""  # the oldest idle one was closed to make room
        assert _post(held[1], ["ping"])[0] == 200  # the other one still serves
    finally:
        server.stop(grace_s=5)


def _raw_exchange(port: int, sent: bytes, *, timeout: float = 30) -> http.client.HTTPResponse:
    """Sends `sent` as it is (headers a client library would not write) and reads the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(sent)
    response = http.client.HTTPResponse(sock, method=sent.split(b" ", 1)[0].decode())
    response.begin()
    return response


def test_a_request_trickled_slower_than_its_deadline_is_answered_408_at_the_deadline() -> None:
    servicer = _GatedServicer()
    servicer.gate.set()
    server = _server(servicer, request_read_timeout_s=1.0)
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            started = time.monotonic()
            for byte in b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                if select.select([sock], [], [], 0.2)[0]:
                    break  # the server answered
            answer = sock.makefile("rb").read()
            elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["err_msg"] == (
            "request: not received within 1 s of its first byte (http.request_read_timeout_s)")
        assert 1.0 <= elapsed < 3.0
        assert _post(http.client.HTTPConnection("127.0.0.1", port, timeout=30),
                     ["ping"])[0] == 200
    finally:
        server.stop(grace_s=5)


def test_requests_past_max_pending_or_slot_wait_get_503_with_retry_after() -> None:
    servicer = _GatedServicer()
    server = _server(servicer, max_pending=1)
    port = server.server_address[1]
    answers: list[tuple[int, dict]] = []
    try:
        sender = _post_in_thread(port, ["video"], answers)
        assert servicer.entered.acquire(timeout=30)
        response = _raw_exchange(port, b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 2\r\n\r\n{}")
        assert (response.status, response.getheader("Retry-After")) == (503, "2")
        assert json.loads(response.read())["err_msg"] == (
            "too many requests waiting (at most 1, http.max_pending); retry later")
        servicer.gate.set()
        sender.join(timeout=30)
        assert answers[0][0] == 200
    finally:
        servicer.gate.set()
        server.stop(grace_s=5)


class _BusyServicer(_GatedServicer):
    """Answers as ObservedServicer does when no slot frees up in time."""

    def inference(self, request, context, *, slot_wait_s=None):
        return pipeline_service_pb2.Response(err_no=UNAVAILABLE_CODE, err_msg="busy")


def test_a_busy_pipeline_is_answered_503_with_retry_after() -> None:
    server = _server(_BusyServicer(), retry_after_s=7)
    try:
        response = _raw_exchange(server.server_address[1],
                                 b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 32\r\n\r\n" + json.dumps(
                                     {"key": ["ping"], "value": [""]}).encode()[:32].ljust(32))
        assert (response.status, response.getheader("Retry-After")) == (503, "7")
        assert json.loads(response.read())["err_no"] == UNAVAILABLE_CODE
    finally:
        server.stop(grace_s=5)


def test_the_envelope_is_checked_before_the_request_queues() -> None:
    servicer = _GatedServicer()  # its gate stays closed: a queued request would hang
    server = _server(servicer)
    try:
        body = json.dumps({"key": ["video", "video"], "value": ["AAAA", "AAAA"]}).encode()
        response = _raw_exchange(server.server_address[1],
                                 b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = json.loads(response.read())
        assert (response.status, answer["err_no"]) == (200, 51)
        assert answer["err_msg"] == "'video' is sent twice; send each key once"
        assert not servicer.entered.acquire(timeout=0.1)
    finally:
        servicer.gate.set()
        server.stop(grace_s=5)
