"""Reads what an uploaded video declares, without decoding its frames, and refuses it early.

Every backend starts from this probe (PyAV/libavformat, which demuxes from memory), so the
limits are enforced in one place and before any decoder allocates a frame:

1. the payload size, then the container format: only MP4/MOV, Matroska/WebM and AVI are
   accepted. They carry a per-frame index, which is what makes the frame count and seeking
   trustworthy; everything else (images, text, GIF, MPEG-PS/TS, audio files) is refused
   with one clear message instead of being half-decoded. libavformat itself is told so
   (`format_whitelist`), so no other demuxer ever reads an upload: the concat (ffconcat), HLS
   and SDP demuxers would open the files, URLs and UDP sockets an upload names while
   `av.open` reads the header, before any check here could refuse it. Every nested open is
   refused as well (`io_open` raises, `protocol_whitelist` names no protocol): the upload is
   read from memory only, and a MOV data reference (`dref`) to another file stays unopened
   even if the demuxer's `enable_drefs` were turned on.
2. the frame size. libavcodec's own `max_pixels` guard is set for the probe, so even a
   decoder that must decode a frame to learn the size refuses an oversized one; the declared
   width x height is then checked against the limit.
3. the frame count: the video packets are counted by demuxing (reading the container's
   index and packet headers, no decoding). That count is `num_frames`. It equals the header's
   frame count and decord's `len()` on healthy files (PaddleVideo's frames_len); where the
   header lies (a truncated AVI declares 100 frames and holds 57) or has none (Matroska),
   the packets win. Demuxing stops at a corrupt tail, keeping the packets before it.
4. the duration, as num_frames / fps (or the container's duration when fps is unknown).

The packet timestamps, sorted, map a frame index to its presentation timestamp; the PyAV
backend seeks with them.
"""
from __future__ import annotations

import io
from bisect import bisect_right
from dataclasses import dataclass

import av

from serving.core.errors import DecodeError
from serving.core.preprocess.cancel import CancelToken, raise_if_cancelled
from serving.core.preprocess.decode_limits import DecodeLimits

ACCEPTED_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
ACCEPTED_DESCRIPTION = "MP4/MOV, Matroska/WebM or AVI"
# libavformat's names of the demuxers that read the accepted containers, as its
# `format_whitelist` option takes them (also given to OpenCV's FFmpeg capture).
ACCEPTED_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
# `protocol_whitelist` for the in-memory open: no protocol has this name, so none may open.
NO_PROTOCOL = "none"

# What PyAV raises on malformed input: its own FFmpegError family plus the builtin errors of
# the Python I/O layer it reads through.
PYAV_FAILURES: tuple[type[Exception], ...] = (av.FFmpegError, OSError, ValueError, EOFError)


@dataclass(frozen=True)
class VideoProbe:
    """The facts about one video that every backend shares."""

    container_format: str  # libavformat's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "h264"
    stream_index: int
    width: int
    height: int
    num_frames: int
    declared_frames: int  # the header's count, 0 when the container has none
    fps: float
    duration_s: float
    frame_pts: tuple[int, ...] | None  # presentation order; None when timestamps are unusable
    keyframes: tuple[int, ...]  # frame indices of keyframes, ascending

    def keyframe_at_or_before(self, index: int) -> int:
        """The last keyframe index <= `index` (0 when none is indexed before it)."""
        position = bisect_right(self.keyframes, index)
        return self.keyframes[position - 1] if position else 0


class NestedOpenRefused(PermissionError):
    """A demuxer asked to open another file or URL than the upload itself."""


def refuse_nested_open(url: str, flags: int, options: dict) -> None:
    """PyAV's `io_open` hook: an upload is its own bytes only, so every nested open fails."""
    raise NestedOpenRefused(f"nested open of {url[:80]!r} refused")


def container_options(limits: DecodeLimits) -> dict[str, str]:
    """libavformat options for opening an upload (see the module docstring). `max_pixels` here
    reaches the decoders the probe opens to learn a frame size; a decoding backend sets it on
    its own codec context too (decode_pyav)."""
    return {"format_whitelist": ACCEPTED_FORMATS, "protocol_whitelist": NO_PROTOCOL,
            "max_pixels": str(limits.max_pixels_per_frame)}


