"""PyAV backend: decodes from memory, seeking to the keyframe before each wanted frame.

Frame i is the i-th frame in presentation order, identified by its presentation timestamp
(the probe's sorted packet timestamps). For each wanted frame the decoder either keeps
decoding forward (when the frame's keyframe is not past the current position) or seeks to
that keyframe first, so the work is a few GOPs, not the whole video.

Whenever timestamps cannot be trusted (missing, repeated, a decoded frame that matches no
packet, a seek that lands after the wanted frame) or the stream turns out damaged, the
source switches for good to decoding in order from the start, where frame i is simply the
i-th decoded frame: slower, always right, and the count of decodable frames is exact.
"""
from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np

from serving.preprocess.decode_limits import DecodeLimits
from serving.preprocess.video_probe import PYAV_FAILURES, open_container
from serving.preprocess.video_source import (
    OpenRequest,
    StreamEnded,
    VideoSource,
)


class _LostTrack(Exception):
    """Timestamps and decoded frames disagree, or the stream ended before a wanted frame: only
    decoding in order can identify the frames (and count them)."""


class PyAVSource(VideoSource):
    BACKEND = "pyav"
    decode_failures = PYAV_FAILURES

    def __init__(self, request: OpenRequest) -> None:
        super().__init__(request.probe)
        self._data = request.data
        self._limits: DecodeLimits = request.limits
        self._open()
        self._frame_pts = request.probe.frame_pts or ()
        self._index_of_pts = {stamp: index for index, stamp in enumerate(self._frame_pts)}
        self._in_order = not self._frame_pts

    def _open(self) -> None:
        self._container = open_container(self._data, self._limits)
        self._stream = next(stream for stream in self._container.streams
                            if stream.index == self._probe.stream_index)

    def _decode_sorted(self, indices: list[int]) -> list[np.ndarray]:
        if not self._in_order:
            try:
                return self._decode_seeking(indices)
            except _LostTrack:
                self._in_order = True
        return self._decode_in_order(indices)

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Frames in decoding order from the current position. A damaged packet loses only its
        own frame (the decoder resynchronises at the next one); a damaged container ends it."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except (StopIteration, *PYAV_FAILURES):
                return
            try:
                decoded = packet.decode()
            except PYAV_FAILURES:
                continue
            yield from decoded

    def _decode_seeking(self, indices: list[int]) -> list[np.ndarray]:
        frames: Iterator[av.VideoFrame] | None = None
        position = -1  # index of the last frame the current decoding run produced
        out: list[np.ndarray] = []
        for target in indices:
            keyframe = self._probe.keyframe_at_or_before(target)
            if frames is None or keyframe > position + 1:
                self._container.seek(self._frame_pts[keyframe], stream=self._stream,
                                     backward=True)
                frames = self._frames()
            for frame in frames:
                position = self._index_of_pts.get(frame.pts, -1)
                if position < 0 or position > target:
                    raise _LostTrack()
                if position == target:
                    out.append(_rgb(frame))
                    break
            else:
                raise _LostTrack()
        return out

    def _decode_in_order(self, indices: list[int]) -> list[np.ndarray]:
        self._container.close()
        self._open()  # restart from the first frame
        pending = iter(indices)
        target = next(pending)
        out: list[np.ndarray] = []
        decoded = 0
        for decoded, frame in enumerate(self._frames(), start=1):
            if decoded - 1 == target:
                out.append(_rgb(frame))
                target = next(pending, -1)
                if target < 0:
                    return out
        raise StreamEnded(decoded)

    def _release(self) -> None:
        self._container.close()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")
