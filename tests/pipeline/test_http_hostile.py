"""Hostile HTTP clients against the real service, on the REST port and the metrics port: a
tensors flood, bodies over the limit, deep JSON, lone surrogates, Content-Length tricks,
HEAD/OPTIONS and malformed heads, slowloris, and a full queue. Each case is followed by an
honest request that must succeed.

The service runs with the read deadline shortened to READ_TIMEOUT_S, one pipeline slot, a short
slot wait and two pending requests, so the bounds are reached in a few seconds.
"""
from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from serving.pipeline.http_base import HttpSettings
from serving.core.metadata import load_meta
from serving.pipeline.service import ConfigError, ServiceConfig, load_service_config
from tests.process_watch import peak_resident_bytes, reset_peak, resident_bytes
from tests.service_client import (
    DEFAULT_CONFIG,
    TestService,
    b64,
    fields,
    post,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS
from tests.video_corpus import encode_video

MAX_BYTES = 4 * 1024 * 1024  # the body limit must admit the 3 MB flood: refused for its content
# The largest body: the base64 of a MAX_BYTES upload (4 * ceil(MAX_BYTES / 3)) + 64 KiB for the
# options, + 64 KiB for the JSON around the values.
MAX_BODY_BYTES = 5592408 + 65536 + 65536
READ_TIMEOUT_S = 2.0
SLOT_WAIT_S = 0.05
MAX_PENDING = 2
FLOOD_RSS_GROWTH_BYTES = 50 * 1024 * 1024


def _hostile_config(config: dict) -> None:
    config["request_limits"] = {**config["request_limits"], "max_bytes": MAX_BYTES}
    config["worker_num"] = 1
    config["http_host"] = config["metrics_host"] = "127.0.0.1"
    config["http"] = {"request_read_timeout_s": READ_TIMEOUT_S, "slot_wait_s": SLOT_WAIT_S,
                      "max_pending": MAX_PENDING}


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn):
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("http_hostile"),
                     _hostile_config) as process:
        yield process


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return encode_video(tmp_path_factory.mktemp("clip") / "good.mp4").read_bytes()


def _assert_still_serving(service: TestService, clip: bytes) -> None:
    assert fields(post(service, ["video"], [b64(clip)]))["label"] in TINY_LABELS
    assert "pptsm_requests_total" in service.metrics_text()


