"""Stopping a request's decoding once nobody waits for its answer.

A stage deadline (serving/pipeline/deadline.py) answers the client when time is up, but the work it
abandons would otherwise run on: a decode loop, the second decoder on the shared pool, the
resizing. Each request therefore carries one `threading.Event`; the deadline sets it, and every
loop that decodes, converts or resizes a frame calls `raise_if_cancelled` once per frame, so
abandoned work stops within one frame and frees its CPU and memory.
"""
from __future__ import annotations

import threading

from serving.core.errors import DeadlineExceededError

CancelToken = threading.Event


class Cancelled(DeadlineExceededError):
    """The request was abandoned (its stage timed out); its work stopped early. A client never
    sees this one: its answer was the stage's own timeout error."""

    def __init__(self) -> None:
        super().__init__("timeout: the request was abandoned and its decoding stopped")


def raise_if_cancelled(*tokens: CancelToken | None) -> None:
    """Cancelled when any of `tokens` is set; None (no deadline) never cancels."""
    for token in tokens:
        if token is not None and token.is_set():
            raise Cancelled()
