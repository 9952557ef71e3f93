"""Runs the pipeline's gRPC server and REST front end with request observation and a graceful stop.

This is Paddle Serving 0.9's `PipelineServer.run_server` (its single-process branch, the only
one this service allows: `build_dag_each_worker: false`), rebuilt for two things the stock
method cannot do:

* every request, gRPC or REST, passes through `ObservedServicer`, which gives it a request id,
  counts it in the metrics and writes its log line (serving.pipeline.observer), and turns an exception
  that escapes the pipeline into an internal-error answer instead of a gRPC failure;
* REST is served by serving.pipeline.http_frontend in this process, not by Paddle Serving's Go gateway
  (see that module for the reason);
* `/metrics` is served by serving.pipeline.metrics_server, bounded like the REST port, not by the Flask
  development server Paddle Serving's DAG would start;
* gRPC requests are read by serving.pipeline.grpc_guard's deserializer, which refuses a message the
  service cannot mean (tensors, floods of entries, a long `name`) before protobuf builds it,
  under message limits tied to request_limits (`grpc_options`); the stock servicer's log lines,
  which carry the client's `name` in full, are not used;
* an internal error's answer names the stage and the request id only; the detail (Paddle
  Serving's own error text included) goes to the server log;
* SIGTERM / SIGINT stop the service gracefully. The stock method blocks in
  `wait_for_termination()` and dies on the signal, dropping requests in flight. Here both
  entry points stop taking new requests, the requests in flight finish (for at most
  `shutdown_grace_s`), and `serve` returns; the caller then ends the process with `exit_now`.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Any

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
import grpc  # noqa: E402
from paddle_serving_server.pipeline.pipeline_server import (  # noqa: E402
    PipelineServer,
    PipelineServicer,
)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.errors import (  # noqa: E402
    CodedError,
    InternalError,
    InvalidInputError,
    FRAMEWORK_OUTCOME,
    UNAVAILABLE_CODE,
    internal_error_message,
    outcome_of,
)
from serving.pipeline.grpc_guard import MAX_NAME_BYTES, RefusedRequest, deserialize_request  # noqa: E402
from serving.pipeline.health import Readiness  # noqa: E402
from serving.pipeline.http_base import HttpSettings  # noqa: E402
from serving.pipeline.http_frontend import RestServer  # noqa: E402
from serving.pipeline.metrics import serving_registry  # noqa: E402
from serving.pipeline.metrics_server import MetricsServer  # noqa: E402
from serving.pipeline.observer import RequestObserver  # noqa: E402
from serving.pipeline.protocol import max_request_bytes  # noqa: E402
from serving.core.metadata import ModelMeta  # noqa: E402
from serving.core.preprocess.decode_limits import DecodeLimits  # noqa: E402

log = logging.getLogger(__name__)

SERVICE_FULL_NAME = "baidu.paddle_serving.pipeline_serving.PipelineService"
# Room next to the values' limit (protocol.max_request_bytes) for the key names, the other
# fields and the protobuf framing of a gRPC Request.
GRPC_ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
# An answer is a few short strings (labels, scores, timings): 1 MiB is far more than it needs.
GRPC_MAX_SEND_BYTES = 1024 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A framework error's text is logged cut to this length (it may quote client text).
MESSAGE_LOG_CHARS = 2000


def grpc_options(max_request_chars: int) -> list[tuple[str, int]]:
    """gRPC message limits tied to request_limits: a message larger than the largest allowed
    request plus its envelope is refused by gRPC itself (RESOURCE_EXHAUSTED), unread."""
    return [("grpc.max_receive_message_length", max_request_chars + GRPC_ENVELOPE_ALLOWANCE_BYTES),
            ("grpc.max_send_message_length", GRPC_MAX_SEND_BYTES)]


def _hide_framework_detail(response: Any, request_id: str) -> None:
    """Paddle Serving's own failures (err_no 3000 and above: an op that raised inside the
    framework, a package error) carry the exception's text in err_msg; it is logged here with
    the request id and replaced by internal_error_message. The service's own codes (51-55) are
    written for the client and pass unchanged."""
    if response.err_no == 0 or outcome_of(response.err_no) != FRAMEWORK_OUTCOME:
        return
    log.error("request %s: Paddle Serving error %d: %s", request_id, response.err_no,
              response.err_msg[:MESSAGE_LOG_CHARS])
    response.err_msg = internal_error_message(None, request_id)


class ObservedServicer(PipelineServicer):
    """Paddle Serving's servicer with every request observed and always answered, and at most
    `max_in_flight` requests in the pipeline at once, whichever transport they came by (the
    others wait for a slot)."""

    def __init__(self, name: str, response_op: Any, conf: dict,
                 observer: RequestObserver, *, max_in_flight: int) -> None:
        super().__init__(name, response_op, conf)
        self._observer = observer
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def inference(self, request: Any, context: Any, *, slot_wait_s: float | None = None) -> Any:
        """The Response; with `slot_wait_s` (the REST front end), a request that finds no
        pipeline slot within that many seconds is answered err_no 503 instead of waiting on."""
        if isinstance(request, RefusedRequest):  # refused unparsed by serving.pipeline.grpc_guard
            return self.refuse(request, request.error)
        pending = self._observer.begin(request)
        try:
            if self._slots.acquire(timeout=slot_wait_s):
                try:
                    response = self._run(request)
                finally:
                    self._slots.release()
                _hide_framework_detail(response, pending.request_id)
            else:
                response = pipeline_service_pb2.Response(
                    err_no=UNAVAILABLE_CODE,
                    err_msg=f"the service is busy: no pipeline slot freed up within "
                            f"{slot_wait_s:g} s (http.slot_wait_s); retry later")
        except Exception:  # noqa: BLE001 - a client always gets an answer
            log.exception("request %s failed outside the pipeline's ops", pending.request_id)
            response = pipeline_service_pb2.Response(
                err_no=InternalError.CODE,
                err_msg=internal_error_message(None, pending.request_id))
        self._observer.finish(pending, response)
        return response

    def refuse(self, request: Any, error: CodedError) -> Any:
        """The Response refusing `request` with `error`, observed like any other answer."""
        pending = self._observer.begin(request)
        response = pipeline_service_pb2.Response(err_no=error.code, err_msg=error.message)
        self._observer.finish(pending, response)
        return response

    def probe(self, request: Any) -> Any:
        """The pipeline's answer to the service's own request (serving.pipeline.health's
        warm-up and pings): not observed, and not waiting for a slot, so that a probe measures
        the pipeline rather than the queue in front of it."""
        return self._dag_executor.call(request)

    def _run(self, request: Any) -> Any:
        """PipelineServicer.inference without its two log lines, which carry `request.name` in
        full: a client's text is never logged unbounded (the deserializer also refuses a name
        over MAX_NAME_BYTES)."""
        if request.name not in ("", self._name):
            return pipeline_service_pb2.Response(
                err_no=InvalidInputError.CODE,
                err_msg=f"name: this service is {self._name!r}, not "
                        f"{request.name[:MAX_NAME_BYTES]!r}; send its name or leave it empty")
        return self._dag_executor.call(request)


def _grpc_server(servicer: ObservedServicer, *, workers: int, max_request_chars: int,
                 address: str) -> grpc.Server:
    """The gRPC server of PipelineService/inference, with serving.pipeline.grpc_guard as its request
    deserializer (what pipeline_service_pb2_grpc registers, but for that)."""
    handler = grpc.unary_unary_rpc_method_handler(
        servicer.inference, request_deserializer=deserialize_request,
        response_serializer=pipeline_service_pb2.Response.SerializeToString)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=grpc_options(max_request_chars))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE_FULL_NAME, {"inference": handler}),))
    server.add_insecure_port(address)
    return server


def exit_now(status: int) -> None:
    """Ends the process at once, once its logs are flushed. Used after the grace period: a
    decode abandoned at its timeout may still run in a non-daemon pool thread, which a normal
    interpreter exit would wait for (past the orchestrator's kill timeout)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _without_paddle_metrics_app(conf: dict) -> dict:
    """`conf` with Paddle Serving's own metrics app off (its DAG would start Flask's development
    server, unbounded, on 0.0.0.0); serving.pipeline.metrics_server serves the same registry instead."""
    return {**conf, "dag": {**conf.get("dag", {}), "enable_prometheus": False}}


def _start_metrics(server: PipelineServer, servicer: ObservedServicer, host: str,
                   settings: HttpSettings) -> MetricsServer | None:
    """The bounded /metrics server when the config enables metrics; it folds the tracer's
    summaries into Paddle Serving's pd_* counters as Paddle Serving's app did."""
    dag = server._conf.get("dag", {})
    if not dag.get("enable_prometheus"):
        return None
    tracer = servicer._dag_executor._tracer
    if tracer is not None:
        tracer.set_enable_dict(True)
    metrics = MetricsServer((host, dag["prometheus_port"]), serving_registry(),
                            settings=settings, tracer=tracer)
    metrics.start()
    return metrics


def serve(server: PipelineServer, observer: RequestObserver, *, shutdown_grace_s: float,
          limits: DecodeLimits, rpc_host: str = "[::]",
          http_settings: HttpSettings = HttpSettings(), http_host: str = "0.0.0.0",
          metrics_host: str = "0.0.0.0", meta: ModelMeta | None = None,
          metadata: dict[str, Any] | None = None) -> None:
    """Serves `server` (after its `prepare_server`) until SIGTERM or SIGINT, then stops
    gracefully (see the module docstring) and returns. `limits` bound a REST body and a gRPC
    message (protocol.max_request_bytes); gRPC listens on
    `rpc_host`, REST on `http_host`, metrics on `metrics_host`; `http_settings` bound what REST
    and metrics clients may hold; `meta` drives the readiness warm-up (serving.pipeline.health)
    and `metadata` is what GET /<service>/metadata answers."""
    stop_requested = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop_requested.set())
    servicer = ObservedServicer(server._name, server._response_op,
                                _without_paddle_metrics_app(server._conf), observer,
                                max_in_flight=server._worker_num)
    metrics = _start_metrics(server, servicer, metrics_host, http_settings)
    grpc_server = _grpc_server(servicer, workers=server._worker_num,
                               max_request_chars=max_request_bytes(limits),
                               address=f"{rpc_host}:{server._rpc_port}")
    grpc_server.start()
    rest = None
    if server._http_port > 0:
        readiness = Readiness(servicer.probe, meta) if meta is not None else None
        rest = RestServer((http_host, server._http_port), servicer, service_name=server._name,
                          limits=limits, settings=http_settings, metadata=metadata,
                          readiness=readiness)
        rest.start()
        if readiness is not None:
            readiness.start()
    # A timed wait: the signal handler runs in this thread, between waits.
    while not stop_requested.wait(timeout=1.0):
        pass
    print(f"stopping: finishing the requests in flight (at most {shutdown_grace_s:g} s)",
          flush=True)
    grpc_stopped = grpc_server.stop(grace=shutdown_grace_s)
    if rest is not None:
        rest.stop(shutdown_grace_s)
    if metrics is not None:
        metrics.close()
    # Bounded: past the grace, gRPC cancels what is left; the margin lets it close.
    grpc_stopped.wait(timeout=shutdown_grace_s + 2.0)
    print("stopped", flush=True)
