"""Sending a request again when the answer says it may succeed later (err_no 54, 55, 503, or a
connection that failed), after a jittered exponential backoff.

Why jitter ("full jitter": a delay drawn uniformly between 0 and the exponential bound): many
clients refused at the same moment by a saturated service would otherwise come back at the same
moment and be refused together again. The bound doubles per attempt up to `cap_s`, and a
Retry-After the service sent is honoured as the least delay (still under `cap_s`), so the total
wait of one request is at most retries x cap_s.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import Answer, Request, Send


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: `retries` more tries at most per request."""

    retries: int = 0
    base_s: float = 0.5
    cap_s: float = 20.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait before retry number `attempt` (0 for the first retry)."""
        delay = rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0 ** attempt))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay


class RetryingSender:
    """A Send that retries retriable answers under `policy` and counts its retries (thread-safe:
    a load run sends from many threads)."""

    def __init__(self, send: Send, policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._send = send
        self.policy = policy
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._retries = 0

    @property
    def retries(self) -> int:
        """Retries sent so far, all requests together."""
        with self._lock:
            return self._retries

    def __call__(self, request: Request) -> Answer:
        answer = self._send(request)
        for attempt in range(self.policy.retries):
            if not answer.retriable:
                break
            with self._lock:
                delay = self.policy.delay_s(attempt, answer.retry_after_s, self._rng)
                self._retries += 1
            self._sleep(delay)
            answer = self._send(request)
        return answer
