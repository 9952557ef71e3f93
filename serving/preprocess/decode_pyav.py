"""PyAV backend: decodes from memory, seeking to the keyframe before each wanted frame.

Frame i is the i-th frame in presentation order, identified by its presentation timestamp
(the probe's sorted packet timestamps). For each wanted frame the decoder either keeps
decoding forward (when the frame's keyframe is not past the current position) or seeks to
that keyframe first, so the work is a few GOPs, not the whole video.

Large frames are decoded by two decoders side by side: the wanted frames are split at a
keyframe into two runs of about equal decoding work, and a second decoder, opened on the same
bytes, decodes the later run in a pool thread (FFmpeg releases the GIL while it decodes). Each
run starts at a keyframe either way, so the pixels are those of one decoder.

Whenever timestamps cannot be trusted (missing, repeated, a decoded frame that matches no
packet, a seek that lands after the wanted frame) or the stream turns out damaged, the
source switches for good to decoding in order from the start, where frame i is simply the
i-th decoded frame: slower, always right, and the count of decodable frames is exact.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import wait

import av
import numpy as np

from serving.preprocess.decode_limits import DecodeLimits
from serving.preprocess.video_probe import PYAV_FAILURES, VideoProbe, open_container
from serving.preprocess.video_source import (
    OpenRequest,
    StreamEnded,
    VideoSource,
)
from serving.preprocess.workers import THREADS, shared_pool


class _LostTrack(Exception):
    """Timestamps and decoded frames disagree, or the stream ended before a wanted frame: only
    decoding in order can identify the frames (and count them)."""


# Frames of at least this many pixels are decoded by two decoders side by side; below it the
# second decoder's start costs about what it saves (320x240: 25 ms either way).
PARALLEL_MIN_PIXELS = 640 * 360


class _SeekingDecoder:
    """One opened container that decodes sorted frame indices by seeking to keyframes."""

    def __init__(self, data: bytes, limits: DecodeLimits, probe: VideoProbe,
                 index_of_pts: dict[int, int]) -> None:
        self._probe = probe
        self._index_of_pts = index_of_pts
        self.container = open_container(data, limits)
        self.stream = next(stream for stream in self.container.streams
                           if stream.index == probe.stream_index)

    def frames(self) -> Iterator[av.VideoFrame]:
        """Frames in decoding order from the current position. A damaged packet loses only its
        own frame (the decoder resynchronises at the next one); a damaged container ends it."""
        packets = self.container.demux(self.stream)
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

    def decode(self, indices: list[int]) -> list[np.ndarray]:
        frames: Iterator[av.VideoFrame] | None = None
        position = -1  # index of the last frame the current decoding run produced
        out: list[np.ndarray] = []
        for target in indices:
            keyframe = self._probe.keyframe_at_or_before(target)
            if frames is None or keyframe > position + 1:
                self.container.seek(self._probe.frame_pts[keyframe], stream=self.stream,
                                    backward=True)
                frames = self.frames()
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

    def close(self) -> None:
        self.container.close()


def split_at_keyframe(indices: list[int], probe: VideoProbe) -> tuple[list[int], list[int]]:
    """Sorted `indices` cut at a keyframe into two runs of about equal decoding work (frames
    decoded from a keyframe up to each wanted one); the second is empty when all the wanted
    frames depend on one keyframe."""
    costs, keyframes = [], []
    previous_target, previous_keyframe = -1, -1
    for target in indices:
        keyframe = probe.keyframe_at_or_before(target)
        costs.append(target - previous_target if keyframe == previous_keyframe
                     else target - keyframe + 1)
        keyframes.append(keyframe)
        previous_target, previous_keyframe = target, keyframe
    total, done, best_cut, best_gap = sum(costs), 0, 0, None
    for cut in range(1, len(indices)):
        done += costs[cut - 1]
        if keyframes[cut] != keyframes[cut - 1]:
            gap = abs(total - 2 * done)
            if best_gap is None or gap < best_gap:
                best_cut, best_gap = cut, gap
    if best_gap is None:
        return list(indices), []
    return indices[:best_cut], indices[best_cut:]


class PyAVSource(VideoSource):
    BACKEND = "pyav"
    decode_failures = PYAV_FAILURES

    def __init__(self, request: OpenRequest) -> None:
        super().__init__(request.probe)
        self._data = request.data
        self._limits: DecodeLimits = request.limits
        self._index_of_pts = {stamp: index
                              for index, stamp in enumerate(request.probe.frame_pts or ())}
        self._decoder = self._open()
        self._in_order = not request.probe.frame_pts

    def _open(self) -> _SeekingDecoder:
        return _SeekingDecoder(self._data, self._limits, self._probe, self._index_of_pts)

    def _decode_sorted(self, indices: list[int]) -> list[np.ndarray]:
        if not self._in_order:
            try:
                return self._decode_seeking(indices)
            except _LostTrack:
                self._in_order = True
        return self._decode_in_order(indices)

    def _decode_seeking(self, indices: list[int]) -> list[np.ndarray]:
        first, second = (split_at_keyframe(indices, self._probe)
                         if self.width * self.height >= PARALLEL_MIN_PIXELS and THREADS > 1
                         else (indices, []))
        if not second:
            return self._decoder.decode(indices)
        helper = self._open()
        try:
            later = shared_pool().submit(helper.decode, second)
            try:
                earlier = self._decoder.decode(first)
            finally:
                wait([later])  # the helper's decoder is closed below, never while it decodes
            return earlier + later.result()
        finally:
            helper.close()

    def _decode_in_order(self, indices: list[int]) -> list[np.ndarray]:
        self._decoder.close()
        self._decoder = self._open()  # restart from the first frame
        pending = iter(indices)
        target = next(pending)
        out: list[np.ndarray] = []
        decoded = 0
        for decoded, frame in enumerate(self._decoder.frames(), start=1):
            if decoded - 1 == target:
                out.append(_rgb(frame))
                target = next(pending, -1)
                if target < 0:
                    return out
        raise StreamEnded(decoded)

    def _release(self) -> None:
        self._decoder.close()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")
