"""Sampled frames -> network input, for the two inference modes of PP-TSM, driven by the
model's PreprocessSpec so serving and evaluation cannot drift apart.

* uniform: Scale -> CenterCrop -> normalise; T frames -> float32 [T, 3, c, c].
* dense:   Scale -> three crops (left, right, centre) -> normalise; clips * T frames ->
  float32 [crops * clips * T, 3, c, c] in crop-major order (row = crop * clips * T +
  clip * T + t), the layout PaddleVideo's dense test pipeline feeds its head, which averages
  the features of all rows.

Add the batch axis (`x[None]`) to obtain the [1, rows, 3, c, c] network input.
"""
from __future__ import annotations

import numpy as np

from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.sampling import dense_indices, uniform_indices
from serving.core.preprocess.transforms import (
    Origin,
    center_crop_origin,
    crop,
    normalize,
    resize_frames,
    scaled_size,
    three_crop_origins,
)

SAMPLING_MODES = ("uniform", "dense")


def _mode_or_default(mode: str | None, spec: PreprocessSpec) -> str:
    chosen = spec.sampling if mode is None else mode
    if chosen not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {chosen!r}")
    return chosen


def sample_indices(num_frames: int, spec: PreprocessSpec, mode: str | None = None) -> list[int]:
    """0-based frame indices to decode for `mode` ('uniform' or 'dense'; default spec.sampling)."""
    if _mode_or_default(mode, spec) == "dense":
        return dense_indices(num_frames, spec.num_seg, spec.dense_clips, spec.dense_span)
    return uniform_indices(num_frames, spec.num_seg)


def _require_count(frames: np.ndarray, expected: int, what: str) -> None:
    if frames.ndim != 4 or frames.shape[0] != expected:
        raise ValueError(f"{what} needs {expected} sampled frames [T, H, W, 3], "
                         f"got shape {list(frames.shape)}")


def _scaled(frames: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    height, width = frames.shape[1:3]
    size = scaled_size(width, height, spec.scale_size, spec.fixed_ratio)
    return resize_frames(frames, size, spec.resize_backend)


def _dense_crop_origins(width: int, height: int, spec: PreprocessSpec) -> list[Origin]:
    if spec.dense_crops == 3:
        return three_crop_origins(width, height, spec.crop_size)
    if spec.dense_crops == 1:
        return [center_crop_origin(width, height, spec.crop_size)]
    raise ValueError(f"dense_crops must be 1 (centre) or 3 (left, right, centre), "
                     f"got {spec.dense_crops}")


def preprocess_uniform(frames: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """T sampled RGB uint8 frames [T, H, W, 3] -> float32 [T, 3, crop, crop]."""
    _require_count(frames, spec.num_seg, "uniform preprocessing")
    scaled = _scaled(frames, spec)
    height, width = scaled.shape[1:3]
    origin = center_crop_origin(width, height, spec.crop_size)
    return normalize(crop(scaled, origin, spec.crop_size), spec.mean, spec.std)


def preprocess_dense(frames: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """clips * T sampled frames (clip by clip) -> float32 [crops * clips * T, 3, crop, crop]."""
    _require_count(frames, spec.dense_clips * spec.num_seg, "dense preprocessing")
    scaled = _scaled(frames, spec)
    height, width = scaled.shape[1:3]
    origins = _dense_crop_origins(width, height, spec)
    count = len(scaled)
    rows = np.empty((len(origins) * count, 3, spec.crop_size, spec.crop_size), dtype=np.float32)
    for position, origin in enumerate(origins):  # each crop normalised into its rows
        normalize(crop(scaled, origin, spec.crop_size), spec.mean, spec.std,
                  out=rows[position * count:(position + 1) * count])
    return rows


def preprocess(frames: np.ndarray, spec: PreprocessSpec, mode: str | None = None) -> np.ndarray:
    """Dispatches to preprocess_uniform / preprocess_dense by `mode` (default spec.sampling)."""
    if _mode_or_default(mode, spec) == "dense":
        return preprocess_dense(frames, spec)
    return preprocess_uniform(frames, spec)
