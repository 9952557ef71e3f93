"""The REST front end, served from the service's own process: predictions over POST in three
forms, and the GET routes the front end answers itself.

    POST /pptsm/prediction (and every path of http.prediction_paths, e.g. PaddleVideo's
         /video/prediction): Paddle Serving's JSON form (serving.pipeline.json_form), the video
         file as the body, or multipart/form-data (serving.pipeline.uploads)
    GET  /v2/health/live, /v2/health/ready   liveness and readiness (serving.pipeline.health)
    GET  /pptsm/metadata                     the model (serving.pipeline.model_info)
    GET  /openapi.json                       the OpenAPI 3.1 document (serving.pipeline.openapi)
    GET  /                                   the page in serving/pipeline/static/index.html

Why not Paddle Serving's Go gateway: it converts every request from JSON to protobuf in a second
process and forwards it over a loopback gRPC connection, which costs a fixed delay plus time
per MB of request (docs/speed.md has the figures). This front end hands the
Request to the servicer the gRPC server also calls, so both transports run the same pipeline
and give the same answers; a plain upload reaches it as bytes, never as base64.

The GET routes never enter the model's queue and are neither counted in the latency metrics nor
written to the request log: a probe answers at once under full load. What a POST may hold is
bounded on top of serving.pipeline.http_base's bounds: a body over its form's limit is refused
unread (413) by its Content-Length; at most `max_pending` requests hold a body at once (503
with Retry-After past it), and a request waits at most `slot_wait_s` for a pipeline slot (503).
"""
from __future__ import annotations

import json
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Protocol

from serving.core.errors import (
    UNAVAILABLE_CODE,
    CodedError,
    InvalidInputError,
    LimitExceededError,
)
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.pipeline.health import Readiness
from serving.pipeline.healthcheck import READY_PATH
from serving.pipeline.http_base import (
    BoundedHttpServer,
    HttpSettings,
    JsonRequestHandler,
    RequestRejected,
    error_json,
    response_json,
)
from serving.pipeline.json_form import (
    JSON_ENVELOPE_ALLOWANCE_BYTES,
    ParsedBody,
    max_body_bytes,
    parse_request_body,
)
from serving.pipeline.openapi import (
    LIVE_PATH,
    OPENAPI_PATH,
    PAGE_PATH,
    openapi_document,
)
from serving.pipeline.protocol import (
    OPTION_KEYS,
    OPTIONS_ALLOWANCE_BYTES,
    check_envelope,
    max_request_bytes,
)
from serving.pipeline.uploads import (
    BINARY,
    JSON,
    MULTIPART,
    attached_request,
    body_form,
    body_limit,
    query_options,
    read_multipart,
)

PAGE_FILE = Path(__file__).resolve().parent / "static" / "index.html"

GetAnswer = tuple[HTTPStatus, bytes, str]  # status, body, content type


class Servicer(Protocol):
    """What the front end calls: serving.pipeline.server.ObservedServicer."""

    def inference(self, request: Any, context: Any, *, slot_wait_s: float | None = None) -> Any:
        """The Response; err_no UNAVAILABLE_CODE when no pipeline slot freed up in time."""

    def refuse(self, request: Any, error: CodedError) -> Any:
        """The Response refusing `request` with `error`, observed like any other answer."""


def _json_answer(document: Any) -> bytes:
    return json.dumps(document).encode()


class _FrontDoorHandler(JsonRequestHandler):
    server: "RestServer"

    def usage(self) -> str:
        return (f"POST a video to {self.server.prediction_paths[0]}; GET {OPENAPI_PATH} "
                f"describes every route")

    def _route_path(self) -> str:
        return self.path.split("?", 1)[0]

    def _not_found(self) -> None:
        self.answer_rejected(RequestRejected(
            HTTPStatus.NOT_FOUND, InvalidInputError.CODE,
            f"no such endpoint {self.path[:80]!r}; {self.usage()}"))

    def refuse_method(self) -> None:
        """405 with `Allow` for a method the path does not serve; 404 for an unknown path."""
        path = self._route_path()
        allow = ("POST" if path in self.server.prediction_paths
                 else "GET" if path in self.server.get_routes else None)
        if allow is None:
            self._not_found()
            return
        self.close_connection = True
        self.answer(HTTPStatus.METHOD_NOT_ALLOWED, error_json(
            InvalidInputError.CODE, f"{self.command} is not supported; {allow} {path}"),
            {"Allow": allow})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = refuse_method  # noqa: N815

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        # A GET body is never read: the connection cannot serve another request after it.
        self.close_connection = self.close_connection or bool(self.headers.get("Content-Length"))
        path = self._route_path()
        route = self.server.get_routes.get(path)
        if route is None:
            self.refuse_method()
            return
        self.work_begins()
        status, body, content_type = route()
        self.answer(status, body, content_type=content_type)

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        path = self._route_path()
        if path not in self.server.prediction_paths:
            self.refuse_method()
            return
        try:
            self._check_head()
        except RequestRejected as rejected:
            self.answer_rejected(rejected)  # the body is never read
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
            if self.deadline_passed():
                rejected = RequestRejected(HTTPStatus.REQUEST_TIMEOUT, InvalidInputError.CODE,
                                           self.timeout_message())
            self.answer_rejected(rejected)
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
        """Framing, form and size, from the head alone; a binary upload's options too."""
        if self.headers.get_all("Transfer-Encoding"):
            raise RequestRejected(HTTPStatus.LENGTH_REQUIRED, InvalidInputError.CODE,
                                  "chunked request bodies are not supported; send Content-Length")
        self.form, self.form_params = body_form(self.headers.get("Content-Type"))
        self.body_length = self.content_length()
        if self.form == BINARY:
            self.options = query_options(self.path.partition("?")[2])
        limit = self.server.body_limits[self.form]
        if self.body_length > limit:
            raise RequestRejected(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, LimitExceededError.CODE,
                                  f"request: {self.body_length} bytes exceed the limit of {limit}"
                                  f" ({self.server.limit_reasons[self.form]})")

    def _read_body(self) -> bytes:
        length = self.body_length
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise RequestRejected(HTTPStatus.BAD_REQUEST, InvalidInputError.CODE,
                                  f"request body: {len(body)} of {length} bytes arrived")
        return body

    def _read_request(self) -> ParsedBody:
        self.body_arrives()
        if self.form == MULTIPART:
            parsed = read_multipart(self.rfile, self.body_length, self.form_params)
        elif self.form == BINARY:
            parsed = attached_request(self._read_body(), self.options)
        else:
            parsed = parse_request_body(self._read_body())
        self.work_begins()
        parsed.request.name = self.server.service_name
        return parsed


