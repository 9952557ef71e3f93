"""The one interface every video decoder backend implements.

A VideoSource is an opened video: its facts come from the shared probe (video_probe.py) and
`read(indices)` returns exactly the requested frames, in the requested order, duplicates
allowed. Index checking, ordering, frame-size checks and error translation live here once;
a backend only decodes a sorted list of distinct indices.

When decoding ends before a frame the container indexed (a truncated or damaged stream), the
source lowers `num_frames` to the frames that did decode and raises ShortVideoError, so the
caller can sample again from the real length (decode.read_sampled does that).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np

from serving.errors import DecodeError
from serving.preprocess.decode_limits import DecodeLimits
from serving.preprocess.video_probe import VideoProbe


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


class VideoSource(ABC):
    """An opened video; not thread-safe, close it (or use `with`) to release the decoder."""

    BACKEND: ClassVar[str]
    # The exceptions the backend's library raises on a damaged stream while decoding.
    decode_failures: ClassVar[tuple[type[Exception], ...]]

    def __init__(self, probe: VideoProbe) -> None:
        self._probe = probe
        self._num_frames = probe.num_frames
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

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """RGB uint8 [len(indices), H, W, 3]: frame indices[k] at row k."""
        if self._closed:
            raise ValueError("read from a closed video source")
        wanted = sorted({int(index) for index in indices})
        if wanted and (wanted[0] < 0 or wanted[-1] >= self._num_frames):
            raise ValueError(f"frame indices must lie in [0, {self._num_frames}), "
                             f"got {wanted[0]}..{wanted[-1]}")
        if not wanted:
            return np.empty((0, self.height, self.width, 3), dtype=np.uint8)
        try:
            decoded = self._decode_sorted(wanted)
        except StreamEnded as end:
            raise self._shortened(end.decoded) from None
        except self.decode_failures as exc:
            raise DecodeError(DAMAGED_STREAM_MESSAGE) from exc
        by_index = dict(zip(wanted, decoded, strict=True))
        for index, frame in by_index.items():
            self._check_frame(index, frame)
        return np.stack([by_index[int(index)] for index in indices])

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
    def _decode_sorted(self, indices: list[int]) -> list[np.ndarray]:
        """Decodes the distinct ascending `indices` to RGB uint8 [H, W, 3] frames, same order."""

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
