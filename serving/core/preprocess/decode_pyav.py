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
i-th decoded frame: slower, always right, and the count of decodable frames is exact. That
switch is checked against the decoding budget again (max_decode_pixels), as it costs every
frame up to the last wanted one.

Every decoder runs with libavcodec's `max_pixels` set on its own codec context (the
container's options reach only the probe's decoders), and every decoded frame's size is
checked before it is converted: a stream whose resolution changes mid-way is refused.
Both decoders check the request's cancel token once per frame, so a request abandoned by
its deadline stops decoding within a frame, on the pool as in the request's thread.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait

import av
import numpy as np

from serving.core.preprocess.cancel import CancelToken, raise_if_cancelled
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.video_probe import PYAV_FAILURES, VideoProbe, open_container
from serving.core.preprocess.video_source import (
    Finish,
    OpenRequest,
    StreamEnded,
    VideoSource,
    seek_decode_cost,
)

# What the decoders make of each wanted av.VideoFrame: its RGB pixels, finished (resized).
Convert = Callable[[int, av.VideoFrame], np.ndarray]
from serving.core.preprocess.workers import THREADS, shared_pool


def rgb_pixels(frame: av.VideoFrame) -> np.ndarray:
    """The frame's RGB pixels, [H, W, 3] uint8: the R, G, B bytes of libswscale's `rgba`
    conversion (the same values as its `rgb24`), a view Pillow maps without a copy when it
    resizes (transforms._pillow_image), where `rgb24` pixels must be expanded first."""
    return frame.to_ndarray(format="rgba")[..., :3]


class _LostTrack(Exception):
    """Timestamps and decoded frames disagree, or the stream ended before a wanted frame: only
    decoding in order can identify the frames (and count them)."""


# Frames of at least this many pixels are decoded by two decoders side by side; below it the
# second decoder's start costs about what it saves (at 320x240 both ways take the same time;
# docs/speed.md).
PARALLEL_MIN_PIXELS = 640 * 360


class SeekingDecoder:
    """One opened container that decodes sorted frame indices by seeking to keyframes."""

    def __init__(self, data: bytes, limits: DecodeLimits, probe: VideoProbe,
                 index_of_pts: dict[int, int], *cancel: CancelToken | None) -> None:
        self._probe = probe
        self._index_of_pts = index_of_pts
        self._limits = limits
        self._cancel = cancel  # the request's token, and the helper's own stop signal
        self.container = open_container(data, limits)
        self.stream = next(stream for stream in self.container.streams
                           if stream.index == probe.stream_index)
        # Opened lazily at the first packet, with these options: libavcodec then refuses to
        # allocate a frame over the limit, whatever size a later SPS or key frame declares.
        self.stream.codec_context.options = {"max_pixels": str(limits.max_pixels_per_frame)}

    def frames(self) -> Iterator[av.VideoFrame]:
        """Frames in decoding order from the current position. A damaged packet loses only its
        own frame (the decoder resynchronises at the next one); a damaged container ends it.
        A packet refused because it grows the frame over the pixel limit ends the read with
        LimitExceededError; a set cancel token ends it with Cancelled."""
        packets = self.container.demux(self.stream)
        while True:
            raise_if_cancelled(*self._cancel)
            try:
                packet = next(packets)
            except (StopIteration, *PYAV_FAILURES):
                return
            try:
                decoded = packet.decode()
            except PYAV_FAILURES:
                self._refuse_oversized()
                continue
            for frame in decoded:
                raise_if_cancelled(*self._cancel)
                yield frame

    def _refuse_oversized(self) -> None:
        """After a failed packet: libavcodec's max_pixels guard leaves the size the stream
        asked for in the codec context; over the limit, that is the answer, not 'damaged'."""
        codec = self.stream.codec_context
        self._limits.check_frame_size(codec.width, codec.height)

    def decode(self, indices: list[int], convert: Convert) -> list[np.ndarray]:
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
                    out.append(convert(target, frame))
                    break
            else:
                raise _LostTrack()
        return out

    def close(self) -> None:
        self.container.close()


