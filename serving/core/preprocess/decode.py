"""Video bytes -> the RGB frames a model samples, decoding only those frames.

    with open_video(payload, limits=DecodeLimits(), temp_dir=workdir) as video:
        indices, frames = read_sampled(video, lambda n: sample_indices(n, spec))

`open_video` probes the payload first (container format, frame size, frame count, duration
against `limits`, no frame decoded; see video_probe.py), then opens a backend:

* "pyav": seeks to the keyframe before each frame, from memory, and skips damaged packets;
* "opencv": decodes in order up to the last wanted frame; the last resort;
* "decord" (PaddleVideo's decoder): seeks like PyAV. Only as an explicit choice, for trusted
  files (training data): it bundles libavformat 58 (2018), opens the file with no demuxer or
  protocol allow-list, and its native `get_batch` cannot be stopped or checked per frame, so
  it is no decoder for untrusted uploads.

All three return pixel-identical frames on healthy files. A backend may also be an order, e.g.
"decord,pyav": the first backend that opens the stream reads it, and the next one takes over if it
then fails to decode it (decord has no AV1 decoder, rejects some frame widths (72 px) and gives up
on damaged packets that FFmpeg's own decoder skips). "auto" is AUTO_ORDER: PyAV, then OpenCV.
Both open only the demuxers the probe accepts (video_probe.ACCEPTED_FORMATS) and never a
nested file or URL.

Frame count rule: `num_frames` is the number of video packets the container holds (its own
frame index; PaddleVideo's frames_len on healthy files). If decoding ends earlier (truncated
or damaged stream), the source lowers `num_frames` to the frames that did decode and
`read_sampled` samples again from that count, once; a stream that shrinks again is a
DecodeError. Every failure reaches the caller as a VideoInputError (DecodeError,
LimitExceededError) with a message fit for the client; no decoder exception escapes.
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from serving.core.errors import DecodeError
from serving.core.preprocess.cancel import CancelToken
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.transforms import FrameResize
from serving.core.preprocess.video_probe import probe_video
from serving.core.preprocess.video_source import (
    DAMAGED_STREAM_MESSAGE,
    BackendCannotOpen,
    Finish,
    OpenRequest,
    ShortVideoError,
    VideoSource,
)

__all__ = ["AUTO_ORDER", "BACKENDS", "DecodeLimits", "ShortVideoError", "VideoSource",
           "backend_order", "decode_all", "open_video", "read_sampled"]

BACKENDS = ("decord", "pyav", "opencv")
AUTO_ORDER = ("pyav", "opencv")  # what "auto" tries, in this order (decord: explicit only)
_BACKEND_CLASSES = {
    "decord": ("serving.core.preprocess.decode_decord", "DecordSource"),
    "pyav": ("serving.core.preprocess.decode_pyav", "PyAVSource"),
    "opencv": ("serving.core.preprocess.decode_opencv", "OpenCVSource"),
}


def _backend_class(name: str) -> type[VideoSource]:
    """Imported on first use, so a machine without decord (no aarch64 wheel) still decodes."""
    module_name, class_name = _BACKEND_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendCannotOpen(f"{name}: not installed ({exc})") from exc
    return getattr(module, class_name)


def backend_order(backend: str) -> tuple[str, ...]:
    """The decoders `backend` names, in the order they are tried: 'auto' (AUTO_ORDER), one name,
    or a comma-separated order such as 'decord,pyav'. Raises ValueError naming a bad value."""
    order = AUTO_ORDER if backend == "auto" else tuple(
        name.strip() for name in backend.split(","))
    unknown = [name for name in order if name not in BACKENDS]
    if unknown or not order or len(set(order)) != len(order):
        raise ValueError(f"decode backend must be 'auto', one of {', '.join(BACKENDS)} or a "
                         f"comma-separated order of them without repeats, got {backend!r}")
    return order


def _open_first(names: Sequence[str], request: OpenRequest) -> tuple[VideoSource, list[str]]:
    """The first backend of `names` that opens the video, and the names left after it."""
    reasons: list[str] = []
    for position, name in enumerate(names):
        try:
            return _backend_class(name)(request), list(names[position + 1:])
        except BackendCannotOpen as exc:
            reasons.append(str(exc))
    raise DecodeError(f"video: no available decoder can read its {request.probe.codec!r} video "
                      f"stream") from BackendCannotOpen("; ".join(reasons))


class _FallbackSource(VideoSource):
    """An order of backends: reads with the current one and hands over to the next one that
    opens the video when the current one fails to decode it."""

    # The wrapped backends' failures are handled in _decode_sorted.
    decode_failures: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, request: OpenRequest, order: Sequence[str]) -> None:
        super().__init__(request)
        self._request = request
        self._current, self._untried = _open_first(order, request)

    @property
    def backend(self) -> str:
        return self._current.backend

    def frames_in_flight(self, distinct: int) -> int:
        return self._current.frames_in_flight(distinct)

    def decode_cost(self, indices: Sequence[int]) -> int:
        return self._current.decode_cost(indices)

    def _decode_sorted(self, indices: list[int], finish: Finish) -> list[np.ndarray]:
        while True:
            try:  # the wrapped source's decoding step
                return self._current._decode_sorted(indices, finish)
            except self._current.decode_failures as exc:
                self._current.close()
                if not self._untried:
                    raise DecodeError(DAMAGED_STREAM_MESSAGE) from exc
                self._current, self._untried = _open_first(self._untried, self._request)
                self.check_decode_cost(self._current.decode_cost(indices))

    def _release(self) -> None:
        self._current.close()


def open_video(data: bytes, *, limits: DecodeLimits = DecodeLimits(), backend: str = "auto",
               temp_dir: str | Path | None = None,
               cancel: CancelToken | None = None) -> VideoSource:
    """Probes `data` against `limits` and opens it with `backend` (see backend_order).
    Temporary files (decord, OpenCV) go to `temp_dir` and are deleted at once. Setting
    `cancel` stops the probe and every later read within a frame (Cancelled)."""
    order = backend_order(backend)
    request = OpenRequest(data=data, probe=probe_video(data, limits, cancel=cancel),
                          limits=limits, cancel=cancel,
                          temp_dir=Path(temp_dir) if temp_dir is not None else None)
    if len(order) > 1:
        return _FallbackSource(request, order)
    return _open_first(order, request)[0]


def read_sampled(source: VideoSource, choose: Callable[[int], Sequence[int]],
                 resize: FrameResize | None = None) -> tuple[list[int], np.ndarray]:
    """(indices, frames) for `choose(num_frames)`, each frame resized by `resize` if given,
    sampled again once if the stream is shorter than its container claimed (see the frame
    count rule above)."""
    indices = list(choose(source.num_frames))
    try:
        return indices, source.read(indices, resize)
    except ShortVideoError:
        indices = list(choose(source.num_frames))
        return indices, source.read(indices, resize)


def decode_all(data: bytes, *, limits: DecodeLimits = DecodeLimits(), backend: str = "auto",
               temp_dir: str | Path | None = None) -> np.ndarray:
    """Every decodable frame, RGB uint8 [N, H, W, 3]: for comparisons, benchmarks and frame
    extraction of trusted files. It holds the whole video in memory by design, so the two
    per-request budgets (max_decoded_bytes, max_decode_pixels) do not apply; the size, frame
    count and duration limits of `limits` still do."""
    whole_video = dataclasses.replace(limits, max_decoded_bytes=sys.maxsize,
                                      max_decode_pixels=sys.maxsize)
    with open_video(data, limits=whole_video, backend=backend, temp_dir=temp_dir) as source:
        return read_sampled(source, range)[1]  # choose every index: range(num_frames)
