"""PPTSMClient: classify one video from Python code, with a typed result or a typed error.

    client = PPTSMClient("http://127.0.0.1:18080/pptsm/prediction", retries=3)
    result = client.classify("clip.mp4", topk=3)
    print(result.label, result.score)

The same requests and retries as the command lines (HTTP by default, gRPC through `over_grpc`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .http_client import DEFAULT_URL, http_sender
from .protocol import (
    Answer,
    Request,
    Send,
    build_request,
    build_upload,
    decode_fields,
    request_options,
)
from .retry import RetryingSender, RetryPolicy


class ClassifyError(Exception):
    """The service refused the video (err_no >= 51: the table in the project's docs/api.md), or the
    request did not get through (err_no -1)."""

    def __init__(self, err_no: int, err_msg: str) -> None:
        super().__init__(f"error {err_no}: {err_msg}")
        self.err_no = err_no
        self.err_msg = err_msg


@dataclass(frozen=True)
class Ranked:
    """One class of a ranking, best first."""

    class_id: int
    label: str
    score: float


@dataclass(frozen=True)
class Window:
    """A timeline window and its ranking."""

    start_s: float
    end_s: float
    topk: tuple[Ranked, ...]


@dataclass(frozen=True)
class Segment:
    """Consecutive windows whose top-1 agrees, with the score the service gives the run."""

    start_s: float
    end_s: float
    class_id: int
    label: str
    score: float


def _ranking(entries: Sequence[Mapping[str, Any]]) -> tuple[Ranked, ...]:
    return tuple(Ranked(int(entry["class_id"]), str(entry["label"]), float(entry["score"]))
                 for entry in entries)


@dataclass(frozen=True)
class ClassifyResult:
    """A successful answer. `label`, `score` and `topk` describe the whole video (absent from a
    timeline answer that carries none); `timeline` and `segments` are set in timeline mode;
    `fields` keeps every answer value as sent, JSON ones decoded."""

    label: str | None
    score: float | None
    topk: tuple[Ranked, ...]
    model: Mapping[str, Any]
    timing_ms: Mapping[str, Any]
    timeline: tuple[Window, ...] | None
    segments: tuple[Segment, ...] | None
    fields: Mapping[str, Any]

    @classmethod
    def from_answer(cls, answer: Answer) -> ClassifyResult:
        fields = decode_fields(answer.fields)
        timeline = fields.get("timeline")
        segments = fields.get("segments")
        return cls(
            label=fields.get("label"),
            score=float(fields["score"]) if "score" in fields else None,
            topk=_ranking(fields.get("topk", [])),
            model=fields.get("model", {}),
            timing_ms=fields.get("timing_ms", {}),
            timeline=None if timeline is None else tuple(
                Window(float(w["start_s"]), float(w["end_s"]), _ranking(w["topk"]))
                for w in timeline),
            segments=None if segments is None else tuple(
                Segment(float(s["start_s"]), float(s["end_s"]), int(s["class_id"]),
                        str(s["label"]), float(s["score"])) for s in segments),
            fields=fields)


class PPTSMClient:
    """A PP-TSM service endpoint. `binary` sends files as plain uploads (HTTP only; the service
    must have the plain-upload route) rather than base64 in JSON; `retries` resends a request
    whose answer is err_no 54, 55 or 503 or whose connection failed, after a jittered backoff.
    Thread-safe."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 120.0, retries: int = 0,
                 binary: bool = False) -> None:
        self._init(http_sender(url, timeout_s), retries=retries, binary=binary)

    @classmethod
    def over_grpc(cls, host: str = "127.0.0.1", port: int = 9993, *, timeout_s: float = 120.0,
                  retries: int = 0) -> PPTSMClient:
        """A client of the service's gRPC port (needs Paddle Serving's protobuf modules)."""
        from .rpc_client import rpc_sender

        client = cls.__new__(cls)
        client._init(rpc_sender(host, port, timeout_s), retries=retries, binary=False)
        return client

    def _init(self, send: Send, *, retries: int, binary: bool) -> None:
        self._send = RetryingSender(send, RetryPolicy(retries=retries))
        self.binary = binary

    @property
    def retries(self) -> int:
        """Retries sent so far by this client."""
        return self._send.retries

    def classify(self, video: str | os.PathLike[str] | bytes, *, topk: int | None = None,
                 mode: str | None = None, **options: object) -> ClassifyResult:
        """Classifies a video file (a path) or a video's bytes. `topk` and `mode` left as None
        take the service's defaults; other options (window_s, stride_s, min_score for
        mode="timeline") are sent as given. Raises ClassifyError with the service's err_no and
        err_msg when the video is refused or the service cannot be reached; OSError when the
        file cannot be read."""
        if isinstance(video, bytes):
            data, name = video, None
        else:
            path = Path(video)
            data, name = path.read_bytes(), path.name
        fields = request_options(topk=topk, mode=mode, **options)
        request: Request = (build_upload(data, fields, name) if self.binary
                            else build_request(data, fields))
        answer = self._send(request)
        if answer.err_no != 0:
            raise ClassifyError(answer.err_no, answer.err_msg)
        return ClassifyResult.from_answer(answer)
