"""The service's request and answer forms, as the clients see them (standard library only).

A request goes either in Paddle Serving's key/value form (string values; the file as base64),
which both HTTP and gRPC take, or as a plain upload (the file's bytes as the HTTP body, the
options in the query string), which saves the base64 and JSON work on both ends.
`build_frames_request` makes PaddleVideo's raw-frames form (decoded here with OpenCV, the one
optional dependency, to compare the two ways of sending a clip).
"""
from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# err_no of an Answer for failures on the client's side (unreadable file, service unreachable);
# the service's own codes are >= 0.
TRANSPORT_ERROR = -1
# The service's codes worth sending the same request again for: an internal error (54), a stage
# past its deadline (55), no room for the request just now (503, also its HTTP status).
UNAVAILABLE = 503
RETRIABLE_ERR_NOS = frozenset({54, 55, UNAVAILABLE})
# Answer values that hold JSON; `result_record` and PPTSMClient decode them.
JSON_FIELDS = frozenset({"topk", "model", "timing_ms", "timeline", "segments", "timeline_stats"})
MODES = ("uniform", "dense", "timeline")
OCTET_STREAM = "application/octet-stream"

# Paddle Serving's key/value form.
Fields = dict[str, str]


@dataclass(frozen=True)
class Upload:
    """A plain upload: `data` is POSTed as it is, with `options` as query parameters."""

    data: bytes
    content_type: str
    options: Mapping[str, str]


Request = Fields | Upload


@dataclass(frozen=True)
class Answer:
    """The service's reply to one request: err_no 0 and the result fields, or an error.
    `connection_failed` marks a request that never got an answer because the connection could
    not be made or broke; `retry_after_s` is the service's Retry-After, when it sent one."""

    err_no: int
    err_msg: str
    fields: dict[str, str]
    connection_failed: bool = False
    retry_after_s: float | None = None

    @property
    def retriable(self) -> bool:
        """Whether sending the same request again may get a different answer."""
        return self.connection_failed or self.err_no in RETRIABLE_ERR_NOS


# Sends one request; reports transport failures as an Answer with err_no TRANSPORT_ERROR.
Send = Callable[[Request], Answer]


def request_options(*, topk: int | None = None, mode: str | None = None,
                    **options: object) -> dict[str, str]:
    """The option keys of a request as strings; options left as None are not sent, so the
    service's defaults apply."""
    given = {"topk": topk, "mode": mode, **options}
    return {key: str(value) for key, value in given.items() if value is not None}


def build_request(video: bytes, options: Mapping[str, str]) -> Fields:
    """The key/value fields for one video file."""
    return {"video": base64.b64encode(video).decode("ascii"), **options}


def content_type_for(name: str | None) -> str:
    """The Content-Type of a plain upload: the file suffix's video type, else octet-stream
    (which the service takes for any video)."""
    guessed = mimetypes.guess_type(name)[0] if name else None
    return guessed if guessed and guessed.startswith("video/") else OCTET_STREAM


def build_upload(video: bytes, options: Mapping[str, str], name: str | None = None) -> Upload:
    return Upload(video, content_type_for(name), dict(options))


def as_fields(request: Request) -> Fields:
    """The key/value form of any request (gRPC takes no other)."""
    if isinstance(request, Upload):
        return build_request(request.data, request.options)
    return request


def decode_fields(fields: Mapping[str, str]) -> dict[str, object]:
    """An answer's fields with the JSON-valued ones decoded."""
    return {key: json.loads(value) if key in JSON_FIELDS else value
            for key, value in fields.items()}


def build_frames_request(path: Path, options: Mapping[str, str]) -> Fields:
    """PaddleVideo's python_serving request for a video file: every frame decoded (OpenCV),
    RGB uint8, sent as base64 raw bytes with their shape; a timeline also gets the file's frame
    rate (`frames_fps`), which raw frames do not carry."""
    try:
        import cv2
        import numpy as np
    except ImportError:
        raise ValueError("--frames needs OpenCV and numpy "
                         "(pip install opencv-python-headless)") from None
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise ValueError(f"{path}: OpenCV decodes no frame from it")
    stacked = np.stack(frames)
    request = {"frames": base64.b64encode(stacked.tobytes()).decode("ascii"),
               "frames_shape": str(stacked.shape), **options}
    if options.get("mode") == "timeline" and fps > 0:
        request["frames_fps"] = f"{fps:g}"
    return request
