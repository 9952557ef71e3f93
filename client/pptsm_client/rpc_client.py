"""Classify video files with the PP-TSM service over gRPC (Paddle Serving's PipelineService).

    pptsm-rpc VIDEO_OR_FOLDER [--host HOST] [--port PORT] [--topk K]
        [--mode uniform|dense|timeline [--window-s S --stride-s S --min-score P]]
        [--json] [--frames] [--timeout S] [--retries N]
        [--list LIST --labels LABELS] [--concurrency N --repeat M]

Same output and exit status as pptsm-http. Sends the request message `PipelineClient` would
send, through the generated gRPC stub: PipelineClient prints two lines to stdout on every call
and resolves the host name each time, which a load run cannot afford. Needs Paddle Serving's
generated protobuf modules (paddle-serving-server 0.9, as the service installs it) and grpcio;
they are imported when a sender is made, so the rest of the package works without them.
"""
from __future__ import annotations

import argparse
import collections
import collections.abc
import os
import sys
import tempfile
from types import ModuleType

from .cli import EXIT_USAGE, add_common_arguments, run
from .protocol import TRANSPORT_ERROR, Answer, Request, Send, as_fields

# Room for any upload a service may accept, as base64: the service sets and enforces its own
# bound (request_limits.max_bytes), so the client's must not be the smaller one.
MESSAGE_LIMIT_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024),
                         ("grpc.max_receive_message_length", 256 * 1024 * 1024)]


class GrpcUnavailableError(ImportError):
    """grpcio or Paddle Serving's protobuf modules are not installed."""


def _serving_modules() -> tuple[ModuleType, ModuleType, ModuleType]:
    """grpc and Paddle Serving's generated PipelineService modules."""
    # Paddle Serving 0.9 imports `collections.Iterable`, removed in Python 3.10; restore the
    # aliases before importing it. (The service has the same fix in serving/pipeline/compat.py;
    # this client is standalone, so it cannot import it.)
    for name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    # Importing Paddle Serving's pipeline creates ./PipelineServingLogs unless SERVING_LOG_PATH
    # says otherwise; a client has no business littering the caller's folder.
    os.environ.setdefault("SERVING_LOG_PATH", tempfile.gettempdir())
    try:
        import grpc
        from paddle_serving_server.pipeline.proto import (
            pipeline_service_pb2,
            pipeline_service_pb2_grpc,
        )
    except ImportError as exc:
        raise GrpcUnavailableError(
            f"the gRPC client needs grpcio and Paddle Serving's protobuf modules "
            f"(paddle-serving-server 0.9, installed as the service installs it): {exc}") from None
    return grpc, pipeline_service_pb2, pipeline_service_pb2_grpc


def rpc_sender(host: str, port: int, timeout: float) -> Send:
    """One channel for all requests (gRPC channels are thread-safe and multiplex calls). A
    plain upload is sent in the key/value form, the only one gRPC takes. UNAVAILABLE (no
    connection) is worth a retry; other gRPC failures are not."""
    grpc, pipeline_service_pb2, pipeline_service_pb2_grpc = _serving_modules()
    channel = grpc.insecure_channel(f"{host}:{port}", options=MESSAGE_LIMIT_OPTIONS)
    stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)

    def send(request: Request) -> Answer:
        fields = as_fields(request)
        message = pipeline_service_pb2.Request(key=list(fields), value=list(fields.values()))
        try:
            reply = stub.inference(message, timeout=timeout)
        except grpc.RpcError as exc:
            return Answer(TRANSPORT_ERROR, f"cannot reach {host}:{port}: {exc.code().name}", {},
                          connection_failed=exc.code() == grpc.StatusCode.UNAVAILABLE)
        return Answer(reply.err_no, reply.err_msg, dict(zip(reply.key, reply.value)))

    return send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify videos with the PP-TSM service (gRPC).")
    add_common_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="service host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9993, help="service rpc_port (default 9993)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each answer (default 120)")
    args = parser.parse_args(argv)
    try:
        send = rpc_sender(args.host, args.port, args.timeout)
    except GrpcUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run(args, send)


if __name__ == "__main__":
    sys.exit(main())