class RestServer(BoundedHttpServer):
    """The front end. The servicer bounds the requests in the pipeline
    (serving.pipeline.server.ObservedServicer); this server bounds those waiting for it.
    `metadata` (serving.pipeline.model_info) is served at /<service>/metadata; `readiness`
    decides /v2/health/ready (without one, ready means not stopping)."""

    def __init__(self, address: tuple[str, int], servicer: Servicer, *, service_name: str,
                 limits: DecodeLimits, settings: HttpSettings = HttpSettings(),
                 metadata: dict[str, Any] | None = None,
                 readiness: Readiness | None = None) -> None:
        super().__init__(address, _FrontDoorHandler, settings)
        self.servicer = servicer
        self.service_name = service_name
        self.prediction_paths = settings.prediction_paths
        self.limits = limits
        self.max_request_chars = max_request_bytes(limits)
        self.body_limits = {JSON: max_body_bytes(self.max_request_chars),
                            BINARY: body_limit(BINARY, limits.max_bytes),
                            MULTIPART: body_limit(MULTIPART, limits.max_bytes)}
        self.limit_reasons = {
            JSON: (f"the base64 of request_limits.max_bytes plus "
                   f"{OPTIONS_ALLOWANCE_BYTES + JSON_ENVELOPE_ALLOWANCE_BYTES} for the options "
                   f"and the JSON around them"),
            BINARY: "request_limits.max_bytes",
            MULTIPART: (f"request_limits.max_bytes plus {OPTIONS_ALLOWANCE_BYTES} for the "
                        f"options and the multipart framing")}
        self.pending = threading.BoundedSemaphore(settings.max_pending)
        self.metadata = metadata
        self.readiness = readiness
        self.openapi = _json_answer(openapi_document(
            title=f"{service_name} ({metadata['name']} {metadata['version']})" if metadata
            else service_name,
            version=metadata["version"] if metadata else "0",
            prediction_paths=self.prediction_paths,
            metadata_path=f"/{service_name}/metadata", option_keys=OPTION_KEYS,
            max_bytes=limits.max_bytes))
        self.get_routes: dict[str, Callable[[], GetAnswer]] = {
            LIVE_PATH: lambda: (HTTPStatus.OK, _json_answer({"live": True}), "application/json"),
            READY_PATH: self._ready,
            f"/{service_name}/metadata": self._metadata,
            OPENAPI_PATH: lambda: (HTTPStatus.OK, self.openapi, "application/json"),
            PAGE_PATH: self._page,
        }
        self._idle = threading.Condition()
        self._in_flight = 0
        self._stopping = False

    @property
    def is_stopping(self) -> bool:
        return self._stopping

    def _ready(self) -> GetAnswer:
        ready, reason = (self.readiness.state() if self.readiness is not None
                         else (True, ""))
        if self._stopping:
            ready, reason = False, "stopping: finishing the requests in flight"
        if not ready:
            return (HTTPStatus.SERVICE_UNAVAILABLE, _json_answer(
                {"ready": False, "err_no": UNAVAILABLE_CODE, "err_msg": reason}),
                "application/json")
        model = ({"name": self.metadata["name"], "version": self.metadata["version"]}
                 if self.metadata else {"name": self.service_name, "version": "0"})
        return HTTPStatus.OK, _json_answer({"ready": True, "model": model}), "application/json"

    def _metadata(self) -> GetAnswer:
        if self.metadata is None:
            return (HTTPStatus.NOT_FOUND, error_json(InvalidInputError.CODE,
                                                     "this front end serves no model metadata"),
                    "application/json")
        return HTTPStatus.OK, _json_answer(self.metadata), "application/json"

    def _page(self) -> GetAnswer:
        try:
            return HTTPStatus.OK, PAGE_FILE.read_bytes(), "text/html; charset=utf-8"
        except OSError:
            return (HTTPStatus.NOT_FOUND, error_json(
                InvalidInputError.CODE, f"no page installed; {OPENAPI_PATH} lists the routes"),
                "application/json")

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
        if self.readiness is not None:
            self.readiness.stop()
        self.close()
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace_s)
