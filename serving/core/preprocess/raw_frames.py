"""Frames that arrived decoded, as PaddleVideo's python_serving client sends them (the service's
`frames` key), behind the interface of an opened video so that sampling treats both alike."""
from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import numpy as np

from serving.core.preprocess.cancel import CancelToken, raise_if_cancelled
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.transforms import FrameResize
from serving.core.preprocess.video_source import distinct_indices, gather_rows


class RawFrames:
    """Frames that arrived decoded (`frames` key), behind the same small interface as an
    opened video (num_frames, width, height, read(indices, resize), context manager), so
    sampling treats both alike.

    As for a video, each distinct index is resized once and only the rows are copied: a dense
    sample of one 4K frame is 30 rows of its resized copy, not 30 full-size copies. What a read
    holds is checked against `limits.max_decoded_bytes` first, and `cancel` stops the resizing
    of an abandoned request within a frame."""

    def __init__(self, frames: np.ndarray, limits: DecodeLimits = DecodeLimits(),
                 cancel: CancelToken | None = None) -> None:
        self._frames = frames
        self._limits = limits
        self._cancel = cancel

    @property
    def num_frames(self) -> int:
        return int(self._frames.shape[0])

    @property
    def width(self) -> int:
        return int(self._frames.shape[2])

    @property
    def height(self) -> int:
        return int(self._frames.shape[1])

    def read(self, indices: Sequence[int], resize: FrameResize | None = None) -> np.ndarray:
        """[len(indices), h, w, 3]: frame indices[k] at row k, resized by `resize` if given."""
        wanted = distinct_indices(indices, self.num_frames)
        size = (self.width, self.height)
        if resize is None:  # the rows are copies of the uploaded frames
            self._limits.check_held_frames(size, len(indices), size, 0)
            return self._frames[np.asarray(indices, dtype=np.int64)]
        self._limits.check_held_frames(size, 0, resize.size, len(wanted) + len(indices))
        resized = {}
        for index in wanted:
            raise_if_cancelled(self._cancel)
            resized[index] = resize(self._frames[index])
        if not indices:
            return np.empty((0, resize.size[1], resize.size[0], 3), dtype=np.uint8)
        return gather_rows(indices, resized)

    def close(self) -> None:
        """Nothing to release; present so callers can close any frame source."""

    def __enter__(self) -> "RawFrames":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
