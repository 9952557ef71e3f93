"""Classify video files with the PP-TSM service over gRPC (Paddle Serving's PipelineClient).

    python client/pipeline_rpc_client.py VIDEO_OR_FOLDER [--host HOST] [--port PORT]
        [--topk K] [--mode uniform|dense] [--json]

Same output and exit status as pipeline_http_client.py. Needs paddle-serving-server (for
PipelineClient), grpcio and protobuf 3.20.x.
"""
from __future__ import annotations

import argparse
import collections
import collections.abc
import contextlib
import io
import os
import sys
import tempfile

from _client_common import TRANSPORT_ERROR, Answer, Send, add_common_arguments, run

# Paddle Serving 0.9 imports `collections.Iterable`, removed in Python 3.10; restore the aliases
# before importing it. (The service has the same fix in serving/compat.py; this client is
# standalone, so it cannot import it.)
for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

# Importing Paddle Serving's pipeline creates ./PipelineServingLogs unless SERVING_LOG_PATH says
# otherwise; a client has no business littering the caller's folder.
os.environ.setdefault("SERVING_LOG_PATH", tempfile.gettempdir())

import grpc  # noqa: E402
from paddle_serving_server.pipeline import PipelineClient  # noqa: E402


def rpc_sender(host: str, port: int) -> Send:
    client = PipelineClient()
    client.connect([f"{host}:{port}"])

    def send(fields: dict[str, str]) -> Answer:
        # PipelineClient prints timing lines on stdout; keep stdout for results only.
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                reply = client.predict(feed_dict=dict(fields))
        except grpc.RpcError as exc:
            return Answer(TRANSPORT_ERROR, f"cannot reach {host}:{port}: {exc.code().name}", {})
        return Answer(reply.err_no, reply.err_msg, dict(zip(reply.key, reply.value)))

    return send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify videos with the PP-TSM service (gRPC).")
    add_common_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="service host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9993, help="service rpc_port (default 9993)")
    args = parser.parse_args(argv)
    return run(args, rpc_sender(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
