"""The service's request and answer form, as the clients see it (standard library only).

A request is Paddle Serving's key/value form with string values; `build_request` makes one for
a video file, `build_frames_request` one in PaddleVideo's raw-frames form (decoded here with
OpenCV, the one optional dependency, to compare the two ways of sending a clip).
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# err_no of an Answer for failures on the client's side (unreadable file, service unreachable);
# the service's own codes are >= 0.
TRANSPORT_ERROR = -1


@dataclass(frozen=True)
class Answer:
    """The service's reply to one request: err_no 0 and the result fields, or an error."""

    err_no: int
    err_msg: str
    fields: dict[str, str]


# Sends one request; reports transport failures as an Answer with err_no TRANSPORT_ERROR.
Send = Callable[[dict[str, str]], Answer]


def build_request(video: bytes, *, topk: int, mode: str) -> dict[str, str]:
    """The request fields for one video file (the service's key/value protocol)."""
    return {"video": base64.b64encode(video).decode("ascii"), "topk": str(topk), "mode": mode}


def build_frames_request(path: Path, *, topk: int, mode: str) -> dict[str, str]:
    """PaddleVideo's python_serving request for a video file: every frame decoded (OpenCV),
    RGB uint8, sent as base64 raw bytes with their shape."""
    try:
        import cv2
        import numpy as np
    except ImportError:
        raise ValueError("--frames needs OpenCV and numpy (pip install opencv-python-headless)") from None
    capture = cv2.VideoCapture(str(path))
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
    return {"frames": base64.b64encode(stacked.tobytes()).decode("ascii"),
            "frames_shape": str(stacked.shape), "topk": str(topk), "mode": mode}
