"""The one interface every video decoder backend implements.

A VideoSource is an opened video: its facts come from the shared probe (video_probe.py) and
`read(indices, resize)` returns exactly the requested frames, in the requested order,
duplicates allowed. Index checking, ordering, frame-size checks, budgets and error translation
live here once; a backend only decodes a sorted list of distinct indices and hands each decoded
frame to `_finish`.

What a read may cost is checked before any frame is decoded (DecodeLimits):
* the decoding work, `decode_cost(indices)` frames x pixels (max_decode_pixels): frames from
  each wanted frame's keyframe for a seeking backend, every frame up to the last wanted one
  for an in-order one;
* the memory, the decoded frames held at once (max_decoded_bytes). Each distinct frame is
  decoded once and, given a `resize`, resized right after it is decoded (on the shared pool
  while the next one decodes), so only a backend's frames in flight and those waiting for
  their resize (MAX_PENDING_RESIZES) are held at full size; the rows of duplicated indices
  are gathered from the resized frames at the end.
Every decoded frame is checked against the probe's size before it is converted (a stream whose
resolution changes mid-way is refused), and the request's cancel token is checked once per
frame (cancel.py), so abandoned work stops within a frame.

When decoding ends before a frame the container indexed (a truncated or damaged stream), the
source lowers `num_frames` to the frames that did decode and raises ShortVideoError, so the
caller can sample again from the real length (decode.read_sampled does that).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np

from serving.core.errors import DecodeError
from serving.core.preprocess.cancel import CancelToken, raise_if_cancelled
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.transforms import (
    MAX_PENDING_RESIZES,
    FrameResize,
    ResizeAlongside,
)
from serving.core.preprocess.video_probe import VideoProbe

# What a backend calls on each wanted frame once it is RGB: cancel check, size check, resize
# (on the shared pool, overlapping the decoding: then a Future of the frame, see
# transforms.ResizeAlongside). Backends collect what it returns; `read` resolves it.
Finished = np.ndarray | Future[np.ndarray]
Finish = Callable[[int, np.ndarray], Finished]


DAMAGED_STREAM_MESSAGE = "video: the video stream is damaged and cannot be decoded"


class ShortVideoError(DecodeError):
    """Fewer frames decode than the container indexed; the source's num_frames was lowered."""

    def __init__(self, indexed: int, decodable: int) -> None:
        super().__init__(f"video: only {decodable} of the {indexed} frames in the container "
                         f"can be decoded (truncated or damaged stream)")
        self.indexed = indexed
        self.decodable = decodable


class BackendCannotOpen(Exception):
    """This backend cannot open the video (library missing or container rejected); another may."""


class StreamEnded(Exception):
    """Raised by a backend when decoding stops after `decoded` frames (indices 0..decoded-1)."""

    def __init__(self, decoded: int) -> None:
        super().__init__(f"the stream ended after {decoded} frames")
        self.decoded = decoded


@dataclass(frozen=True)
class OpenRequest:
    """Everything a backend may need to open one video."""

    data: bytes
    probe: VideoProbe
    limits: DecodeLimits
    temp_dir: Path | None
    cancel: CancelToken | None = None  # set when the request is abandoned


def seek_decode_cost(indices: Sequence[int], probe: VideoProbe) -> list[int]:
    """Frames a seeking decoder decodes for each of the sorted distinct `indices`: from the
    wanted frame's keyframe, or on from the previous wanted frame when both share a keyframe."""
    costs: list[int] = []
    previous_target, previous_keyframe = -1, -1
    for target in indices:
        keyframe = probe.keyframe_at_or_before(target)
        costs.append(target - previous_target if keyframe == previous_keyframe
                     else target - keyframe + 1)
        previous_target, previous_keyframe = target, keyframe
    return costs


