"""decord backend: PaddleVideo's own inference decoder, seeking with `get_batch`.

decord indexes the container's packets when it opens and decodes only from the keyframe
before each requested frame, so a sparse sample of a long video is cheap. It reads from a
temporary file, never from memory (see temp_video_file.py for the crash that avoids).
"""
from __future__ import annotations

import decord
import numpy as np

from serving.preprocess.temp_video_file import temporary_video_file
from serving.preprocess.video_source import (
    BackendCannotOpen,
    OpenRequest,
    StreamEnded,
    VideoSource,
)

_DECORD_FAILURES: tuple[type[Exception], ...] = (decord.DECORDError, RuntimeError, IndexError,
                                                  ValueError)


class DecordSource(VideoSource):
    BACKEND = "decord"
    decode_failures = _DECORD_FAILURES

    def __init__(self, request: OpenRequest) -> None:
        super().__init__(request.probe)
        with temporary_video_file(request.data, request.temp_dir) as path:
            try:
                self._reader = decord.VideoReader(str(path))
            except (*_DECORD_FAILURES, AssertionError) as exc:  # it asserts a frame count > 0
                raise BackendCannotOpen(f"decord: {exc}") from exc

    def _decode_sorted(self, indices: list[int]) -> list[np.ndarray]:
        decodable = len(self._reader)
        if indices[-1] >= decodable:
            raise StreamEnded(decodable)
        return list(self._reader.get_batch(indices).asnumpy())

    def _release(self) -> None:
        del self._reader  # decord has no close(); dropping the reader frees its decoder
