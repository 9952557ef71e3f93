"""The service's request and response format, independent of Paddle Serving.

A request is Paddle Serving's key/value form: string keys, string values.

| key          | value                                                                    |
|--------------|--------------------------------------------------------------------------|
| video        | base64 of a video file (mp4, avi, webm, ...)                             |
| frames       | base64 of raw RGB uint8 frames, C order (PaddleVideo python_serving form) |
| frames_shape | their shape, "(T, H, W, 3)"; parsed strictly, never evaluated            |
| topk         | how many classes to list, 1..num_classes (default 5, or num_classes)     |
| mode         | "uniform" or "dense" (default: the model's own sampling, normally uniform); |
|              | "timeline": windows and segments of a long video (see below)              |
| window_s     | timeline: seconds per window (default 10)                                |
| stride_s     | timeline: seconds between window starts (default window_s / 2)           |
| min_score    | timeline: top-1 score a window needs to join a segment (default 0.5)     |
| smooth       | timeline: 1 (default) averages each window's scores with its neighbours', |
|              | 0 answers each window alone                                               |
| frames_fps   | timeline of raw `frames`: their frame rate (default 25)                  |
| ping         | any value, sent alone: a readiness check answered without inference      |

Exactly one of `video` or `frames` (+ `frames_shape`) is required unless the request is a ping.
Every problem is an InvalidInputError / LimitExceededError whose message names the key.
Before any value is looked at, `check_envelope` refuses what the key/value form cannot mean:
keys and values that do not pair up, a key sent twice, Paddle Serving `tensors` (the stock
request op unpickles some of them: code execution for whoever sends one) and a request larger
than the biggest allowed upload in base64 plus a small allowance for the options.

A response's values are strings too: `label`, `class_id`, `score`, `prob` (PaddleVideo's form:
the top score in a list, "[0.912346]"), and JSON for `topk` ([{class_id, label, score}, ...]),
`model` ({name, version, num_classes}) and `timing_ms`. A timeline answers `timeline`
([{start_s, end_s, topk}] per window), `segments` ([{start_s, end_s, class_id, label, score}])
and `timeline_stats` ({windows, frames_decoded, fps, duration_s, window_s, stride_s}) instead of
the single-label keys (serving.core.timeline).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from serving.core.errors import InvalidInputError, LimitExceededError
from serving.core.metadata import ModelMeta
from serving.core.postprocess import DEFAULT_TOPK
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.pipeline import SAMPLING_MODES
from serving.core.timeline import TIMELINE, DEFAULT_FRAMES_FPS, TimelineOptions, TimelineResult

PAYLOAD_KEYS = ("video", "frames", "frames_shape")
TIMELINE_KEYS = ("window_s", "stride_s", "min_score")
SMOOTH_KEY = "smooth"
FRAMES_FPS_KEY = "frames_fps"
OPTION_KEYS = ("topk", "mode", *TIMELINE_KEYS, SMOOTH_KEY, FRAMES_FPS_KEY)
_SWITCH = {"1": True, "true": True, "0": False, "false": False}
MODES = (*SAMPLING_MODES, TIMELINE)
# Highest frames_fps accepted: above any camera's rate, low enough to keep windows meaningful.
MAX_FRAMES_FPS = 1000.0
PING_KEY = "ping"
# Paddle Serving's PipelineClient adds this key itself when asked for server-side profiling.
SERVING_PROFILE_KEY = "pipeline.profile"
ALLOWED_KEYS = (*PAYLOAD_KEYS, *OPTION_KEYS, PING_KEY)

# Room for the option keys and values next to the largest allowed upload.
OPTIONS_ALLOWANCE_BYTES = 64 * 1024
# Client-controlled text (key names, bad values) quoted in a message is cut to this length.
QUOTE_CHARS = 40

_SHAPE_PATTERN = re.compile(
    r"^\s*[(\[]\s*(\d{1,9})\s*,\s*(\d{1,9})\s*,\s*(\d{1,9})\s*,\s*(\d{1,9})\s*,?\s*[)\]]\s*$")
_WHITESPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"\s*\d{1,9}(\.\d{1,9})?\s*")


@dataclass(frozen=True)
class PingRequest:
    """A readiness check: answered with the model's identity, no inference."""


@dataclass(frozen=True)
class ClassifyRequest:
    """A validated classification request; exactly one of `video` / `frames` is set."""

    topk: int
    mode: str
    video: bytes | None = None
    frames: np.ndarray | None = None  # RGB uint8 [T, H, W, 3]
    timeline: TimelineOptions | None = None  # set when mode is "timeline"
    frames_fps: float = DEFAULT_FRAMES_FPS  # frame rate of raw `frames` in a timeline


Request = Union[PingRequest, ClassifyRequest]


def quote(text: str) -> str:
    """repr of client text, cut so that a huge key or value cannot bloat a message or a log."""
    return repr(text[:QUOTE_CHARS] + ("..." if len(text) > QUOTE_CHARS else ""))


def max_request_bytes(limits: DecodeLimits) -> int:
    """The largest request worth reading: the base64 of a max_bytes upload plus the options."""
    return (limits.max_bytes + 2) // 3 * 4 + OPTIONS_ALLOWANCE_BYTES


