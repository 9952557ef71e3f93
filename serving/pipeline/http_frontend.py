"""REST entry point: `POST /<service>/prediction` with Paddle Serving's JSON request form,
served from the service's own process, plus the bounded HTTP machinery the metrics endpoint
(serving.pipeline.metrics_server) shares.

Why not Paddle Serving's Go gateway: it converts every request from JSON to protobuf in a second
process and forwards it over a loopback gRPC connection, which costs a fixed delay plus time
per MB of request (the README's speed section has the figures). This front end reads the same
JSON form (with the gateway's rules: unknown fields ignored, an int64 `logid` as number or
string) and hands the Request to the servicer the gRPC server also calls, so both transports run
the same pipeline and give the same answers. The answer is the JSON of the Response, with the
fields the gateway wrote.

Every answer, errors included, is JSON carrying `err_no` and `err_msg`, so clients need one
error path: a request that never reaches the pipeline (not JSON, not the JSON form, wrong path
or method, too large, malformed HTTP) is answered with an HTTP error status and that body.

What a client can make the server hold is bounded, because the port faces the internet:
* connections: at most `max_connections`; when all are taken, the connection idle (or stuck in
  its request head) the longest is closed to make room, else the newcomer gets 503;
* time: a request's head and body must arrive within `request_read_timeout_s` of its first byte
  (ConnectionWatch closes the read side at the deadline), so a client trickling a byte at a time
  holds a connection for that long at most; an idle keep-alive connection for `idle_timeout_s`;
* memory: a body over the request limit is refused unread; a body's JSON is pre-scanned at C
  speed so that no body can make json.loads allocate more than MAX_JSON_SEPARATORS values;
  at most `max_pending` requests hold a body at once (503 with Retry-After past it), and a
  request waits at most `slot_wait_s` for a pipeline slot (503 with Retry-After).
"""
from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import (  # noqa: E402
    UNAVAILABLE_CODE,
    CodedError,
    InvalidInputError,
    LimitExceededError,
)
from serving.core.preprocess.decode_limits import DecodeLimits  # noqa: E402
from serving.pipeline.protocol import (  # noqa: E402
    OPTIONS_ALLOWANCE_BYTES,
    check_envelope,
    max_request_bytes,
    quote,
)

log = logging.getLogger(__name__)