def _exchange(port: int, sent: bytes, *, method: str = "POST",
              timeout: float = 30) -> tuple[http.client.HTTPResponse, bytes]:
    """Sends `sent` as it is (what a client library would not write); the answer and its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(sent)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response, response.read()


def _json_error(response: http.client.HTTPResponse, body: bytes) -> dict:
    assert response.getheader("Content-Type") == "application/json"
    answer = json.loads(body)
    assert set(answer) == {"err_no", "err_msg", "key", "value", "tensors"}
    assert "Traceback" not in answer["err_msg"]
    return answer


def _post_bytes(service: TestService, body: bytes) -> tuple[int, dict]:
    response = requests.post(service.url, data=body, timeout=60)
    return response.status_code, response.json()


def test_a_tensors_flood_is_refused_within_a_small_memory_bound(service, clip) -> None:
    """10^6 empty `tensors` entries in a 3 MB body: refused before json.loads; the service's
    peak resident memory (VmHWM, reset first through clear_refs) grows by less than 50 MB."""
    pid = service.process.pid
    reset_peak(pid)
    before = resident_bytes(pid)
    body = b'{"key": ["ping"], "value": [""], "tensors": [' + b"{}," * 999_999 + b"{}]}"
    status, answer = _post_bytes(service, body)
    peak_growth = peak_resident_bytes(pid) - before
    assert (status, answer["err_no"]) == (400, 51)
    assert answer["err_msg"].startswith("request body: ")
    assert "JSON separators (',' '[' '{') exceed the limit of 10000" in answer["err_msg"]
    assert peak_growth < FLOOD_RSS_GROWTH_BYTES, peak_growth
    _assert_still_serving(service, clip)


def test_a_few_tensors_are_refused_with_the_envelope_message(service, clip) -> None:
    status, answer = _post_bytes(service, b'{"key": [], "value": [], "tensors": [{}, {}]}')
    assert (status, answer["err_no"]) == (200, 51)
    assert answer["err_msg"].startswith(
        "tensors: this service does not accept Paddle Serving tensors (2 sent)")
    assert dict(zip(answer["key"], answer["value"]))["request_id"].isdigit()
    _assert_still_serving(service, clip)


@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"], ids=["plain", "expect"])
def test_a_body_over_the_limit_is_refused_unread(service, clip, expect) -> None:
    """Only the head is sent: the 413 comes back without the body (and without 100 Continue)."""
    response, body = _exchange(service.http_port, b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: %d\r\n%s\r\n" % (MAX_BODY_BYTES + 1, expect))
    answer = _json_error(response, body)
    assert (response.status, answer["err_no"]) == (413, 53)
    assert answer["err_msg"] == (
        f"request: {MAX_BODY_BYTES + 1} bytes exceed the limit of {MAX_BODY_BYTES} (the base64 "
        f"of request_limits.max_bytes plus 131072 for the options and the JSON around them)")
    _assert_still_serving(service, clip)


def test_a_body_at_the_limit_is_read(service, clip) -> None:
    padding = MAX_BODY_BYTES - len(b'{"key": ["ping"], "value": [""]}')
    body = b'{"key": ["ping"], "value": [""]}' + b" " * padding
    status, answer = _post_bytes(service, body)
    assert (status, answer["err_no"]) == (200, 0)


@pytest.mark.parametrize("body, message", [
    (b"[" * 5000 + b"]" * 5000, "request body: JSON nested too deeply"),
    (b'{"key": ["ping"], "value": [' + b"[" * 3000 + b"]" * 3000 + b"]}",
     "request body: JSON nested too deeply"),
    (b'{"key": ["\\ud800"], "value": [""]}', "request body: 'key' holds a lone UTF-16 surrogate"),
    (b'{"key": ["video"], "value": ["AAAA\\udc00"]}',
     "request body: 'value' holds a lone UTF-16 surrogate"),
], ids=["deep list", "deep value", "surrogate key", "surrogate value"])
def test_deep_json_and_lone_surrogates_get_a_json_error(service, clip, body, message) -> None:
    status, answer = _post_bytes(service, body)
    assert (status, answer["err_no"]) == (400, 51) and answer["err_msg"].startswith(message)
    _assert_still_serving(service, clip)


PING = b'{"key": ["ping"], "value": [""]}'


@pytest.mark.parametrize("headers, status, message", [
    (b"Content-Length: 32\r\nContent-Length: 32\r\n", 400, "Content-Length: sent 2 times"),
    (b"Content-Length: +32\r\n", 400, "Content-Length: '+32' is not a byte count"),
    (b"Content-Length: 32, 32\r\n", 400, "Content-Length: '32, 32' is not a byte count"),
    (b"Content-Length: -1\r\n", 400, "Content-Length: '-1' is not a byte count"),
    (b"Content-Length: 0x20\r\n", 400, "Content-Length: '0x20' is not a byte count"),
    (b"Content-Length: 32\r\nTransfer-Encoding: chunked\r\n", 411,
     "chunked request bodies are not supported"),
], ids=["twice", "plus", "list", "negative", "hex", "with chunked"])
def test_content_length_tricks_get_a_json_error(service, clip, headers, status,
                                                message) -> None:
    response, body = _exchange(service.http_port, b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\n"
                               + headers + b"\r\n" + PING)
    answer = _json_error(response, body)
    assert (response.status, answer["err_no"]) == (status, 51)
    assert answer["err_msg"].startswith(message)
    assert response.getheader("Connection") == "close"
    _assert_still_serving(service, clip)


def test_head_gets_405_with_allow_and_no_body(service, clip) -> None:
    response, body = _exchange(service.http_port, b"HEAD /pptsm/prediction HTTP/1.1\r\n"
                               b"Host: x\r\n\r\n", method="HEAD")
    assert (response.status, response.getheader("Allow"), body) == (405, "POST", b"")
    assert response.getheader("Content-Type") == "application/json"
    _assert_still_serving(service, clip)


def test_options_gets_405_with_allow_and_a_json_body(service, clip) -> None:
    response, body = _exchange(service.http_port, b"OPTIONS /pptsm/prediction HTTP/1.1\r\n"
                               b"Host: x\r\n\r\n", method="OPTIONS")
    answer = _json_error(response, body)
    assert (response.status, response.getheader("Allow"), answer["err_no"]) == (405, "POST", 51)
    assert answer["err_msg"] == "OPTIONS is not supported; POST /pptsm/prediction"
    _assert_still_serving(service, clip)


@pytest.mark.parametrize("sent, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"POST /pptsm/prediction HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"POST /pptsm/prediction HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"POST /pptsm/prediction HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),
    (b"BREW /pptsm/prediction HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"POST /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
], ids=["request line", "version", "long header", "many headers", "unknown method", "long uri"])
def test_what_http_server_answered_in_html_is_answered_in_json(service, clip, sent,
                                                               status) -> None:
    response, body = _exchange(service.http_port, sent)
    answer = _json_error(response, body)
    assert (response.status, answer["err_no"]) == (status, 51)
    assert answer["err_msg"].startswith("HTTP request: ")
    _assert_still_serving(service, clip)


def _slowloris(port: int, connections: int, head: bytes, seconds: float) -> list[float]:
    """Opens `connections` and trickles `head` one byte every 0.25 s on each for at most
    `seconds`; returns, per connection, the seconds from its first byte until the server closed
    it (inf if it never did)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(connections)]
    started = [time.monotonic()] * connections
    closed = [float("inf")] * connections
    for sock in socks:
        sock.sendall(head[:1])
    end = time.monotonic() + seconds
    sent = 1
    while time.monotonic() < end and any(c == float("inf") for c in closed):
        readable, _, _ = select.select([s for s, c in zip(socks, closed) if c == float("inf")],
                                       [], [], 0.25)
        for sock in readable:
            index = socks.index(sock)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            closed[index] = time.monotonic() - started[index]
        for sock, when in zip(socks, closed):
            if when == float("inf"):
                try:
                    sock.sendall(head[sent % len(head):sent % len(head) + 1])
                except OSError:
                    pass
        sent += 1
    for sock in socks:
        sock.close()
    return closed


