"""Classify video files with the PP-TSM service over HTTP (JSON).

    python client/pipeline_http_client.py VIDEO_OR_FOLDER [--url URL] [--topk K]
        [--mode uniform|dense] [--json] [--frames] [--timeout S]
        [--list LIST --labels LABELS] [--concurrency N --repeat M]

Prints one line per video ("file: label (score 0.912)", or "file: error N: message") and
exits non-zero if any video failed. With --concurrency/--repeat it is a load run instead
(see _load_run.py): p50/p95/p99 latency, throughput and answer counts, non-zero exit when an
answer was lost or wrong. Needs only the Python standard library (OpenCV for --frames).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from _client_common import add_common_arguments, run
from _protocol import TRANSPORT_ERROR, Answer, Send

DEFAULT_URL = "http://127.0.0.1:18080/pptsm/prediction"


def http_sender(url: str, timeout: float) -> Send:
    """Posts Paddle Serving's {"key": [...], "value": [...]} body and reads its answer."""

    def send(fields: dict[str, str]) -> Answer:
        body = json.dumps({"key": list(fields), "value": list(fields.values())}).encode()
        request = urllib.request.Request(url, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return Answer(TRANSPORT_ERROR, f"HTTP {exc.code} from {url}: {exc.reason}", {})
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Answer(TRANSPORT_ERROR, f"cannot reach {url}: {reason}", {})
        except ValueError:
            return Answer(TRANSPORT_ERROR, f"{url} did not answer with JSON", {})
        return Answer(int(reply.get("err_no", TRANSPORT_ERROR)), reply.get("err_msg", ""),
                      dict(zip(reply.get("key", []), reply.get("value", []))))

    return send


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify videos with the PP-TSM service (HTTP).")
    add_common_arguments(parser)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"service endpoint (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each answer (default 120)")
    args = parser.parse_args(argv)
    return run(args, http_sender(args.url, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
