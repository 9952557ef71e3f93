"""One JSON line per answered request, for log shippers and for answering "what happened to my
request?" by its request id.

A line holds what describes the request and its answer, never the payload: the key names (cut
to a bounded length and count), the total size of the values, the short option values (topk,
mode), the outcome, err_no and err_msg, the end-to-end and per-stage times and, on success, the
top class. Video bytes, frames and any other value never reach the log.

    {"ts": "2025-01-01T12:00:00.123Z", "request_id": "7261...", "outcome": "ok", "err_no": 0,
     "err_msg": "", "duration_ms": 41.2, "request_bytes": 160412, "keys": ["video", "topk"],
     "options": {"topk": "5"}, "timing_ms": {"decode": 3.1, ...}, "class_id": 2,
     "label": "jumping", "score": 0.91}
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

LOGGER_NAME = "pptsm.requests"
# Values of these keys are logged (cut to OPTION_CHARS): they are small and explain answers.
LOGGED_OPTIONS = ("topk", "mode")
OPTION_CHARS = 20
KEY_CHARS = 40
MAX_KEYS = 10
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class RequestSummary:
    """What is known about a request before it runs, without its payload."""

    keys: tuple[str, ...]
    request_bytes: int
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: list[str], values: list[str]) -> "RequestSummary":
        """Describes a request from its key/value lists, which may be malformed: lists of
        different lengths, huge key names, huge values."""
        options = {key: value[:OPTION_CHARS] for key, value in zip(keys, values)
                   if key in LOGGED_OPTIONS}
        return cls(keys=tuple(key[:KEY_CHARS] for key in keys[:MAX_KEYS]),
                   request_bytes=sum(len(value) for value in values), options=options)


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, as logged."""

    request_id: str
    outcome: str
    err_no: int
    err_msg: str
    duration_ms: float
    summary: RequestSummary
    timing_ms: dict[str, float] = field(default_factory=dict)
    top: dict[str, object] = field(default_factory=dict)  # class_id, label, score on success

    def to_json(self, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
        line = {"ts": stamp.replace("+00:00", "Z"), "request_id": self.request_id,
                "outcome": self.outcome, "err_no": self.err_no,
                "err_msg": self.err_msg[:MESSAGE_CHARS],
                "duration_ms": round(self.duration_ms, 2),
                "request_bytes": self.summary.request_bytes, "keys": list(self.summary.keys),
                "options": self.summary.options, "timing_ms": self.timing_ms, **self.top}
        return json.dumps(line, ensure_ascii=True)


def configure_request_log(path: Path | None) -> logging.Logger:
    """The request logger, writing bare JSON lines to `path` (appended) or to stderr when None.
    It does not propagate: Paddle Serving's handlers must not copy the lines elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handler = (logging.FileHandler(path, encoding="utf-8") if path is not None
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger

