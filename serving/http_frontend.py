"""REST entry point: `POST /<service>/prediction` with Paddle Serving's JSON request form,
served from the service's own process.

Why not Paddle Serving's Go gateway: it converts every request from JSON to protobuf in a second
process and forwards it over a loopback gRPC connection, which cost 35 ms plus about 50 ms per
MB of request on 2 cores. Measured with a PP-TSMv2 16-frame model, time outside the pipeline's
stages per request: 48-54 ms for a 10 s 320x240 clip and 212-273 ms for a 10 s 1280x720 clip
(3.6 MB of base64) through the gateway; 21-24 and 31-34 ms here, as much as over gRPC. This
front end reads the same JSON form (with the gateway's rules: unknown fields ignored, an int64
`logid` as number or string) and hands the Request to the servicer the gRPC server also calls,
so both transports run the same pipeline and give the same answers. The answer is the JSON of
the Response, with the fields the gateway wrote.

A request that never reaches the pipeline (not JSON, not the JSON form, wrong path or method,
too large) is answered with an HTTP error status and a JSON body carrying `err_no` and `err_msg`
like every other answer, so clients need one error path.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from serving import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.errors import InvalidInputError, LimitExceededError  # noqa: E402

log = logging.getLogger(__name__)


# Seconds a connection may stay silent (between requests, or inside a slowly sent body) before
# its thread gives up on it.
CONNECTION_TIMEOUT_S = 60.0
# err_no of the answer to a request that arrives while the service stops, or to a connection
# over the limit below (HTTP 503 too).
UNAVAILABLE_CODE = 503
# Open connections at most (each holds a thread, idle ones for up to CONNECTION_TIMEOUT_S); one
# more is answered 503 and closed, so that many idle or slow clients cannot exhaust the process.
MAX_CONNECTIONS = 256
# Refusals in progress at most; each answers 503 and reads what its client still sends (for up to
# REFUSAL_DRAIN_S), since closing a socket with unread data resets it before the client has read
# the answer. Past this many, a connection is closed unanswered.
MAX_REFUSALS = 16
REFUSAL_DRAIN_S = 2.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT64_TEXT = re.compile(r"-?[0-9]{1,19}")


def max_body_bytes(max_request_chars: int) -> int:
    """The largest body read for a request whose values may hold `max_request_chars` characters
    (protocol.max_request_bytes). Up to twice that, a body is read and the pipeline refuses an
    oversized request with the same detailed message as over gRPC; past it, the body is refused
    unread (413), so a huge upload costs neither the memory nor the time to receive it."""
    return 2 * max_request_chars


class Servicer(Protocol):
    """What the front end calls: Paddle Serving's PipelineServicer.inference signature."""

    def inference(self, request: Any, context: Any) -> Any: ...


class RequestRejected(Exception):
    """A request refused before the pipeline; `status` is the HTTP status to answer with."""

    def __init__(self, status: HTTPStatus, err_no: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.err_no = err_no
        self.message = message


def _rejected(message: str) -> RequestRejected:
    return RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                           f"request body: {message}")


def _string_list(document: dict[str, Any], field: str) -> list[str]:
    value = document.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _rejected(f"{field!r} must be a list of strings")
    return value


def _logid(document: dict[str, Any]) -> int:
    """An int64, as a JSON number or a string of digits (protobuf's JSON form of int64)."""
    value = document.get("logid")
    if value is None:
        return 0
    if isinstance(value, str) and _INT64_TEXT.fullmatch(value):
        value = int(value)
    if (isinstance(value, bool) or not isinstance(value, int)
            or not _INT64_MIN <= value <= _INT64_MAX):
        raise _rejected("'logid' must be a 64-bit integer")
    return value