# Refusals in progress at most; each answers 503 and reads what its client still sends (for up to
# REFUSAL_DRAIN_S), since closing a socket with unread data resets it before the client has read
# the answer. Past this many, a connection is closed unanswered.
MAX_REFUSALS = 16
REFUSAL_DRAIN_S = 2.0
# A connection must have been idle (or in its request head) this long before it is closed to
# make room for a new one: a client that has just connected is never the one evicted.
MIN_EVICTABLE_AGE_S = 0.25
# How long a new connection waits for the slot of the connection evicted for it.
EVICTION_WAIT_S = 5.0
# Bytes of JSON syntax allowed around the values (key names, quotes, commas, logid, spaces)
# on top of protocol.max_request_bytes.
JSON_ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
# Upper bound on the JSON values of a body: ',' '[' '{' counted in its bytes (a value after the
# first of a container needs a ',', a container a bracket). The JSON form needs a dozen; base64
# holds none of these bytes, so counting them costs a pass at C speed and nothing per value.
MAX_JSON_SEPARATORS = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class HttpSettings:
    """The `http` section of the config: bounds on what one client can hold."""

    request_read_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    max_connections: int = 256
    max_pending: int = 32
    slot_wait_s: float = 30.0
    retry_after_s: int = 2

    def __post_init__(self) -> None:
        for name in ("request_read_timeout_s", "idle_timeout_s", "slot_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: seconds > 0, got {value!r}")
        for name in ("max_connections", "max_pending", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: an integer >= 1, got {value!r}")


def max_body_bytes(max_request_chars: int) -> int:
    """The largest body read for a request whose values may hold `max_request_chars` characters
    (protocol.max_request_bytes): those values plus the JSON around them. Past it, the body is
    refused unread (413), so an oversized upload costs neither the memory nor the time to
    receive it."""
    return max_request_chars + JSON_ENVELOPE_ALLOWANCE_BYTES


class Servicer(Protocol):
    """What the front end calls: serving.pipeline.server.ObservedServicer."""

    def inference(self, request: Any, context: Any, *, slot_wait_s: float | None = None) -> Any:
        """The Response; err_no UNAVAILABLE_CODE when no pipeline slot freed up in time."""

    def refuse(self, request: Any, error: CodedError) -> Any:
        """The Response refusing `request` with `error`, observed like any other answer."""


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


@dataclass
class ParsedBody:
    """A Request from the JSON form, and how many Paddle Serving `tensors` it listed (they are
    counted, never built: this service refuses them)."""

    request: Any
    tensor_count: int = 0


def _string_list(document: dict[str, Any], name: str, check_text: bool) -> list[str]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _rejected(f"{name!r} must be a list of strings")
    if check_text:
        for item in value:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _rejected(f"{name!r} holds a lone UTF-16 surrogate escape (such as "
                                f"\\ud800); send valid Unicode text") from None
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


def _check_json_size(body: bytes) -> None:
    """Refuses a body that would make json.loads allocate more than MAX_JSON_SEPARATORS values,
    before it is parsed (a 4 MB body of empty objects is a million of them)."""
    separators = body.count(b",") + body.count(b"[") + body.count(b"{")
    if separators > MAX_JSON_SEPARATORS:
        raise _rejected(f"{separators} JSON separators (',' '[' '{{') exceed the limit of "
                        f"{MAX_JSON_SEPARATORS}; the JSON form needs a few: send 'key' and "
                        f"'value' lists of strings")


def _load_json(body: bytes) -> dict[str, Any]:
    _check_json_size(body)
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise _rejected("not UTF-8 text; send JSON") from None
    except RecursionError:
        raise _rejected("JSON nested too deeply; send a flat object with 'key' and 'value' "
                        "lists") from None
    except ValueError as exc:
        raise _rejected(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _rejected(f"a JSON object with 'key' and 'value' lists expected, got "
                        f"{type(document).__name__}")
    return document


def parse_request_body(body: bytes) -> ParsedBody:
    """A Paddle Serving Request from the JSON request body, with the Go gateway's rules: an
    empty body is an empty request, unknown fields are ignored, `logid` may be a number or a
    string. Anything else that is not the JSON form is refused with a message naming the problem.

    Written out rather than protobuf's json_format.ParseDict, which is many times slower than
    json.loads on the long base64 string of an upload."""
    request = pipeline_service_pb2.Request()
    if not body.strip():
        return ParsedBody(request)
    document = _load_json(body)
    check_text = _SURROGATE_ESCAPE.search(body) is not None  # protobuf refuses lone surrogates
    request.key.extend(_string_list(document, "key", check_text))
    request.value.extend(_string_list(document, "value", check_text))
    request.logid = _logid(document)
    tensors = document.get("tensors")
    if tensors is None:
        tensors = []
    if not isinstance(tensors, list):
        raise _rejected("'tensors' must be a list")
    return ParsedBody(request, tensor_count=len(tensors))


def _answer_json(err_no: int, message: str, keys: list[str], values: list[str]) -> bytes:
    """Every answer's JSON: the fields of a Paddle Serving Response."""
    return json.dumps({"err_no": err_no, "err_msg": message, "key": keys, "value": values,
                       "tensors": []}).encode()


def response_json(response: Any) -> bytes:
    """The JSON answer for a Paddle Serving Response."""
    return _answer_json(response.err_no, response.err_msg, list(response.key),
                        list(response.value))


def error_json(err_no: int, message: str) -> bytes:
    return _answer_json(err_no, message, [], [])


@dataclass
class _Phase:
    """Where a connection is: `idle` (between requests), `head` (a request's first byte has
    arrived: its head and body must arrive by `deadline`), `work` (answering; no deadline)."""

    name: str = "idle"
    since: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    expired: bool = False
    evicted: bool = False


class ConnectionWatch:
    """The open connections of one server and their phases. One thread closes the read side of a
    connection whose request is still arriving at its deadline (that wakes its blocked read at
    once, and the answer can still be written); the accepting thread asks it to evict the
    connection idle or in its head the longest when every slot is taken."""

    def __init__(self, read_timeout_s: float) -> None:
        self.read_timeout_s = read_timeout_s
        self._phases: dict[socket.socket, _Phase] = {}
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
        self._thread.start()

    def enter(self, connection: socket.socket, phase: str) -> None:
        """Moves `connection` to `phase`; entering `head` starts the request's deadline."""
        with self._changed:
            state = self._phases.setdefault(connection, _Phase())
            state.name, state.since = phase, time.monotonic()
            state.deadline = state.since + self.read_timeout_s if phase == "head" else None
            self._changed.notify()

    def leave(self, connection: socket.socket) -> None:
        with self._changed:
            self._phases.pop(connection, None)

    def state(self, connection: socket.socket) -> _Phase:
        with self._changed:
            return self._phases.get(connection) or _Phase()

    def evict_one(self) -> bool:
        """Closes the connection idle or in its request head the longest (at least
        MIN_EVICTABLE_AGE_S); False when there is none."""
        now = time.monotonic()
        with self._changed:
            candidates = [(state.since, index, connection)
                          for index, (connection, state) in enumerate(self._phases.items())
                          if state.name in ("idle", "head") and not state.evicted
                          and now - state.since >= MIN_EVICTABLE_AGE_S]
            if not candidates:
                return False
            _, _, victim = min(candidates)
            self._phases[victim].evicted = True
        _shutdown(victim, socket.SHUT_RDWR)
        return True

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                now = time.monotonic()
                pending = []
                for connection, state in self._phases.items():
                    if state.deadline is None or state.expired:
                        continue
                    if state.deadline <= now:
                        state.expired = True
                        _shutdown(connection, socket.SHUT_RD)
                    else:
                        pending.append(state.deadline)
                self._changed.wait(timeout=min(pending) - now if pending else None)


def _shutdown(connection: socket.socket, how: int) -> None:
    try:
        connection.shutdown(how)
    except OSError:
        pass  # already closed by its own thread


class JsonRequestHandler(BaseHTTPRequestHandler):
    """http.server's handler made safe to face the internet: every answer, http.server's own
    errors included, is the JSON error form; a request has an overall deadline (see
    ConnectionWatch); HEAD and OPTIONS get 405 with `Allow`. Subclasses set ALLOW and route."""

    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many requests on one connection
    # What a request line without a version is taken for: answers always carry a status line
    # (http.server's default, HTTP/0.9, would send the JSON body alone).
    default_request_version = "HTTP/1.1"
    server_version = "pptsm-serving"
    sys_version = ""
    ALLOW: ClassVar[str] = "POST"
    server: "BoundedHttpServer"

    def setup(self) -> None:
        self.timeout = self.server.settings.idle_timeout_s
        super().setup()

    def handle_one_request(self) -> None:
        """Waits for a request's first byte (up to idle_timeout_s), then reads and answers it
        with its deadline running."""
        watch = self.server.watch
        watch.enter(self.connection, "idle")
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except OSError:  # idle past idle_timeout_s, reset, or evicted
            self.close_connection = True
            return
        watch.enter(self.connection, "head")
        self.command = None  # a request whose line is unreadable has none
        super().handle_one_request()
        if watch.state(self.connection).expired:
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        """No `100 Continue` while parsing the head: `body_arrives` sends it once the request is
        accepted, so a refused upload is never sent."""
        return True

    def body_arrives(self) -> None:
        if self.headers.get("Expect", "").lower() == "100-continue":
            super().handle_expect_100()

    def work_begins(self) -> None:
        """The request has fully arrived: its read deadline no longer applies."""
        self.server.watch.enter(self.connection, "work")

    def deadline_passed(self) -> bool:
        return self.server.watch.state(self.connection).expired

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's errors (bad request line or header, unknown method...) in the JSON
        form; a request past its deadline gets 408 instead; an evicted one nothing."""
        self.close_connection = True
        state = self.server.watch.state(self.connection)
        if state.evicted:
            return
        if state.expired:
            self.answer(HTTPStatus.REQUEST_TIMEOUT, error_json(InvalidInputError.CODE,
                                                               self.timeout_message()))
            return
        text = message or HTTPStatus(code).phrase
        # Every error http.server detects is in what the client sent.
        err_no = (UNAVAILABLE_CODE if code == HTTPStatus.SERVICE_UNAVAILABLE
                  else InvalidInputError.CODE)
        self.answer(HTTPStatus(code), error_json(err_no, f"HTTP request: {text}"))

    def timeout_message(self) -> str:
        return (f"request: not received within {self.server.watch.read_timeout_s:g} s of its "
                f"first byte (http.request_read_timeout_s)")

    def answer(self, status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> None:
        """The answer (JSON unless told); HEAD gets the headers only."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client is gone

    def refuse_method(self) -> None:
        """405 with `Allow` for a method this endpoint does not serve."""
        self.close_connection = True
        self.answer(HTTPStatus.METHOD_NOT_ALLOWED, error_json(
            InvalidInputError.CODE, f"{self.command} is not supported; {self.usage()}"),
            {"Allow": self.ALLOW})

    def usage(self) -> str:
        return ""

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST = \
        refuse_method  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Silent: every request gets its line in the service's request log instead."""


class BoundedHttpServer(ThreadingHTTPServer):
    """One thread per connection, at most `settings.max_connections` of them (see the module
    docstring for how a full server makes room), each request under its read deadline."""

    daemon_threads = True
    block_on_close = False
    # Listen backlog. socketserver's 5 makes the kernel hold back the handshakes of a burst of
    # connections for seconds (SYN-ACK retransmits), so that they are neither served nor
    # refused meanwhile.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[JsonRequestHandler],
                 settings: HttpSettings) -> None:
        super().__init__(address, handler)
        self.settings = settings
        self.max_connections = settings.max_connections
        self.watch = ConnectionWatch(settings.request_read_timeout_s)
        self._connections = threading.BoundedSemaphore(settings.max_connections)
        self._refusals = threading.BoundedSemaphore(MAX_REFUSALS)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs in the accepting thread: a connection over the limit takes the place of the one
        idle the longest, or is refused."""
        if self._connections.acquire(blocking=False):
            self.watch.enter(request, "idle")
            super().process_request(request, client_address)
        elif self.watch.evict_one():
            threading.Thread(target=self._serve_after_eviction, args=(request, client_address),
                             daemon=True).start()
        else:
            self._refuse_or_drop(request)

    def _serve_after_eviction(self, request: Any, client_address: Any) -> None:
        """Serves `request` in the slot the evicted connection gives back (its thread sees its
        socket shut down at once, but may take a moment to be scheduled)."""
        if self._connections.acquire(timeout=EVICTION_WAIT_S):
            self.watch.enter(request, "idle")
            self.process_request_thread(request, client_address)
        else:
            self._refuse_or_drop(request)

    def _refuse_or_drop(self, request: Any) -> None:
        if self._refusals.acquire(blocking=False):
            threading.Thread(target=self._refuse, args=(request,), daemon=True).start()
        else:
            self.shutdown_request(request)

    def _refuse(self, connection: Any) -> None:
        body = error_json(UNAVAILABLE_CODE, f"too many open connections (at most "
                                            f"{self.max_connections}); retry later")
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: {self.settings.retry_after_s}\r\n"
                f"Connection: close\r\n\r\n").encode()
        try:
            connection.settimeout(REFUSAL_DRAIN_S)
            connection.sendall(head + body)
            connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + REFUSAL_DRAIN_S
            while connection.recv(65536) and time.monotonic() < deadline:
                pass  # until the client closes, or the drain time is up
        except OSError:
            pass  # the client is gone, or too slow to wait for
        finally:
            connection.close()
            self._refusals.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.watch.leave(request)
            self._connections.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr: a client that hangs up
        or stalls ends only its own connection."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("HTTP connection from %s ended: %s", client_address[0],
                     type(error).__name__)
        else:
            log.error("HTTP connection from %s failed: %s: %s", client_address[0],
                      type(error).__name__, error)

    def start(self, name: str) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stops accepting and closes the listening socket."""
        self.shutdown()
        self.server_close()
        self.watch.stop()


class _PredictionHandler(JsonRequestHandler):
    server: "RestServer"

    def usage(self) -> str:
        return f"POST the request as JSON to {self.server.path}"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        try:
            self._check_head()
        except RequestRejected as rejected:
            self.close_connection = True  # the body is never read
            self.answer(rejected.status, error_json(rejected.err_no, rejected.message))
            return
        if not self.server.pending.acquire(blocking=False):
            self.close_connection = True
            self._unavailable(f"too many requests waiting (at most "
                              f"{self.server.settings.max_pending}, http.max_pending); retry later")
            return
        try:
            self._serve_body()
        finally:
            self.server.pending.release()

    def _serve_body(self) -> None:
        try:
            parsed = self._read_request()
        except RequestRejected as rejected:
            self.close_connection = True
            if self.deadline_passed():
                rejected = RequestRejected(HTTPStatus.REQUEST_TIMEOUT, InvalidInputError.CODE,
                                           self.timeout_message())
            self.answer(rejected.status, error_json(rejected.err_no, rejected.message))
            return
        response = self.server.call(parsed)
        if response is None:
            self.close_connection = True
            self._unavailable("the service is stopping; retry on another instance")
        elif response.err_no == UNAVAILABLE_CODE:
            self.answer(HTTPStatus.SERVICE_UNAVAILABLE, response_json(response),
                        {"Retry-After": str(self.server.settings.retry_after_s)})
        else:
            self.answer(HTTPStatus.OK, response_json(response))

    def _unavailable(self, message: str) -> None:
        self.answer(HTTPStatus.SERVICE_UNAVAILABLE, error_json(UNAVAILABLE_CODE, message),
                    {"Retry-After": str(self.server.settings.retry_after_s)})

    def _check_head(self) -> None:
        """Path, framing and size, from the head alone."""
        if self.path.split("?", 1)[0] != self.server.path:
            raise RequestRejected(HTTPStatus.NOT_FOUND, InvalidInputError.CODE,
                                  f"no such endpoint {self.path[:80]!r}; POST to "
                                  f"{self.server.path}")
        if self.headers.get_all("Transfer-Encoding"):
            raise RequestRejected(HTTPStatus.LENGTH_REQUIRED, InvalidInputError.CODE,
                                  "chunked request bodies are not supported; send Content-Length")
        self.body_length = self._content_length()
        limit = self.server.max_body_bytes
        if self.body_length > limit:
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, LimitExceededError.CODE,
                f"request: {self.body_length} bytes exceed the limit of {limit} (the base64 of "
                f"request_limits.max_bytes plus "
                f"{OPTIONS_ALLOWANCE_BYTES + JSON_ENVELOPE_ALLOWANCE_BYTES} for the options and "
                f"the JSON around them)")

    def _content_length(self) -> int:
        """The one Content-Length, digits only (no sign, no list, no hex); absent: 0."""
        values = self.headers.get_all("Content-Length") or []
        if len(values) > 1:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  f"Content-Length: sent {len(values)} times; send it once")
        text = values[0].strip(" \t") if values else "0"
        if not _CONTENT_LENGTH.fullmatch(text):
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  f"Content-Length: {quote(text)} is not a byte count")
        return int(text)

    def _read_request(self) -> ParsedBody:
        self.body_arrives()
        length = self.body_length
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  f"request body: {len(body)} of {length} bytes arrived")
        self.work_begins()
        parsed = parse_request_body(body)
        parsed.request.name = self.server.service_name
        return parsed


