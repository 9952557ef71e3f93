"""Writing real compressed video files with OpenCV, and proving they read back.

The dataset has to exercise the same decoders the service uses, so clips are written as ordinary
mp4 / avi files rather than frame folders, and each file is re-opened with both decord (the
PaddleVideo inference decoder) and OpenCV (its `cv2` backend) before it is accepted: a file that only
one decoder can read, or that reports a different frame count, would make training and serving
disagree about the same clip.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import decord
import numpy as np


@dataclass(frozen=True)
class VideoCodec:
    """An OpenCV FourCC and the container extension that OpenCV's FFmpeg backend pairs it with."""

    fourcc: str
    extension: str


# Codecs that this OpenCV build encodes and decord decodes (H.264 encoders are missing from the
# opencv-python-headless wheels, hence MPEG-4 Part 2 in mp4 and Motion-JPEG / Xvid in avi).
CODECS: dict[str, VideoCodec] = {
    "mp4v": VideoCodec("mp4v", ".mp4"),
    "mjpg": VideoCodec("MJPG", ".avi"),
    "xvid": VideoCodec("XVID", ".avi"),
}

# Frame widths whose files decord 0.6 opens but cannot decode ("DECORDArrayCopyFromTo: The size
# must exactly match"), found by writing every even width from 32 to 480 with each codec above.
DECORD_UNREADABLE_WIDTHS: tuple[int, ...] = (48, 72)


class VideoFileError(RuntimeError):
    """A video could not be written, or the written file does not read back as expected."""


def _codec(name: str) -> VideoCodec:
    try:
        return CODECS[name]
    except KeyError:
        raise VideoFileError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None


def write_video(path: str | Path, frames_rgb: Iterable[np.ndarray], fps: float, codec: str) -> int:
    """Encodes RGB uint8 frames (an array [T, H, W, 3] or any iterable of [H, W, 3]) to `path` and
    returns how many frames were written. Frames may come from a generator, so a long clip never
    has to be held in memory whole. On any error the half-written file is removed."""
    path = Path(path)
    spec = _codec(codec)
    if path.suffix != spec.extension:
        raise VideoFileError(f"{path}: codec {codec!r} is written to '{spec.extension}' files, "
                             f"not '{path.suffix}'")
    frames = iter(frames_rgb)
    first = next(frames, None)
    if first is None:
        raise VideoFileError(f"{path}: no frames to write")
    shape = first.shape
    if first.dtype != np.uint8 or first.ndim != 3 or shape[2] != 3:
        raise VideoFileError(f"{path}: frames must be uint8 [H, W, 3], got {first.dtype} {shape}")
    size = (shape[1], shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*spec.fourcc), float(fps), size)
    written = 0
    try:
        if not writer.isOpened():
            raise VideoFileError(f"{path}: OpenCV cannot open a {spec.fourcc} writer at {size[0]}x{size[1]}")
        for frame in itertools.chain([first], frames):
            if frame.dtype != np.uint8 or frame.shape != shape:
                raise VideoFileError(f"{path}: frame {written} is {frame.dtype} {frame.shape}, "
                                     f"the clip started with uint8 {shape}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))  # OpenCV writes BGR
            written += 1
    except BaseException:
        writer.release()
        path.unlink(missing_ok=True)
        raise
    writer.release()
    return written


def check_video(path: str | Path, expected_frames: int, expected_size: tuple[int, int]) -> None:
    """Raises VideoFileError unless decord and OpenCV both open `path`, both report
    `expected_frames`, and both decode frames of `expected_size` (width, height), including the
    last frame for decord (the one a seek is most likely to miss)."""
    path = str(path)
    width, height = expected_size
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        decord_frames = len(reader)
        ends = reader.get_batch([0, decord_frames - 1]).asnumpy()
    except decord.DECORDError as error:
        raise VideoFileError(f"{path}: decord cannot read it: {error}") from error
    if decord_frames != expected_frames or ends.shape != (2, height, width, 3):
        raise VideoFileError(f"{path}: decord reads {decord_frames} frames of shape {ends.shape[1:]}, "
                             f"expected {expected_frames} of {(height, width, 3)}")
    capture = cv2.VideoCapture(path)
    try:
        opened = capture.isOpened()
        opencv_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = capture.read()
    finally:
        capture.release()
    if not opened or not ok:
        raise VideoFileError(f"{path}: OpenCV cannot open or decode it")
    if opencv_frames != expected_frames or first.shape != (height, width, 3):
        raise VideoFileError(f"{path}: OpenCV reports {opencv_frames} frames of shape {first.shape}, "
                             f"expected {expected_frames} of {(height, width, 3)}")