class VideoSource(ABC):
    """An opened video; not thread-safe, close it (or use `with`) to release the decoder."""

    BACKEND: ClassVar[str]
    # The exceptions the backend's library raises on a damaged stream while decoding.
    decode_failures: ClassVar[tuple[type[Exception], ...]]
    # Frames a backend holds at full size at once while it decodes (decoders side by side).
    FRAMES_IN_FLIGHT: ClassVar[int] = 1

    def __init__(self, request: OpenRequest) -> None:
        self._probe = request.probe
        self._limits = request.limits
        self._cancel = request.cancel
        self._num_frames = request.probe.num_frames
        self._closed = False

    @property
    def backend(self) -> str:
        """The decoder library in use: 'decord', 'pyav' or 'opencv'."""
        return self.BACKEND

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        return self._probe.fps

    @property
    def width(self) -> int:
        return self._probe.width

    @property
    def height(self) -> int:
        return self._probe.height

    @property
    def duration_s(self) -> float:
        fps = self._probe.fps
        return self._num_frames / fps if fps > 0 else self._probe.duration_s

    @property
    def probe(self) -> VideoProbe:
        return self._probe

    def frames_in_flight(self, distinct: int) -> int:
        """Frames this backend holds at full size at once while it decodes `distinct` frames."""
        return min(self.FRAMES_IN_FLIGHT, distinct)

    def decode_cost(self, indices: Sequence[int]) -> int:
        """Frames decoded to read the sorted distinct `indices`: from each one's keyframe when
        the probe could index the stream, else every frame up to the last one (in order)."""
        if not self._probe.frame_pts:
            return indices[-1] + 1
        return sum(seek_decode_cost(indices, self._probe))

    def check_decode_cost(self, frames: int) -> None:
        """LimitExceededError (max_decode_pixels) if decoding `frames` frames costs too much."""
        self._limits.check_decode_pixels(frames, self.width, self.height)

    def read(self, indices: Sequence[int], resize: FrameResize | None = None) -> np.ndarray:
        """RGB uint8 [len(indices), H, W, 3]: frame indices[k] at row k; with `resize`, each
        frame is resized (once per distinct index, right after it is decoded)."""
        if self._closed:
            raise ValueError("read from a closed video source")
        wanted = distinct_indices(indices, self._num_frames)
        out_size = resize.size if resize is not None else (self.width, self.height)
        if not wanted:
            return np.empty((0, out_size[1], out_size[0], 3), dtype=np.uint8)
        self.check_decode_cost(self.decode_cost(wanted))
        if resize is None:  # every decoded frame is kept, and copied into its rows
            self._limits.check_held_frames(out_size, len(wanted) + len(indices), out_size, 0)
        else:  # frames in flight (decoding, or waiting for their resize); the resized ones,
            # and their rows
            in_flight = min(self.frames_in_flight(len(wanted)) + MAX_PENDING_RESIZES, len(wanted))
            self._limits.check_held_frames((self.width, self.height), in_flight,
                                           out_size, len(wanted) + len(indices))
        resizer = ResizeAlongside(resize, self._cancel) if resize is not None else None
        finish = self._finisher(resizer)
        try:
            decoded = self._decode_sorted(wanted, finish)
        except StreamEnded as end:
            raise self._shortened(end.decoded) from None
        except self.decode_failures as exc:
            raise DecodeError(DAMAGED_STREAM_MESSAGE) from exc
        frames = resizer.results(decoded) if resizer is not None else decoded
        return gather_rows(indices, dict(zip(wanted, frames, strict=True)))

    def _finisher(self, resizer: ResizeAlongside | None) -> Finish:
        def finish(index: int, frame: np.ndarray) -> Finished:
            raise_if_cancelled(self._cancel)
            self._check_frame(index, frame)
            return resizer(frame) if resizer is not None else frame
        return finish

    def check_decoded_size(self, width: int, height: int) -> None:
        """Every decoded frame, before conversion: over max_pixels_per_frame is a
        LimitExceededError, another size than the probe's a DecodeError (a stream whose
        resolution changes mid-way, which the probe cannot see)."""
        if (width, height) == (self.width, self.height):
            return
        if width * height > self._limits.max_pixels_per_frame:
            self._limits.check_frame_size(width, height)
        raise DecodeError(f"video: a frame of {width}x{height} follows {self.width}x{self.height}"
                          f" frames; a frame size that changes mid-stream is not supported")

    def tick(self) -> None:
        """Called once per decoded frame, wanted or not: stops abandoned work (Cancelled)."""
        raise_if_cancelled(self._cancel)

    def _shortened(self, decodable: int) -> DecodeError:
        if decodable <= 0:
            return DecodeError("video: no frame of the video stream can be decoded")
        indexed = self._num_frames
        self._num_frames = min(decodable, indexed)
        return ShortVideoError(indexed, self._num_frames)

    def _check_frame(self, index: int, frame: np.ndarray) -> None:
        expected = (self.height, self.width, 3)
        if frame.shape != expected or frame.dtype != np.uint8:
            raise DecodeError(f"video: frame {index} decodes as {list(frame.shape)} but the stream "
                              f"declares {self.width}x{self.height} RGB frames")

    @abstractmethod
    def _decode_sorted(self, indices: list[int], finish: Finish) -> list[np.ndarray]:
        """Decodes the distinct ascending `indices` to RGB uint8 [H, W, 3] frames, same order,
        each passed through `finish(index, frame)` as soon as it is decoded. Calls `tick()` for
        every frame it decodes and `check_decoded_size` before converting one."""

    @abstractmethod
    def _release(self) -> None:
        """Frees the backend's decoder and file handles (called once)."""

    def close(self) -> None:
        """Releases the decoder; idempotent."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def distinct_indices(indices: Sequence[int], num_frames: int) -> list[int]:
    """The distinct frame indices of `indices`, ascending: what a source decodes (or resizes)
    once each. ValueError for an index outside [0, num_frames)."""
    wanted = sorted({int(index) for index in indices})
    if wanted and (wanted[0] < 0 or wanted[-1] >= num_frames):
        raise ValueError(f"frame indices must lie in [0, {num_frames}), "
                         f"got {wanted[0]}..{wanted[-1]}")
    return wanted


def gather_rows(indices: Sequence[int], by_index: dict[int, np.ndarray]) -> np.ndarray:
    """[len(indices), H, W, 3]: the frame of indices[k] at row k (the only copy per row)."""
    return np.stack([by_index[int(index)] for index in indices])