def _wait_uninterrupted(run: Future, stop: CancelToken) -> None:
    """Waits for the helper's `run` to end even if this thread is interrupted meanwhile (a stage
    deadline raises into it): closing the helper's decoder while it decodes would be a
    use-after-free in libav. An interruption sets `stop`, so the helper ends within a frame;
    the interruption is raised again once it has."""
    interrupted: BaseException | None = None
    while True:
        try:
            wait([run])
            break
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            stop.set()
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def split_at_keyframe(indices: list[int], probe: VideoProbe) -> tuple[list[int], list[int]]:
    """Sorted `indices` cut at a keyframe into two runs of about equal decoding work (frames
    decoded from a keyframe up to each wanted one); the second is empty when all the wanted
    frames depend on one keyframe."""
    costs = seek_decode_cost(indices, probe)
    keyframes = [probe.keyframe_at_or_before(target) for target in indices]
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
        super().__init__(request)
        self._data = request.data
        self._index_of_pts = {stamp: index
                              for index, stamp in enumerate(request.probe.frame_pts or ())}
        self._decoder = self._open()
        self._in_order = not request.probe.frame_pts

    def frames_in_flight(self, distinct: int) -> int:
        return min(2 if self._splits() else 1, distinct)

    def decode_cost(self, indices: list[int]) -> int:
        return indices[-1] + 1 if self._in_order else super().decode_cost(indices)

    def _splits(self) -> bool:
        """Whether reads may use two decoders side by side (large frames, several cores)."""
        return (not self._in_order and THREADS > 1
                and self.width * self.height >= PARALLEL_MIN_PIXELS)

    def _open(self, stop: CancelToken | None = None) -> SeekingDecoder:
        return SeekingDecoder(self._data, self._limits, self._probe, self._index_of_pts,
                              self._cancel, stop)

    def _converter(self, finish: Finish) -> Convert:
        """RGBA views for frames that `finish` resizes (Pillow maps them); a frame it keeps as
        it is (a read without resize) in RGB24, 3 bytes per pixel as the budget counts it, and
        so are the rest of the read's frames."""
        resizing = True

        def convert(index: int, frame: av.VideoFrame) -> np.ndarray:
            nonlocal resizing
            self.check_decoded_size(frame.width, frame.height)
            if resizing:
                rgb = rgb_pixels(frame)
                finished = finish(index, rgb)
                if finished is not rgb:
                    return finished
                resizing = False
                return frame.to_ndarray(format="rgb24")
            return finish(index, frame.to_ndarray(format="rgb24"))
        return convert

    def _decode_sorted(self, indices: list[int], finish: Finish) -> list[np.ndarray]:
        convert = self._converter(finish)
        if not self._in_order:
            try:
                return self._decode_seeking(indices, convert)
            except _LostTrack:
                self._in_order = True
                self.check_decode_cost(self.decode_cost(indices))
        return self._decode_in_order(indices, convert)

    def _decode_seeking(self, indices: list[int], convert: Convert) -> list[np.ndarray]:
        first, second = split_at_keyframe(indices, self._probe) if self._splits() else (
            indices, [])
        if not second:
            return self._decoder.decode(indices, convert)
        stop = threading.Event()  # this read failed: the helper's work is wasted
        helper = self._open(stop)
        try:
            later = shared_pool().submit(helper.decode, second, convert)
            try:
                earlier = self._decoder.decode(first, convert)
            except BaseException:
                stop.set()
                raise
            finally:
                _wait_uninterrupted(later, stop)
            return earlier + later.result()
        finally:
            helper.close()  # never while it decodes: the helper's run has ended

    def _decode_in_order(self, indices: list[int], convert: Convert) -> list[np.ndarray]:
        self._decoder.close()
        self._decoder = self._open()  # restart from the first frame
        pending = iter(indices)
        target = next(pending)
        out: list[np.ndarray] = []
        decoded = 0
        for decoded, frame in enumerate(self._decoder.frames(), start=1):
            if decoded - 1 == target:
                out.append(convert(target, frame))
                target = next(pending, -1)
                if target < 0:
                    return out
        raise StreamEnded(decoded)

    def _release(self) -> None:
        self._decoder.close()
