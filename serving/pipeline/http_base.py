"""The bounded HTTP machinery every port of this service shares (the REST front end,
serving.pipeline.http_frontend, and the metrics port, serving.pipeline.metrics_server):
http.server made safe to face the internet, every answer JSON.

Every answer, errors included, carries `err_no` and `err_msg` where it is an error, so clients
need one error path: a request that never reaches the pipeline (wrong path or method, too
large, malformed HTTP) is answered with an HTTP error status and that body.

What a client can make the server hold is bounded, because the port faces the internet:
* connections: at most `max_connections`; when all are taken, the connection idle (or stuck in
  its request head) the longest is closed to make room, else the newcomer gets 503;
* time: a request's head and body must arrive within `request_read_timeout_s` of its first byte
  (ConnectionWatch closes the read side at the deadline), so a client trickling a byte at a time
  holds a connection for that long at most; an idle keep-alive connection for `idle_timeout_s`.
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
from typing import Any, ClassVar

from serving.core.errors import UNAVAILABLE_CODE, InvalidInputError
from serving.pipeline.healthcheck import SERVICE_NAME
from serving.pipeline.protocol import quote

log = logging.getLogger(__name__)

# REFUSAL_DRAIN_S), since closing a socket with unread data resets it before the client has read
# the answer. Past this many, a connection is closed unanswered.
MAX_REFUSALS = 16
REFUSAL_DRAIN_S = 2.0
# A connection must have been idle (or in its request head) this long before it is closed to
# make room for a new one: a client that has just connected is never the one evicted.
MIN_EVICTABLE_AGE_S = 0.25
# How long a new connection waits for the slot of the connection evicted for it.
EVICTION_WAIT_S = 5.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")


@dataclass(frozen=True)
class HttpSettings:
    """The `http` section of the config: bounds on what one client can hold."""

    request_read_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    max_connections: int = 256
    max_pending: int = 32
    slot_wait_s: float = 30.0
    retry_after_s: int = 2
    # The paths predictions are POSTed to: the service's own and PaddleVideo's, whose
    # deploy/python_serving clients post to /video/prediction.
    prediction_paths: tuple[str, ...] = (f"/{SERVICE_NAME}/prediction", "/video/prediction")

    def __post_init__(self) -> None:
        paths = self.prediction_paths
        if isinstance(paths, str) or not isinstance(paths, (list, tuple)) or not paths or not all(
                isinstance(path, str) and _PATH.fullmatch(path) for path in paths):
            raise ValueError(f"prediction_paths: a list of paths such as /pptsm/prediction, "
                             f"got {paths!r}")
        object.__setattr__(self, "prediction_paths", tuple(paths))  # YAML gives a list
        for name in ("request_read_timeout_s", "idle_timeout_s", "slot_wait_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: seconds > 0, got {value!r}")
        for name in ("max_connections", "max_pending", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: an integer >= 1, got {value!r}")


class RequestRejected(Exception):
    """A request refused before the pipeline; `status` is the HTTP status to answer with."""

    def __init__(self, status: HTTPStatus, err_no: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.err_no = err_no
        self.message = message


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

    def content_length(self) -> int:
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

    def answer_rejected(self, rejected: RequestRejected) -> None:
        """The error answer of `rejected`; the connection closes, as its body may be unread."""
        self.close_connection = True
        self.answer(rejected.status, error_json(rejected.err_no, rejected.message))

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
