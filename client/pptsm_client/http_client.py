"""Classify video files with the PP-TSM service over HTTP.

    pptsm-http VIDEO_OR_FOLDER [--url URL] [--binary] [--topk K]
        [--mode uniform|dense|timeline [--window-s S --stride-s S --min-score P]]
        [--json] [--frames] [--timeout S] [--retries N]
        [--list LIST --labels LABELS] [--concurrency N --repeat M]

Prints one line per video ("file: label (score 0.912)", or "file: error N: message"; a
timeline adds one line per segment) and exits non-zero if any video failed. With
--concurrency/--repeat it is a load run instead (see load_run.py): p50/p95/p99 latency,
throughput and answer counts, non-zero exit when an answer was lost or wrong. Needs only the
Python standard library (OpenCV for --frames).
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any

from .cli import add_common_arguments, run
from .protocol import TRANSPORT_ERROR, UNAVAILABLE, Answer, Request, Send, Upload

DEFAULT_URL = "http://127.0.0.1:18080/pptsm/prediction"


def _http_request(url: str, request: Request) -> urllib.request.Request:
    """Paddle Serving's {"key": [...], "value": [...]} JSON body, or a plain upload: the bytes
    as the body and the options in the query string."""
    if isinstance(request, Upload):
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        return urllib.request.Request(url + separator + urllib.parse.urlencode(request.options),
                                      data=request.data,
                                      headers={"Content-Type": request.content_type})
    body = json.dumps({"key": list(request), "value": list(request.values())}).encode()
    return urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by this service)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _answer(url: str, status: int, reason: str, body: bytes, headers: Any) -> Answer:
    """The Answer in a reply body. Every answer of the service, refusals with an HTTP error
    status included, is JSON with err_no and err_msg; anything else is a transport error, but
    for a 503 (from a proxy in front of the service, say), which is err_no 503 like the
    service's own."""
    try:
        reply = json.loads(body)
        err_no = int(reply["err_no"])
    except (ValueError, KeyError, TypeError):
        if status == 200:
            return Answer(TRANSPORT_ERROR, f"{url} did not answer with JSON", {})
        return Answer(UNAVAILABLE if status == UNAVAILABLE else TRANSPORT_ERROR,
                      f"HTTP {status} from {url}: {reason}", {},
                      retry_after_s=_retry_after(headers))
    return Answer(err_no, str(reply.get("err_msg", "")),
                  dict(zip(reply.get("key") or [], reply.get("value") or [])),
                  retry_after_s=_retry_after(headers))


def http_sender(url: str, timeout: float) -> Send:
    """Posts each request to `url` and reads its answer; a connection that cannot be made or
    breaks is an Answer with `connection_failed` (worth a retry), a timeout is not."""

    def send(request: Request) -> Answer:
        try:
            with urllib.request.urlopen(_http_request(url, request), timeout=timeout) as response:
                return _answer(url, response.status, response.reason, response.read(),
                               response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                return _answer(url, exc.code, str(exc.reason), exc.read(), exc.headers)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return Answer(TRANSPORT_ERROR, f"cannot reach {url}: {reason}", {},
                          connection_failed=not isinstance(reason, TimeoutError))

    return send


def metadata_url(prediction_url: str) -> str:
    """The service's metadata route beside its prediction route (/pptsm/prediction ->
    /pptsm/metadata)."""
    parts = urllib.parse.urlsplit(prediction_url)
    path = parts.path.rstrip("/")
    base = path[: -len("/prediction")] if path.endswith("/prediction") else path
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, base + "/metadata", "", ""))


def fetch_metadata(prediction_url: str, timeout: float) -> dict[str, Any] | None:
    """The service's GET metadata document, or None when it has none (an older service, or
    unreachable: the caller finds out when it sends its first request)."""
    try:
        with urllib.request.urlopen(metadata_url(prediction_url), timeout=timeout) as response:
            document = json.loads(response.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None
    return document if isinstance(document, dict) else None


def labels_in(metadata: dict[str, Any] | None) -> list[str] | None:
    """The class labels a metadata document lists (`labels`: names, or `classes`: objects with
    a `label`), or None."""
    if metadata is None:
        return None
    labels = metadata.get("labels")
    if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
        return labels
    classes = metadata.get("classes")
    if isinstance(classes, list):
        found = [entry.get("label") for entry in classes if isinstance(entry, dict)]
        if found and all(isinstance(label, str) for label in found):
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify videos with the PP-TSM service (HTTP).")
    add_common_arguments(parser)
    parser.add_argument("--url", default=DEFAULT_URL,
                        help=f"service endpoint (default {DEFAULT_URL})")
    parser.add_argument("--binary", action="store_true",
                        help="send each file as a plain upload (its bytes as the body, "
                        "Content-Type video/* by suffix, options in the query string) instead "
                        "of base64 in JSON: less to send and nothing to decode")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for each answer (default 120)")
    args = parser.parse_args(argv)
    if args.binary and args.frames:
        parser.error("--binary sends the file, --frames its decoded frames: choose one")

    def service_labels() -> Collection[str] | None:
        return labels_in(fetch_metadata(args.url, args.timeout))

    return run(args, http_sender(args.url, args.timeout), service_labels)


if __name__ == "__main__":
    sys.exit(main())
