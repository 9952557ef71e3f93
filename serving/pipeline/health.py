"""Liveness and readiness, as the REST front end answers `GET /v2/health/live` and
`GET /v2/health/ready` (the KServe / Triton names), from state kept here, never by sending the
probe itself through the model's queue: under full load a probe must still answer at once.

Ready means: the model is loaded (the service only starts serving after that), a warm-up has run
one real classification per sampling mode through the whole pipeline (oneDNN compiles its
kernels on the first run of each input shape, so the first client would otherwise pay for it),
and the pipeline keeps answering: a ping goes through it every PING_INTERVAL_S, and the
instance is not ready while a ping has gone unanswered for more than STALE_AFTER_S. A stopping
service is not ready, so that load balancers drain it.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.core.metadata import ModelMeta  # noqa: E402
from serving.core.preprocess.pipeline import SAMPLING_MODES  # noqa: E402
from serving.pipeline.protocol import PING_KEY  # noqa: E402

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0
# A ping queues behind the requests in the pipeline (at most worker_num of them, each bounded
# by its stage timeouts); this long without an answer means the pipeline is stuck.
STALE_AFTER_S = 60.0
# Pause before a failed warm-up is tried again.
RETRY_S = 2.0

Probe = Callable[[Any], Any]  # a pipeline_service_pb2.Request -> its Response


def warm_up_requests(meta: ModelMeta) -> list[Any]:
    """One classification per sampling mode, of model-sized raw frames (no decoding needed)."""
    spec = meta.preprocess
    frames = np.zeros((spec.num_seg, spec.crop_size, spec.crop_size, 3), dtype=np.uint8)
    text = base64.b64encode(frames.tobytes()).decode("ascii")
    return [pipeline_service_pb2.Request(key=["frames", "frames_shape", "topk", "mode"],
                                         value=[text, str(frames.shape), "1", mode])
            for mode in SAMPLING_MODES]


class Readiness:
    """Runs the warm-up, then pings the pipeline in the background; `state()` says whether the
    instance is ready, and why not, without waiting for anything."""

    def __init__(self, probe: Probe, meta: ModelMeta, *,
                 ping_interval_s: float = PING_INTERVAL_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self._probe = probe
        self._meta = meta
        self._interval_s = ping_interval_s
        self._stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._warm = False
        self._problem = "warming up: the first classifications have not run yet"
        self._waiting_since: float | None = None  # when the unanswered ping was sent
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The instance is stopping: not ready from now on."""
        with self._lock:
            self._problem = "stopping: finishing the requests in flight"
        self._stopped.set()

    def state(self) -> tuple[bool, str]:
        """(ready, the reason when not)."""
        with self._lock:
            if self._stopped.is_set() or not self._warm:
                return False, self._problem
            waiting = self._waiting_since
        if waiting is not None and time.monotonic() - waiting > self._stale_after_s:
            return False, (f"the pipeline has not answered a ping for "
                           f"{time.monotonic() - waiting:.0f} s")
        return True, ""

    def _answered(self, request: Any) -> str:
        """'' when the pipeline answered `request` without error, else the problem."""
        try:
            response = self._probe(request)
        except Exception as exc:  # noqa: BLE001 - reported as not ready, and logged
            log.exception("readiness: the pipeline failed")
            return f"the pipeline failed ({type(exc).__name__})"
        return "" if response.err_no == 0 else f"err_no {response.err_no}: {response.err_msg}"

    def _warm_up(self) -> None:
        while not self._stopped.is_set():
            problems = [problem for problem in map(self._answered, warm_up_requests(self._meta))
                        if problem]
            if not problems:
                with self._lock:
                    self._warm = True
                return
            log.error("readiness: warm-up failed: %s", problems[0])
            with self._lock:
                self._problem = f"warm-up failed: {problems[0]}"
            self._stopped.wait(RETRY_S)

    def _run(self) -> None:
        self._warm_up()
        ping = pipeline_service_pb2.Request(key=[PING_KEY], value=[""])
        while not self._stopped.wait(self._interval_s):
            with self._lock:
                self._waiting_since = time.monotonic()
            problem = self._answered(ping)
            if problem:
                log.error("readiness: ping failed: %s", problem)
                continue  # stays waiting: stale after STALE_AFTER_S
            with self._lock:
                self._waiting_since = None
