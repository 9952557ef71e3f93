"""Frame transforms of PaddleVideo's inference pipeline (Scale, CenterCrop, GroupFullResSample,
Image2Array + Normalization), as pure numpy/Pillow functions on RGB uint8 frames [T, H, W, 3].

Bit-exactness with PaddleVideo is the point: a checkpoint's accuracy was measured with these
exact pixels. So the resize is Pillow's BILINEAR (antialiased when shrinking, unlike OpenCV's
INTER_LINEAR, which differs by up to 139 grey levels on a 1280x720 -> 341x256 shrink), crop
origins round halves to even like Python's `round`, and normalisation runs in float32 in
PaddleVideo's order. Sizes are always (width, height), as in Pillow.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from serving.core.preprocess.workers import THREADS, shared_pool

Size = tuple[int, int]  # (width, height)
Origin = tuple[int, int]  # (x, y) of a crop's top-left corner

FIXED_RATIO_LONG_SIDE = 4 / 3  # PaddleVideo's Scale(fixed_ratio=True) forces a 4:3 frame


def _require_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be RGB uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")


def scaled_size(width: int, height: int, scale_size: int, fixed_ratio: bool = True) -> Size:
    """The (width, height) PaddleVideo's Scale(scale_size) resizes a frame to.

    A frame whose short side already equals `scale_size` is kept as it is, whatever its aspect
    ratio. Otherwise, with `fixed_ratio` the aspect ratio is ignored: landscape frames become
    int(S * 4 / 3) x S, portrait and square ones S x int(S * 4 / 3) (1280x720 -> 341x256).
    Without it the short side becomes S and the long side int(long * S / short), truncated.
    """
    if (width <= height and width == scale_size) or (height <= width and height == scale_size):
        return width, height
    if fixed_ratio:
        long_side = int(scale_size * FIXED_RATIO_LONG_SIDE)
        return (long_side, scale_size) if width > height else (scale_size, long_side)
    if width < height:
        return scale_size, int(height * scale_size / width)
    return int(width * scale_size / height), scale_size


def _resize_pillow(frame: np.ndarray, size: Size) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def _resize_opencv(frame: np.ndarray, size: Size) -> np.ndarray:
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


RESIZE_BACKENDS: dict[str, Callable[[np.ndarray, Size], np.ndarray]] = {
    "pillow": _resize_pillow,  # bit-exact with PaddleVideo
    "opencv": _resize_opencv,  # faster; equal within 1 level when enlarging, not when shrinking
}


@dataclass(frozen=True)
class FrameResize:
    """Resizes one RGB frame [H, W, 3] to `size` with `backend`, as resize_frames does each of
    its frames (so resizing frame by frame right after decoding gives the same pixels).

    Decoders take one so that a request holds each sampled frame at the model's scale, not at
    the upload's: a 4K frame is 26 MB, its 341x256 version 0.26 MB."""

    size: Size
    backend: str = "pillow"

    def __post_init__(self) -> None:
        if self.backend not in RESIZE_BACKENDS:
            raise ValueError(f"resize backend must be one of {sorted(RESIZE_BACKENDS)}, "
                             f"got {self.backend!r}")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[1::-1] == tuple(self.size):
            return frame
        return RESIZE_BACKENDS[self.backend](frame, self.size)


# Frames whose input or output has at least this many pixels are resized on the shared pool;
# smaller ones in the calling thread, where the pool's hand-offs cost more than the second core
# saves (training-size clips lose on the pool; the break-even is about this size; figures:
# README, "Speed: where the time goes").
PARALLEL_RESIZE_MIN_PIXELS = 240 * 180


def resize_frames(frames: np.ndarray, size: Size, backend: str = "pillow") -> np.ndarray:
    """Resizes every frame to `size` (width, height), several frames at a time when they are
    large; returns `frames` itself if already so."""
    _require_frames(frames)
    try:
        resize_one = RESIZE_BACKENDS[backend]
    except KeyError:
        raise ValueError(f"resize backend must be one of {sorted(RESIZE_BACKENDS)}, "
                         f"got {backend!r}") from None
    height, width = frames.shape[1:3]
    if (width, height) == tuple(size):
        return frames
    largest = max(width * height, size[0] * size[1])
    if len(frames) == 1 or THREADS == 1 or largest < PARALLEL_RESIZE_MIN_PIXELS:
        return np.stack([resize_one(frame, size) for frame in frames])
    return np.stack(list(shared_pool().map(lambda frame: resize_one(frame, size), frames)))


def _require_fits(width: int, height: int, crop_size: int) -> None:
    if not 1 <= crop_size <= min(width, height):
        raise ValueError(f"crop size {crop_size} does not fit a {width}x{height} frame")


def center_crop_origin(width: int, height: int, crop_size: int) -> Origin:
    """CenterCrop's top-left corner: round((W - c) / 2), halves to even (341 -> x = 58)."""
    _require_fits(width, height, crop_size)
    return round((width - crop_size) / 2), round((height - crop_size) / 2)


def three_crop_origins(width: int, height: int, crop_size: int) -> list[Origin]:
    """GroupFullResSample's three crops, in its order: left, right, centre.

    Steps are a quarter of the slack, floored, so on 341x256 with 224 the right crop starts at
    x = 116 and the last column is never used, as in PaddleVideo.
    """
    _require_fits(width, height, crop_size)
    w_step = (width - crop_size) // 4
    h_step = (height - crop_size) // 4
    return [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 2 * h_step)]


def crop(frames: np.ndarray, origin: Origin, crop_size: int) -> np.ndarray:
    """The square `crop_size` window at `origin` of every frame (a view, no copy)."""
    _require_frames(frames)
    x, y = origin
    _require_fits(frames.shape[2] - x, frames.shape[1] - y, crop_size)
    return frames[:, y:y + crop_size, x:x + crop_size]


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] as (x / 255 - mean) / std, in that order.

    Every step is float32 as in PaddleVideo; the algebraically equal (x - 255 mean) / (255 std)
    differs by up to 2.4e-7, which would break bit-exact comparisons with its outputs.
    """
    _require_frames(frames)
    channel_mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    channel_std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    out = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)
    out /= np.float32(255.0)
    out -= channel_mean
    out /= channel_std
    return out
