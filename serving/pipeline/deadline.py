"""Bounds how long one pipeline stage may work on one request.

Paddle Serving 0.9 applies an op's `timeout` only to `process`, the model call; this service's
decode, sample and normalize stages do their work in `preprocess`, where a costly or
pathological video could otherwise hold a stage thread for minutes. `run_with_deadline` gives
those stages the same setting (`op.<stage>.timeout`, milliseconds) with the same mechanism
Paddle Serving uses for `process`: func_timeout runs the work in a helper thread, returns to the
caller when the time is up and raises an exception inside the abandoned work at its next Python
instruction, so the work's `with` blocks release its decoder. That exception reaches only the
work's own thread: work it handed to the shared pool (the second decoder of a large video)
would run on. So the deadline also sets the request's cancel token
(serving/core/preprocess/cancel.py), which every decode and resize loop checks once per frame:
all of the request's work stops within one frame. Work stuck inside one native call finishes
that call first; the request has been answered by then.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import func_timeout

from serving.core.errors import DeadlineExceededError

T = TypeVar("T")


def run_with_deadline(work: Callable[[], T], seconds: float | None, *, stage: str,
                      cancel: threading.Event | None = None) -> T:
    """`work()`, or DeadlineExceededError naming `stage` and its `op.<stage>.timeout` setting if
    it runs longer than `seconds`, after setting `cancel` (the request's token) so that the
    abandoned work stops. None or <= 0 means no limit (the work runs in this thread)."""
    if seconds is None or seconds <= 0:
        return work()
    try:
        return func_timeout.func_timeout(seconds, work)
    except func_timeout.FunctionTimedOut:
        if cancel is not None:
            cancel.set()
        raise DeadlineExceededError(
            f"timeout: the {stage} stage took longer than its limit of {seconds:g} s "
            f"(op.{stage}.timeout); the video is too costly to process or the server is busy"
        ) from None
