"""Classify video files with the PP-TSM service over gRPC (Paddle Serving's PipelineService).

    python client/pipeline_rpc_client.py VIDEO_OR_FOLDER [--host HOST] [--port PORT]
        [--topk K] [--mode uniform|dense] [--json] [--frames] [--timeout S]
        [--list LIST --labels LABELS] [--concurrency N --repeat M]

Same output and exit status as pipeline_http_client.py. Sends the request message
`PipelineClient` would send, through the generated gRPC stub: PipelineClient prints two lines
to stdout on every call and resolves the host name each time, which a load run cannot afford.
Needs paddle-serving-server (for the generated protobuf modules), grpcio and protobuf 3.20.x.
"""
from __future__ import annotations

import argparse
import collections
import collections.abc
import os
import sys
import tempfile

from _client_common import add_common_arguments, run
from _protocol import TRANSPORT_ERROR, Answer, Send

# Paddle Serving 0.9 imports `collections.Iterable`, removed in Python 3.10; restore the aliases
# before importing it. (The service has the same fix in serving/pipeline/compat.py; this client is
# standalone, so it cannot import it.)
for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

# Importing Paddle Serving's pipeline creates ./PipelineServingLogs unless SERVING_LOG_PATH says
# otherwise; a client has no business littering the caller's folder.
os.environ.setdefault("SERVING_LOG_PATH", tempfile.gettempdir())

import grpc  # noqa: E402
from paddle_serving_server.pipeline.proto import (  # noqa: E402
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
)

# The service accepts messages up to 256 MiB (an upload travels as base64).
MESSAGE_LIMIT_OPTIONS = [("grpc.max_send_message_length", 256 * 1024 * 1024),
                         ("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def rpc_sender(host: str, port: int, timeout: float) -> Send:
    """One channel for all requests (gRPC channels are thread-safe and multiplex calls)."""
    channel = grpc.insecure_channel(f"{host}:{port}", options=MESSAGE_LIMIT_OPTIONS)
    stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)

    def send(fields: dict[str, str]) -> Answer:
        request = pipeline_service_pb2.Request(key=list(fields), value=list(fields.values()))
        try:
            reply = stub.inference(request, timeout=timeout)
        except grpc.RpcError as exc:
            return Answer(TRANSPORT_ERROR, f"cannot reach {host}:{port}: {exc.code().name}", {})
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
    return run(args, rpc_sender(args.host, args.port, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