def parse_request_body(body: bytes) -> Any:
    """A Paddle Serving Request from the JSON request body, with the Go gateway's rules: an
    empty body is an empty request, unknown fields are ignored, `logid` may be a number or a
    string. Anything else that is not the JSON form is refused with a message naming the problem.

    Written out rather than protobuf's json_format.ParseDict, which spends 180 ms on the
    3.6 MB string of a 10 s 720p upload (json.loads: 7 ms). `tensors` are only counted (this
    service refuses them with a message that says how many were sent)."""
    request = pipeline_service_pb2.Request()
    if not body.strip():
        return request
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise _rejected("not UTF-8 text; send JSON") from None
    except ValueError as exc:
        raise _rejected(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _rejected(f"a JSON object with 'key' and 'value' lists expected, got "
                        f"{type(document).__name__}")
    request.key.extend(_string_list(document, "key"))
    request.value.extend(_string_list(document, "value"))
    request.logid = _logid(document)
    tensors = document.get("tensors")
    if tensors is None:
        tensors = []
    if not isinstance(tensors, list):
        raise _rejected("'tensors' must be a list")
    for _ in tensors:
        request.tensors.add()
    return request


def _answer_json(err_no: int, message: str, keys: list[str], values: list[str]) -> bytes:
    """Every answer's JSON: the fields of a Paddle Serving Response."""
    return json.dumps({"err_no": err_no, "err_msg": message, "key": keys, "value": values,
                       "tensors": []}).encode()


def response_json(response: Any) -> bytes:
    """The JSON answer for a Paddle Serving Response."""
    return _answer_json(response.err_no, response.err_msg, list(response.key),
                        list(response.value))


def _error_json(err_no: int, message: str) -> bytes:
    return _answer_json(err_no, message, [], [])


class _PredictionHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many requests on one connection
    server_version = "pptsm-serving"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT_S
    server: "RestServer"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        try:
            request = self._read_request()
        except RequestRejected as rejected:
            self._answer(rejected.status, _error_json(rejected.err_no, rejected.message))
            return
        response = self.server.call(request)
        if response is None:
            self.close_connection = True
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE,
                         _error_json(UNAVAILABLE_CODE, "the service is stopping; retry on "
                                                       "another instance"))
            return
        self._answer(HTTPStatus.OK, response_json(response))

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, _error_json(
            InvalidInputError.CODE, f"{self.command} is not supported; POST the request as JSON "
                                    f"to {self.server.path}"))

    do_GET = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815

    def _read_request(self) -> Any:
        if self.path.split("?", 1)[0] != self.server.path:
            self.close_connection = True
            raise RequestRejected(HTTPStatus.NOT_FOUND, InvalidInputError.CODE,
                                  f"no such endpoint {self.path[:80]!r}; POST to "
                                  f"{self.server.path}")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise RequestRejected(HTTPStatus.LENGTH_REQUIRED, InvalidInputError.CODE,
                                  "chunked request bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  "Content-Length: not a byte count")
        if length > self.server.max_body_bytes:
            self.close_connection = True  # the body is never read
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, LimitExceededError.CODE,
                f"request: {length} bytes exceed the limit of {self.server.max_body_bytes} "
                f"(twice the largest request that request_limits.max_bytes allows, in base64)")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  f"request body: {len(body)} of {length} bytes arrived")
        request = parse_request_body(body)
        request.name = self.server.service_name
        return request

    def _answer(self, status: HTTPStatus, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Silent: every request gets its line in the service's request log instead."""


class RestServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` of them. The servicer bounds the
    requests in the pipeline (serving.server.ObservedServicer)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], servicer: Servicer, *, service_name: str,
                 max_body_bytes: int, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(address, _PredictionHandler)
        self.max_connections = max_connections
        self._connections = threading.BoundedSemaphore(max_connections)
        self._refusals = threading.BoundedSemaphore(MAX_REFUSALS)
        self.servicer = servicer
        self.service_name = service_name
        self.path = f"/{service_name}/prediction"
        self.max_body_bytes = max_body_bytes
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    def call(self, request: Any) -> Any | None:
        """The servicer's Response, or None once the server is stopping."""
        with self._idle:
            if self._stopping:
                return None
            self._in_flight += 1
        try:
            return self.servicer.inference(request, None)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs in the accepting thread: a connection over the limit is refused."""
        if self._connections.acquire(blocking=False):
            super().process_request(request, client_address)
        elif self._refusals.acquire(blocking=False):
            threading.Thread(target=self._refuse, args=(request,), daemon=True).start()
        else:
            self.shutdown_request(request)

    def _refuse(self, connection: Any) -> None:
        body = _error_json(UNAVAILABLE_CODE, f"too many open connections (at most "
                                             f"{self.max_connections}); retry later")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            connection.settimeout(REFUSAL_DRAIN_S)
            connection.sendall(head + body)
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(65536):  # until the client closes, or the timeout
                pass
        except OSError:
            pass  # the client is gone, or too slow to wait for
        finally:
            connection.close()
            self._refusals.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr: a client that hangs up
        or stalls past CONNECTION_TIMEOUT_S ends only its own connection."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("REST connection from %s ended: %s", client_address[0],
                     type(error).__name__)
        else:
            log.error("REST connection from %s failed: %s: %s", client_address[0],
                      type(error).__name__, error)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="rest-frontend", daemon=True)
        thread.start()
        return thread

    def stop(self, grace_s: float) -> bool:
        """Stops taking connections and requests, waits up to `grace_s` for the requests in the
        pipeline; True if they all finished."""
        with self._idle:
            self._stopping = True
        self.shutdown()
        self.server_close()
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace_s)
