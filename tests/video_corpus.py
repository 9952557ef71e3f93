"""Real video files for the service tests, written with PyAV, and the damaged variants of them.

`encode_video` writes any codec/container/pixel format this machine's FFmpeg can encode (the
codec test matrix and the odd sources of the bad-input corpus); the byte-level helpers derive
truncated, corrupted and lying files from good ones. Content is a bright square moving over a
noisy background, so frames differ and a broken pipeline cannot pass by accident.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving_square_frames(num_frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 [num_frames, height, width, 3]."""
    rng = np.random.RandomState(seed)
    background = rng.randint(0, 120, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    side = max(1, min(width, height) // 3)
    for index in range(num_frames):
        x = (index * 3) % max(1, width - side)
        frames[index, height // 3: height // 3 + side, x: x + side] = (40 * seed % 256, 220, 250)
    return frames


def encode_video(path: Path, *, codec: str = "libx264", container: str | None = None,
                 num_frames: int = 24, width: int = 96, height: int = 72,
                 fps: Fraction | int = 12, pix_fmt: str = "yuv420p",
                 options: dict[str, str] | None = None, codec_tag: str | None = None,
                 seed: int = 0, frames: Iterable[np.ndarray] | None = None) -> Path:
    """Encodes `num_frames` moving-square frames with `codec` into `path` (container from the
    suffix unless given), or `frames` (RGB uint8 [height, width, 3] each) instead when given.
    num_frames 0 writes a video stream without any frame."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = options
        if codec_tag:
            stream.codec_context.codec_tag = codec_tag
        output.start_encoding()  # writes the header even when no frame follows
        if frames is None:
            frames = moving_square_frames(num_frames, width, height, seed)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def encode_audio_only(path: Path, *, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An MP4 holding one AAC audio track and no video."""
    samples = (np.sin(np.arange(int(seconds * rate)) * 0.05) * 0.3).astype(np.float32)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame_size = 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[start:start + frame_size][None]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def truncated(data: bytes, fraction: float) -> bytes:
    """The first `fraction` of the file, as an interrupted upload leaves it."""
    return data[: int(len(data) * fraction)]


def corrupted_middle(data: bytes, fraction: float = 0.2, seed: int = 0) -> bytes:
    """`fraction` of the file, centred, overwritten with random bytes (a damaged disk sector
    or a broken transfer)."""
    span = int(len(data) * fraction)
    start = (len(data) - span) // 2
    noise = np.random.RandomState(seed).bytes(span)
    return data[:start] + noise + data[start + span:]


def declare_frame_size(avi_mjpeg: bytes, width: int, height: int) -> bytes:
    """An MJPEG AVI rewritten to declare `width` x `height` frames everywhere the size is
    written (AVI main header, stream format, every JPEG's SOF0), pixels unchanged: a
    decompression bomb, a tiny file whose frames would need gigabytes once decoded."""
    data = bytearray(avi_mjpeg)
    avih = data.index(b"avih") + 8  # after the chunk id and size
    struct.pack_into("<II", data, avih + 32, width, height)  # dwWidth, dwHeight
    strf = data.index(b"strf") + 8
    struct.pack_into("<ii", data, strf + 4, width, height)  # biWidth, biHeight
    position = data.find(b"\xff\xc0")
    while position != -1:
        struct.pack_into(">HH", data, position + 5, height, width)  # after length and precision
        position = data.find(b"\xff\xc0", position + 2)
    return bytes(data)


def jpeg_image(width: int = 64, height: int = 48) -> bytes:
    """One JPEG picture (an image, not a video container)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mjpeg") as output:
        stream = output.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(moving_square_frames(1, width, height)[0], format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            output.mux(packet)
    return buffer.getvalue()


def costly_to_decode(num_frames: int, *, width: int = 640, height: int = 480) -> bytes:
    """A small MP4 that takes seconds to decode: one MPEG-4 keyframe followed by the same
    predicted frame repeated `num_frames - 1` times (muxed, not encoded: built in a fraction of
    a second). With a single keyframe, reaching a late frame means decoding every frame before
    it, so the sampled frames of 30000 such frames cost seconds of CPU for about 5 MB (640x480:
2.7 s with PyAV, 5.2 s with decord, measured; at 320x240 PyAV needs only ~1.3 s)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(num_frames)}  # no second keyframe
        picture = av.VideoFrame.from_ndarray(moving_square_frames(1, width, height)[0],
                                             format="rgb24")
        keyframe, predicted = [*stream.encode(picture), *stream.encode(picture), *stream.encode()]
        output.mux(keyframe)
        step = predicted.pts - keyframe.pts
        for index in range(1, num_frames):
            copy = av.Packet(bytes(predicted))
            copy.pts = copy.dts = index * step
            copy.time_base, copy.stream = predicted.time_base, stream
            output.mux(copy)
    return buffer.getvalue()
