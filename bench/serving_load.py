"""End-to-end REST load on the real service: latency percentiles and throughput per concurrency.

Two request kinds carry the same clip: `video` (the compressed file, decoded by the service) and
`frames` (every frame decoded by the client and posted as raw RGB, as PaddleVideo's
python_serving client does), so the table shows what client-side decoding costs in request
bytes and time.
"""
from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import requests

from serving.core.preprocess.decode import decode_all

HTTP_TIMEOUT_S = 600


@dataclass(frozen=True)
class RequestBody:
    kind: str  # "video" or "frames"
    clip: str
    data: bytes  # the JSON body, built once and posted as it is

    @property
    def megabytes(self) -> float:
        return len(self.data) / 1e6


@dataclass(frozen=True)
class LoadResult:
    kind: str
    clip: str
    precision: str
    request_mb: float
    concurrency: int
    requests: int
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rps: float
    first_error: str


def json_body(fields: dict[str, str]) -> bytes:
    """The body of a request in Paddle Serving's JSON form."""
    return json.dumps({"key": list(fields), "value": list(fields.values())}).encode()


def video_body(clip_label: str, video: bytes) -> RequestBody:
    return RequestBody("video", clip_label,
                       json_body({"video": base64.b64encode(video).decode("ascii")}))


def frames_size(width: int, height: int, frames: int) -> int:
    """Bytes of a `frames` request body for a clip, without building it (base64 of raw RGB)."""
    return (frames * height * width * 3 + 2) // 3 * 4


def frames_body(clip_label: str, video: bytes) -> RequestBody:
    """Every frame decoded here, as the PaddleVideo client does before posting."""
    frames = decode_all(video)
    return RequestBody("frames", clip_label, json_body({
        "frames": base64.b64encode(np.ascontiguousarray(frames).tobytes()).decode("ascii"),
        "frames_shape": str(tuple(frames.shape))}))


def _post(url: str, body: bytes) -> tuple[float, str]:
    """(seconds, error text or '') for one request."""
    started = time.perf_counter()
    try:
        response = requests.post(url, data=body, headers={"Content-Type": "application/json"},
                                 timeout=HTTP_TIMEOUT_S)
        answer = response.json()
        error = "" if answer.get("err_no") == 0 else f"{answer.get('err_no')}: {answer.get('err_msg')}"
    except (requests.RequestException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, error


def run_level(url: str, body: RequestBody, *, concurrency: int, requests_total: int,
              precision: str = "fp32", warmup: int = 1) -> LoadResult:
    """`requests_total` posts of `body` from `concurrency` client threads after `warmup`
    sequential ones (the first inferences compile oneDNN kernels)."""
    for _ in range(warmup):
        _post(url, body.data)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(lambda _: _post(url, body.data), range(requests_total)))
    wall = time.perf_counter() - started
    latencies = np.array([seconds for seconds, _ in outcomes]) * 1000.0
    errors = [error for _, error in outcomes if error]
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return LoadResult(body.kind, body.clip, precision, round(body.megabytes, 2), concurrency,
                      requests_total, len(errors), float(p50), float(p95), float(p99),
                      (requests_total - len(errors)) / wall, errors[0][:200] if errors else "")