class RestServer(BoundedHttpServer):
    """The prediction endpoint. The servicer bounds the requests in the pipeline
    (serving.pipeline.server.ObservedServicer); this server bounds those waiting for it."""

    def __init__(self, address: tuple[str, int], servicer: Servicer, *, service_name: str,
                 limits: DecodeLimits, settings: HttpSettings = HttpSettings()) -> None:
        super().__init__(address, _PredictionHandler, settings)
        self.servicer = servicer
        self.service_name = service_name
        self.path = f"/{service_name}/prediction"
        self.limits = limits
        self.max_request_chars = max_request_bytes(limits)
        self.max_body_bytes = max_body_bytes(self.max_request_chars)
        self.pending = threading.BoundedSemaphore(settings.max_pending)
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    def call(self, parsed: ParsedBody) -> Any | None:
        """The servicer's Response, or None once the server is stopping. The envelope (pairing,
        repeated keys, tensors, size) is checked here, before the request queues for a slot."""
        with self._idle:
            if self._stopping:
                return None
            self._in_flight += 1
        try:
            request = parsed.request
            try:
                check_envelope(request.key, request.value, tensor_count=parsed.tensor_count,
                               limits=self.limits)
            except CodedError as error:
                return self.servicer.refuse(request, error)
            return self.servicer.inference(request, None, slot_wait_s=self.settings.slot_wait_s)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def start(self, name: str = "rest-frontend") -> threading.Thread:
        return super().start(name)

    def stop(self, grace_s: float) -> bool:
        """Stops taking connections and requests, waits up to `grace_s` for the requests in the
        pipeline; True if they all finished."""
        with self._idle:
            self._stopping = True
        self.close()
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace_s)