def _honest_while(attack: threading.Thread, honest) -> list[tuple[int, str]]:
    results = []
    while attack.is_alive():
        results.append(honest())
        time.sleep(0.3)
    return results


@pytest.mark.parametrize("target", ["rest", "metrics"])
def test_slowloris_is_dropped_at_the_deadline_and_honest_clients_are_served(service, clip,
                                                                            target) -> None:
    if target == "rest":
        port, connections = service.http_port, 40
        head = b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n"
    else:
        port, connections = service.metrics_port, 40  # more than its 16 connections
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    closed: list[float] = []
    attack = threading.Thread(target=lambda: closed.extend(
        _slowloris(port, connections, head, seconds=READ_TIMEOUT_S + 6)))
    attack.start()
    time.sleep(0.5)

    def honest() -> tuple[int, str]:
        if target == "rest":
            response = requests.post(service.url, json={"key": ["ping"], "value": [""]},
                                     timeout=30)
            return response.status_code, response.json()["err_msg"]
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        return response.status_code, response.text[:200]

    results = _honest_while(attack, honest)
    attack.join()
    assert results and all(status == 200 for status, _ in results), results
    assert len(closed) == connections and max(closed) < READ_TIMEOUT_S + 1.5, sorted(
        round(seconds, 2) for seconds in closed)
    _assert_still_serving(service, clip)


