"""Inference preprocessing shared by the service and by training's evaluation.

Pure frame functions (numpy, Pillow, OpenCV; no Paddle, no Paddle Serving) are exported here.
Decoding uploaded bytes lives in `serving.core.preprocess.decode` (open_video, read_sampled,
decode_all, DecodeLimits); import it explicitly, it loads the decoder libraries (PyAV, and
decord or OpenCV on first use).
"""
from serving.core.preprocess.pipeline import (
    SAMPLING_MODES,
    preprocess,
    preprocess_dense,
    preprocess_uniform,
    sample_indices,
)
from serving.core.preprocess.sampling import (
    dense_clip_indices,
    dense_indices,
    dense_start_count,
    segment_length,
    uniform_indices,
)
from serving.core.preprocess.transforms import (
    center_crop_origin,
    crop,
    normalize,
    resize_frames,
    scaled_size,
    three_crop_origins,
)

__all__ = [
    "SAMPLING_MODES", "center_crop_origin", "crop", "dense_clip_indices", "dense_indices",
    "dense_start_count", "normalize", "preprocess", "preprocess_dense", "preprocess_uniform",
    "resize_frames", "sample_indices", "scaled_size", "segment_length", "three_crop_origins",
    "uniform_indices",
]
