"""Frame folders as PaddleVideo's rawframe datasets store them: one JPEG per frame, numbered
from 1 (`img_00001.jpg`, `img_00002.jpg`, ...).

Reading decodes with Pillow and converts to RGB, as PaddleVideo's FrameDecoder does; writing
uses Pillow too, so a frame written here and read back is exactly what a JPEG round trip of
the decoded video frame gives (the tests rely on that).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

FRAME_PATTERN = "img_{:05}.jpg"
JPEG_QUALITY = 95  # cv2.imwrite's default, what PaddleVideo's extraction scripts write


class FrameFolderError(OSError):
    """A frame file is missing or unreadable; the message names it."""


def frame_path(folder: Path, number: int, pattern: str = FRAME_PATTERN) -> Path:
    """The file of 1-based frame `number`."""
    return folder / pattern.format(number)


def read_frames(folder: Path, numbers: Sequence[int], pattern: str = FRAME_PATTERN) -> np.ndarray:
    """RGB uint8 [len(numbers), H, W, 3] of the given 1-based frame numbers (each file once)."""
    decoded: dict[int, np.ndarray] = {}
    for number in dict.fromkeys(numbers):
        path = frame_path(folder, number, pattern)
        try:
            with Image.open(path) as image:
                decoded[number] = np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise FrameFolderError(f"{path}: {exc}") from exc
    return np.stack([decoded[number] for number in numbers])


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One RGB uint8 frame [H, W, 3] as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_round_trip(frames: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """What writing `frames` [k, H, W, 3] to a frame folder and reading them back gives."""
    return np.stack([np.asarray(Image.open(io.BytesIO(encode_jpeg(frame, quality))).convert("RGB"))
                     for frame in frames])


def write_frames(frames: Iterable[np.ndarray], folder: Path, pattern: str = FRAME_PATTERN,
                 quality: int = JPEG_QUALITY) -> int:
    """Writes frames as files 1, 2, ... of `folder` (created); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, frame in enumerate(frames, 1):
        frame_path(folder, count, pattern).write_bytes(encode_jpeg(frame, quality))
    return count


def count_frames(folder: Path, pattern: str = FRAME_PATTERN) -> int:
    """Number of consecutive frame files from 1 (what a frame list records for the folder)."""
    count = 0
    while frame_path(folder, count + 1, pattern).is_file():
        count += 1
    return count