def tensors_refused(count: int | None) -> InvalidInputError:
    """The one answer to Paddle Serving `tensors` (which the stock request op would unpickle),
    with how many were sent when the transport counted them."""
    sent = f" ({count} sent)" if count is not None else ""
    return InvalidInputError(f"tensors: this service does not accept Paddle Serving tensors{sent}; "
                             "send the video or frames as base64 strings in 'value'")


def check_envelope(keys: Sequence[str], values: Sequence[str], *, tensor_count: int,
                   limits: DecodeLimits) -> None:
    """Refuses a request whose key/value lists cannot be read as this protocol, before any of
    its values is parsed (see the module docstring)."""
    if tensor_count:
        raise tensors_refused(tensor_count)
    if len(keys) != len(values):
        raise InvalidInputError(f"the request has {len(keys)} keys but {len(values)} values; "
                                "send one value per key")
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise InvalidInputError(f"{quote(key)} is sent twice; send each key once")
        seen.add(key)
    size = sum(len(value) for value in values)
    limit = max_request_bytes(limits)
    if size > limit:
        raise LimitExceededError(
            f"request: {size} characters of values exceed the limit of {limit} (the base64 of "
            f"request_limits.max_bytes plus {OPTIONS_ALLOWANCE_BYTES} for the options)",
            limit_name="max_bytes", limit=limit)


def _decode_base64(key: str, text: str, limits: DecodeLimits) -> bytes:
    """Strict base64 (line breaks allowed, nothing else outside the alphabet), at most
    `limits.max_bytes` once decoded (check_envelope has bounded the text before).

    Unwrapped base64, what clients send, is decoded as it is: removing whitespace first would
    cost a pass over the text as long as decoding it (docs/speed.md)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        compact = _WHITESPACE.sub("", text)
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInputError(f"{key}: not valid base64") from None
    if not data:
        raise InvalidInputError(f"{key}: empty value")
    limits.check_bytes(len(data))
    return data


def _video_bytes(value: str | bytes, limits: DecodeLimits) -> bytes:
    """The upload: bytes as they came, or decoded from base64 text."""
    if isinstance(value, str):
        return _decode_base64("video", value, limits)
    if not value:
        raise InvalidInputError("video: empty value")
    limits.check_bytes(len(value))
    return value


def parse_frames_shape(text: str) -> tuple[int, int, int, int]:
    """'(T, H, W, 3)' (or '[T, H, W, 3]') -> ints; anything else, expressions included, is an
    error. Never evaluated: the value comes from the network."""
    match = _SHAPE_PATTERN.match(text)
    if match is None:
        raise InvalidInputError(
            f"frames_shape: expected four integers like '(8, 224, 224, 3)', got {quote(text)}")
    shape = tuple(int(group) for group in match.groups())
    if shape[3] != 3:
        raise InvalidInputError(f"frames_shape: the last dimension must be 3 (RGB), got {shape[3]}")
    if min(shape[:3]) < 1:
        raise InvalidInputError(f"frames_shape: T, H and W must be >= 1, got {shape[:3]}")
    return shape  # type: ignore[return-value]


def _parse_frames(frames_b64: str, shape_text: str, limits: DecodeLimits) -> np.ndarray:
    count, height, width, channels = parse_frames_shape(shape_text)
    limits.check_frames(count)
    limits.check_frame_size(width, height)
    expected = count * height * width * channels
    limits.check_bytes(expected)
    data = _decode_base64("frames", frames_b64, limits)
    if len(data) != expected:
        raise InvalidInputError(
            f"frames: {len(data)} bytes do not match frames_shape ({count}, {height}, {width}, 3)"
            f" = {expected} bytes of uint8 RGB")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, height, width, channels)


def _parse_topk(text: str | None, num_classes: int) -> int:
    if text is None:
        return min(DEFAULT_TOPK, num_classes)
    if not re.fullmatch(r"\s*\d{1,9}\s*", text) or not 1 <= int(text) <= num_classes:
        raise InvalidInputError(
            f"topk: must be an integer from 1 to {num_classes}, got {quote(text)}")
    return int(text)


def _parse_mode(text: str | None, default: str) -> str:
    if text is None:
        return default
    if text not in MODES:
        raise InvalidInputError(f"mode: must be one of {', '.join(MODES)}, got {quote(text)}")
    return text


def _parse_number(key: str, text: str) -> float:
    """A plain decimal number (no sign, exponent, inf or nan): what the options need."""
    if not _NUMBER.fullmatch(text):
        raise InvalidInputError(f"{key}: must be a number such as 10 or 2.5, got {quote(text)}")
    return float(text)


def _parse_switch(key: str, text: str) -> bool:
    """1/0 or true/false."""
    switch = _SWITCH.get(text.strip().lower())
    if switch is None:
        raise InvalidInputError(f"{key}: must be 1 or 0 (true or false), got {quote(text)}")
    return switch


def _parse_timeline(values: Mapping[str, str | bytes], mode: str,
                    has_frames: bool) -> tuple[TimelineOptions | None, float]:
    """(timeline options, frames_fps) of a request; the timeline keys only with that mode,
    frames_fps only with raw frames in it."""
    sent = [key for key in (*TIMELINE_KEYS, SMOOTH_KEY, FRAMES_FPS_KEY) if key in values]
    if mode != TIMELINE:
        if sent:
            raise InvalidInputError(f"{sent[0]}: only with mode 'timeline'")
        return None, DEFAULT_FRAMES_FPS
    numbers: dict[str, float | bool] = {key: _parse_number(key, str(values[key]))
                                        for key in sent if key != SMOOTH_KEY}
    if SMOOTH_KEY in values:
        numbers[SMOOTH_KEY] = _parse_switch(SMOOTH_KEY, str(values[SMOOTH_KEY]))
    frames_fps = float(numbers.pop(FRAMES_FPS_KEY, DEFAULT_FRAMES_FPS))
    if FRAMES_FPS_KEY in values and not has_frames:
        raise InvalidInputError(f"{FRAMES_FPS_KEY}: only with 'frames' (a video has its own "
                                "frame rate)")
    if not 0 < frames_fps <= MAX_FRAMES_FPS:
        raise InvalidInputError(f"{FRAMES_FPS_KEY}: must be > 0 and at most {MAX_FRAMES_FPS:g}, "
                                f"got {frames_fps:g}")
    try:
        return TimelineOptions(**numbers), frames_fps
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def _string_fields(fields: Mapping[str, object]) -> dict[str, str | bytes]:
    """The fields as strings, but `video`, which may also be bytes: a plain upload handed over
    in this process (serving.pipeline.attached), never base64."""
    unknown = sorted(key for key in fields if key not in ALLOWED_KEYS and key != SERVING_PROFILE_KEY)
    if unknown:
        raise InvalidInputError(
            f"unknown key {quote(unknown[0])}; allowed keys: {', '.join(ALLOWED_KEYS)}")
    for key, value in fields.items():
        if not isinstance(value, str) and not (key == "video" and isinstance(value, bytes)):
            raise InvalidInputError(
                f"{key}: value must be a string (key/value request form), got {type(value).__name__}")
    return {key: value for key, value in fields.items() if key != SERVING_PROFILE_KEY}


def parse_request(fields: Mapping[str, object], *, num_classes: int, default_mode: str,
                  limits: DecodeLimits) -> Request:
    """Validates one request's key/value fields (see the module docstring for the rules)."""
    values = _string_fields(fields)
    if PING_KEY in values:
        if len(values) > 1:
            raise InvalidInputError("ping: send it alone, without other keys")
        return PingRequest()
    topk = _parse_topk(values.get("topk"), num_classes)
    mode = _parse_mode(values.get("mode"), default_mode)
    has_video, has_frames = "video" in values, "frames" in values
    if has_video and (has_frames or "frames_shape" in values):
        raise InvalidInputError("send either 'video' or 'frames' + 'frames_shape', not both")
    timeline, frames_fps = _parse_timeline(values, mode, has_frames)
    if has_video:
        return ClassifyRequest(topk=topk, mode=mode, timeline=timeline,
                               video=_video_bytes(values["video"], limits))
    if has_frames != ("frames_shape" in values):
        raise InvalidInputError("'frames' and 'frames_shape' must be sent together")
    if not has_frames:
        raise InvalidInputError("the request has no 'video' (or 'frames' + 'frames_shape') key")
    return ClassifyRequest(topk=topk, mode=mode, timeline=timeline, frames_fps=frames_fps,
                           frames=_parse_frames(values["frames"], values["frames_shape"], limits))


