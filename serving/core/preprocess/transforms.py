"""Frame transforms of PaddleVideo's inference pipeline (Scale, CenterCrop, GroupFullResSample,
Image2Array + Normalization), as pure numpy/Pillow functions on RGB uint8 frames [T, H, W, 3].

Bit-exactness with PaddleVideo is the point: a checkpoint's accuracy was measured with these
exact pixels. So the resize is Pillow's BILINEAR (antialiased when shrinking, unlike OpenCV's
INTER_LINEAR, which differs by up to 139 grey levels on a 1280x720 -> 341x256 shrink), crop
origins round halves to even like Python's `round`, and normalisation runs in float32 in
PaddleVideo's order. Sizes are always (width, height), as in Pillow.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from serving.core.preprocess.cancel import CancelToken, raise_if_cancelled
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


def _pillow_image(frame: np.ndarray) -> Image.Image:
    """A Pillow image of `frame`'s RGB pixels. Pillow keeps RGB as 4 bytes per pixel, so an
    [H, W, 3] array is copied in pixel by pixel; the RGB view of 4-byte pixels (what the PyAV
    backend decodes to) is mapped as it is, as an RGBX image, whose R, G and B resize exactly as
    an RGB image's (Pillow resizes each band on its own)."""
    pixels = frame.base
    height, width = frame.shape[:2]
    if (isinstance(pixels, np.ndarray) and pixels.shape == (height, width, 4)
            and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
            and frame.strides == pixels.strides[:2] + (1,)
            and frame.__array_interface__["data"][0] == pixels.__array_interface__["data"][0]):
        return Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    return Image.fromarray(frame)


def _resize_pillow(frame: np.ndarray, size: Size) -> np.ndarray:
    return np.asarray(_pillow_image(frame).resize(size, Image.BILINEAR))[..., :3]


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
# docs/speed.md).
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
    if len(frames) == 1 or not _worth_the_pool((width, height), size):
        return np.stack([resize_one(frame, size) for frame in frames])
    return np.stack(list(shared_pool().map(lambda frame: resize_one(frame, size), frames)))


def _worth_the_pool(in_size: Size, out_size: Size) -> bool:
    """Whether resizing one frame of `in_size` to `out_size` gains from another thread."""
    largest = max(in_size[0] * in_size[1], out_size[0] * out_size[1])
    return THREADS > 1 and largest >= PARALLEL_RESIZE_MIN_PIXELS


# Frames of one read waiting on the pool for their resize, at full size, at most (read when a
# ResizeAlongside is made; 0 resizes every frame in the decoder's thread).
MAX_PENDING_RESIZES = THREADS


class ResizeAlongside:
    """One read's resizes, run on the shared pool while the decoder goes on with the next
    frame (libav, Pillow and OpenCV release the GIL), so decoding and resizing overlap on two
    cores instead of taking turns in one thread.

    Calling it with a decoded frame returns the resized frame or a Future of it; `results`
    turns a read's returns into frames. At most `max_pending` frames wait on the pool at full
    size; past that the frame is resized in the calling thread, which therefore never waits
    for the pool (it may be a pool thread itself: the PyAV backend's second decoder). A resize
    still queued when the read ends (the pool busy with other requests' work) is taken back
    and done by `results`' caller instead of waiting its turn. Each pool job checks the
    request's cancel token first; a read that fails leaves at most `max_pending` resizes to
    finish unused."""

    def __init__(self, resize: FrameResize, cancel: CancelToken | None = None,
                 max_pending: int | None = None) -> None:
        self.resize = resize
        self.max_pending = MAX_PENDING_RESIZES if max_pending is None else max_pending
        self._cancel = cancel
        self._lock = threading.Lock()  # two decoders of one read may submit side by side
        self._pending: list[Future[np.ndarray]] = []
        self._frames: dict[Future[np.ndarray], np.ndarray] = {}  # queued jobs' input frames

    def _resize_unless_cancelled(self, frame: np.ndarray) -> np.ndarray:
        raise_if_cancelled(self._cancel)
        return self.resize(frame)

    def _forget(self, job: Future[np.ndarray]) -> None:
        self._frames.pop(job, None)

    def __call__(self, frame: np.ndarray) -> np.ndarray | Future[np.ndarray]:
        if (frame.shape[1::-1] == tuple(self.resize.size)
                or not _worth_the_pool(frame.shape[1::-1], self.resize.size)):
            return self.resize(frame)
        with self._lock:
            self._pending = [job for job in self._pending if not job.done()]
            if len(self._pending) < self.max_pending:
                job = shared_pool().submit(self._resize_unless_cancelled, frame)
                self._pending.append(job)
                self._frames[job] = frame
                job.add_done_callback(self._forget)  # a full-size frame is held no longer
                return job
        return self.resize(frame)

    def results(self, items: Sequence[np.ndarray | Future[np.ndarray]]) -> list[np.ndarray]:
        """The resized frames of what the calls returned, in order."""
        frames = []
        for item in items:
            if not isinstance(item, Future):
                frames.append(item)
                continue
            queued = self._frames.get(item)  # before cancel(), which forgets it
            if queued is not None and item.cancel():  # still queued: resize it here
                frames.append(self._resize_unless_cancelled(queued))
            else:
                frames.append(item.result())
        return frames


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


@functools.lru_cache(maxsize=8)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """float32 [3, 256]: what normalize makes of each uint8 value in each channel, computed
    with PaddleVideo's float32 operations in its order, so a look-up gives the same bits."""
    values = np.arange(256, dtype=np.float32) / np.float32(255.0)
    table = values[None, :] - np.asarray(mean, dtype=np.float32)[:, None]
    table /= np.asarray(std, dtype=np.float32)[:, None]
    table.flags.writeable = False
    return table


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float],
              out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] as (x / 255 - mean) / std, in that order,
    written into `out` when given (e.g. a slice of a larger batch, sparing a concatenation).

    Every step is float32 as in PaddleVideo; the algebraically equal (x - 255 mean) / (255 std)
    differs by up to 2.4e-7, which would break bit-exact comparisons with its outputs. A uint8
    channel has only 256 values, so their results are computed once (a table of the same
    float32 operations) and looked up per pixel, straight into the channel-first layout: one
    pass over the output instead of a strided cast and three arithmetic passes.
    """
    _require_frames(frames)
    count, height, width = frames.shape[:3]
    shape = (count, 3, height, width)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {list(shape)}, got "
                         f"{out.dtype} {list(out.shape)}")
    table = _normalize_table(tuple(float(m) for m in mean), tuple(float(s) for s in std))
    for frame, target in zip(frames, out):
        # OpenCV takes a crop's view as it is (rows apart, each pixel's 3 bytes together)
        for channel, plane in enumerate(cv2.split(frame)):
            cv2.LUT(plane, table[channel], dst=target[channel])
    return out