def open_container(data: bytes, limits: DecodeLimits) -> av.container.InputContainer:
    """Opens `data` from memory with only the accepted demuxers, no nested open and libavcodec's
    max_pixels guard; DecodeError when it is no accepted container."""
    try:
        return av.open(io.BytesIO(data), options=container_options(limits),
                       io_open=refuse_nested_open, metadata_errors="ignore")
    except PYAV_FAILURES:
        raise DecodeError("video: not a decodable video container") from None


def probe_video(data: bytes, limits: DecodeLimits, *,
                cancel: CancelToken | None = None) -> VideoProbe:
    """Checks `data` against `limits` and describes its video stream (see the module docstring).
    Setting `cancel` stops the packet count within a packet (Cancelled)."""
    if not data:
        raise DecodeError("video: empty payload, expected the bytes of a video file")
    limits.check_bytes(len(data))
    container = open_container(data, limits)
    try:
        return _describe(container, limits, cancel)
    finally:
        container.close()


def _describe(container: av.container.InputContainer, limits: DecodeLimits,
              cancel: CancelToken | None) -> VideoProbe:
    format_name = container.format.name
    if not ACCEPTED_CONTAINERS.intersection(format_name.split(",")):
        raise DecodeError(f"video: not a decodable video container (detected {format_name!r}; "
                          f"accepted: {ACCEPTED_DESCRIPTION})")
    stream = container.streams.best("video")
    if stream is None:
        raise DecodeError("video: the container has no video stream")
    codec = stream.codec_context
    if codec is None:  # libavcodec has no decoder for it
        raise DecodeError("video: its video codec is not supported")
    width, height = codec.width, codec.height
    if width <= 0 or height <= 0:
        raise DecodeError(
            "video: cannot read the frame size: the stream is undecodable or its frames exceed "
            f"the limit of {limits.max_pixels_per_frame} pixels per frame (max_pixels_per_frame)")
    limits.check_frame_size(width, height)
    declared = max(stream.frames, 0)
    limits.check_frames(declared)
    timestamps, keyframe_ts = _index_packets(container, stream, limits, cancel)
    if not timestamps:
        raise DecodeError("video: the video stream holds no frames")
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps > 0:
        duration = len(timestamps) / fps
    else:
        duration = container.duration / av.time_base if container.duration else 0.0
    limits.check_duration(duration)
    frame_pts, keyframes = _presentation_index(timestamps, keyframe_ts)
    return VideoProbe(container_format=format_name, codec=codec.codec.canonical_name,
                      stream_index=stream.index, width=width, height=height,
                      num_frames=len(timestamps), declared_frames=declared, fps=fps,
                      duration_s=duration, frame_pts=frame_pts, keyframes=keyframes)


def _index_packets(container: av.container.InputContainer, stream: av.VideoStream,
                   limits: DecodeLimits, cancel: CancelToken | None,
                   ) -> tuple[list[int | None], list[int | None]]:
    """Timestamps of all video packets and of the keyframe packets, in file order."""
    timestamps: list[int | None] = []
    keyframe_ts: list[int | None] = []
    try:
        for packet in container.demux(stream):
            raise_if_cancelled(cancel)
            if not packet.size:  # the demuxer's end-of-stream marker
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            timestamps.append(stamp)
            if packet.is_keyframe:
                keyframe_ts.append(stamp)
            limits.check_frames(len(timestamps), at_least=True)
    except PYAV_FAILURES:
        pass  # a corrupt or truncated tail: the packets before it are the video
    return timestamps, keyframe_ts


def _presentation_index(timestamps: list[int | None], keyframe_ts: list[int | None],
                        ) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """Sorted frame timestamps and keyframe indices, or (None, ()) when stamps are missing or
    repeated (then frames can only be identified by decoding in order)."""
    if None in timestamps or len(set(timestamps)) != len(timestamps):
        return None, ()
    frame_pts = tuple(sorted(timestamps))  # type: ignore[arg-type]
    position = {stamp: index for index, stamp in enumerate(frame_pts)}
    return frame_pts, tuple(sorted(position[stamp] for stamp in keyframe_ts))
