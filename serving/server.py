"""Runs the pipeline's gRPC server and REST front end with request observation and a graceful stop.

This is Paddle Serving 0.9's `PipelineServer.run_server` (its single-process branch, the only
one this service allows: `build_dag_each_worker: false`), rebuilt for two things the stock
method cannot do:

* every request, gRPC or REST, passes through `ObservedServicer`, which gives it a request id,
  counts it in the metrics and writes its log line (serving.observer), and turns an exception
  that escapes the pipeline into an internal-error answer instead of a gRPC failure;
* REST is served by serving.http_frontend in this process, not by Paddle Serving's Go gateway
  (see that module for the measured reason);
* SIGTERM / SIGINT stop the service gracefully. The stock method blocks in
  `wait_for_termination()` and dies on the signal, dropping requests in flight. Here both
  entry points stop taking new requests, the requests in flight finish (for at most
  `shutdown_grace_s`), and `serve` returns.
"""
from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from typing import Any

from serving import compat  # noqa: F401  (must precede the Paddle Serving import)
import grpc  # noqa: E402
from paddle_serving_server.pipeline.pipeline_server import (  # noqa: E402
    PipelineServer,
    PipelineServicer,
)
from paddle_serving_server.pipeline.proto import (  # noqa: E402
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
)

from serving.errors import InternalError  # noqa: E402
from serving.http_frontend import RestServer  # noqa: E402
from serving.observer import RequestObserver  # noqa: E402

log = logging.getLogger(__name__)

# The same message size limits as Paddle Serving's own server (the upload travels as base64).
GRPC_MESSAGE_LIMIT_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024),
                              ("grpc.max_receive_message_length", 256 * 1024 * 1024)]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ObservedServicer(PipelineServicer):
    """Paddle Serving's servicer with every request observed and always answered, and at most
    `max_in_flight` requests in the pipeline at once, whichever transport they came by (the
    others wait for a slot)."""

    def __init__(self, name: str, response_op: Any, conf: dict,
                 observer: RequestObserver, *, max_in_flight: int) -> None:
        super().__init__(name, response_op, conf)
        self._observer = observer
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def inference(self, request: Any, context: Any) -> Any:
        pending = self._observer.begin(request)
        try:
            with self._slots:
                response = super().inference(request, context)
        except Exception as exc:  # noqa: BLE001 - a client always gets an answer
            log.exception("request %s failed outside the pipeline's ops", pending.request_id)
            response = pipeline_service_pb2.Response(
                err_no=InternalError.CODE,
                err_msg=f"internal error: {type(exc).__name__}: {exc}")
        self._observer.finish(pending, response)
        return response


def serve(server: PipelineServer, observer: RequestObserver, *, shutdown_grace_s: float,
          max_body_bytes: int) -> None:
    """Serves `server` (after its `prepare_server`) until SIGTERM or SIGINT, then stops
    gracefully (see the module docstring) and returns. `max_body_bytes` bounds a REST body."""
    stop_requested = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop_requested.set())
    servicer = ObservedServicer(server._name, server._response_op, server._conf, observer,
                                max_in_flight=server._worker_num)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=server._worker_num),
                              options=GRPC_MESSAGE_LIMIT_OPTIONS)
    pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(servicer, grpc_server)
    grpc_server.add_insecure_port(f"[::]:{server._rpc_port}")
    grpc_server.start()
    rest = None
    if server._http_port > 0:
        rest = RestServer(("0.0.0.0", server._http_port), servicer, service_name=server._name,
                          max_body_bytes=max_body_bytes)
        rest.start()
    # A timed wait: the signal handler runs in this thread, between waits.
    while not stop_requested.wait(timeout=1.0):
        pass
    print(f"stopping: finishing the requests in flight (at most {shutdown_grace_s:g} s)",
          flush=True)
    grpc_stopped = grpc_server.stop(grace=shutdown_grace_s)
    if rest is not None:
        rest.stop(shutdown_grace_s)
    grpc_stopped.wait()
    print("stopped", flush=True)
