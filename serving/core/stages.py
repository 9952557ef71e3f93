"""The per-clip work of the service's stages as plain functions: frames -> views -> scores.

The Paddle Serving ops (serving/pipeline/ops.py) and the in-process predictor
(serving/tools/offline.py) must answer the same file with the same numbers, so the few steps
between "an opened video" and "ranked classes" exist once, here, and both call them, and so do
the stage names both report timings under. Nothing in this module knows about Paddle Serving, timing or requests.
"""
from __future__ import annotations

import numpy as np

from serving.core.metadata import PreprocessSpec
from serving.core.postprocess import top_k, video_probabilities
from serving.core.preprocess.decode import VideoSource, read_sampled
from serving.core.preprocess.pipeline import preprocess, sample_indices
from serving.core.preprocess.transforms import FrameResize, scaled_size
from serving.core.preprocess.raw_frames import RawFrames

# The stage names: the service's op names for the three preprocessing stages (also the keys of
# their `op.<name>` settings) and, with INFER, the keys of the answer's `timing_ms`, in pipeline
# order. The model op itself is named "pptsm" in the pipeline config (serving.pipeline.service).
DECODE, SAMPLE, NORMALIZE, INFER = "decode", "sample", "normalize", "infer"
PREPROCESS_STAGES = (DECODE, SAMPLE, NORMALIZE)
STAGES = (*PREPROCESS_STAGES, INFER)


def model_resize(source: VideoSource | RawFrames, spec: PreprocessSpec) -> FrameResize:
    """The model's Scale step for `source`'s frames, applied to each frame as it is decoded."""
    size = scaled_size(source.width, source.height, spec.scale_size, spec.fixed_ratio)
    return FrameResize(size, spec.resize_backend)


def sample_frames(source: VideoSource | RawFrames, spec: PreprocessSpec, mode: str) -> np.ndarray:
    """Decodes only the frames `mode` samples from `source`, each distinct one once, scaled to
    the model's scale_size as soon as it is decoded: RGB uint8 [k, h, w, 3] (network_views'
    own Scale step then has nothing left to do, so the pixels are those of scaling after
    sampling). The caller keeps ownership of `source` (and closes it)."""
    _, frames = read_sampled(source, lambda count: sample_indices(count, spec, mode),
                             model_resize(source, spec))
    return frames


def network_views(frames: np.ndarray, spec: PreprocessSpec, mode: str) -> np.ndarray:
    """Sampled frames -> the network input of one request, float32 [views, T, 3, S, S].
    Preprocessing returns rows clip by clip (and crop by crop), T consecutive rows per view."""
    rows = preprocess(frames, spec, mode)
    return rows.reshape(-1, spec.num_seg, *rows.shape[1:])


def ranked_classes(view_logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (class_id, probability) pairs of one video from the logits of its views."""
    return top_k(video_probabilities(view_logits), k)