def test_a_full_queue_is_answered_503_with_retry_after(service, clip) -> None:
    """MAX_PENDING bodies trickling in hold the queue; the next request is refused at once,
    its body unread."""
    held = [socket.create_connection(("127.0.0.1", service.http_port), timeout=10)
            for _ in range(MAX_PENDING)]
    for sock in held:
        sock.sendall(b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n{")
    time.sleep(0.3)
    response, body = _exchange(service.http_port, b"POST /pptsm/prediction HTTP/1.1\r\n"
                               b"Host: x\r\nContent-Length: 32\r\n\r\n" + PING)
    answer = _json_error(response, body)
    assert (response.status, response.getheader("Retry-After"), answer["err_no"]) == (
        503, "2", 503)
    assert answer["err_msg"] == (f"too many requests waiting (at most {MAX_PENDING}, "
                                 f"http.max_pending); retry later")
    for sock in held:
        sock.close()
    time.sleep(0.3)
    _assert_still_serving(service, clip)


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory) -> bytes:
    """A clip whose decoding takes a while: 1080p with a single key frame."""
    return encode_video(tmp_path_factory.mktemp("slow") / "slow.mp4", width=1920, height=1080,
                        num_frames=48, options={"g": "1000"}).read_bytes()


def _wait_until_in_flight(service: TestService, count: int) -> None:
    deadline = time.monotonic() + 60
    while f"pptsm_requests_in_flight {count:.1f}" not in service.metrics_text():
        assert time.monotonic() < deadline, "the request never entered the pipeline"
        time.sleep(0.01)


def test_no_free_pipeline_slot_in_time_is_answered_503_with_retry_after(service, clip,
                                                                         slow_clip) -> None:
    """One pipeline slot, held by a slow upload: a ping waits SLOT_WAIT_S for it, then 503."""
    first: list[requests.Response] = []
    sender = threading.Thread(target=lambda: first.append(requests.post(
        service.url, json={"key": ["video"], "value": [b64(slow_clip)]}, timeout=120)))
    sender.start()
    _wait_until_in_flight(service, 1)
    response = requests.post(service.url, json={"key": ["ping"], "value": [""]}, timeout=60)
    sender.join()
    assert (response.status_code, response.headers.get("Retry-After")) == (503, "2")
    answer = response.json()
    assert answer["err_no"] == 503
    assert answer["err_msg"] == (f"the service is busy: no pipeline slot freed up within "
                                 f"{SLOT_WAIT_S:g} s (http.slot_wait_s); retry later")
    assert fields(first[0].json())["label"] in TINY_LABELS
    _assert_still_serving(service, clip)


def test_metrics_port_answers_json_errors_and_serves_pd_counters(service, clip) -> None:
    response, body = _exchange(service.metrics_port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (response.status, _json_error(response, body)["err_no"]) == (404, 51)
    response, body = _exchange(service.metrics_port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 0\r\n\r\n")
    assert (response.status, response.getheader("Allow")) == (405, "GET")
    text = service.metrics_text()
    assert "pd_query_request_success_total" in text and "pptsm_requests_total" in text
    assert "Flask" not in service.log_tail(400)


@pytest.fixture(scope="module")
def meta(tmp_path_factory, calibrate_bn):
    return load_meta(tiny_model_dir(tmp_path_factory, calibrate_bn))


def _load(tmp_path: Path, meta, edit: dict) -> ServiceConfig:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(edit)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return load_service_config(path, http_port=None, rpc_port=None, meta=meta)


def test_the_shipped_config_states_the_http_defaults(tmp_path, meta) -> None:
    config = _load(tmp_path, meta, {})
    assert (config.http_host, config.metrics_host, config.http) == (
        "0.0.0.0", "0.0.0.0", HttpSettings())


@pytest.mark.parametrize("edit, message", [
    ({"http": {"request_read_timout_s": 5}}, "http.request_read_timout_s: unknown key"),
    ({"http": {"max_pending": 0}}, "http.max_pending: an integer >= 1, got 0"),
    ({"http": {"slot_wait_s": "5"}}, "http.slot_wait_s: seconds > 0, got '5'"),
    ({"http_host": "[::]"}, "http_host: an IPv4 address or host name to listen on"),
    ({"metrics_host": ""}, "metrics_host: an IPv4 address or host name to listen on"),
])
def test_bad_http_settings_are_refused_naming_the_key(tmp_path, meta, edit, message) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, meta, edit)
    assert str(caught.value).startswith(message)