def _model_json(meta: ModelMeta) -> str:
    return json.dumps({"name": meta.name, "version": meta.version,
                       "num_classes": meta.num_classes})


def _timing_json(timing_ms: Mapping[str, float]) -> str:
    return json.dumps({stage: round(ms, 2) for stage, ms in timing_ms.items()})


def ping_response(meta: ModelMeta) -> dict[str, str]:
    return {"model": _model_json(meta)}


def classification_response(meta: ModelMeta, best: Sequence[tuple[int, float]],
                            timing_ms: Mapping[str, float]) -> dict[str, str]:
    """Response values for the ranked (class_id, score) pairs `best`, best first."""
    ranked = [{"class_id": class_id, "label": meta.labels[class_id], "score": round(score, 6)}
              for class_id, score in best]
    top = ranked[0]
    return {
        "label": top["label"],
        "class_id": str(top["class_id"]),
        "score": f"{top['score']:.6f}",
        "prob": f"[{top['score']:.6f}]",
        "topk": json.dumps(ranked),
        "model": _model_json(meta),
        "timing_ms": _timing_json(timing_ms),
    }


def timeline_response(meta: ModelMeta, result: TimelineResult,
                      timing_ms: Mapping[str, float]) -> dict[str, str]:
    """Response values of a timeline (see the module docstring), each a JSON string."""
    answer = {key: json.dumps(value) for key, value in result.to_json().items()}
    return {**answer, "model": _model_json(meta),
            "timing_ms": _timing_json(timing_ms)}
