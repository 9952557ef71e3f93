"""Test material for the serving tests: a tiny real exported PP-TSMv2 and real video files.

The model is a real PP-TSMv2 (width 0.25, 8 frames, 56 px) exported by `train.export`, so the
serving tests run the same program format and metadata the product serves. Its batch norms are
calibrated on one clip so the logits depend on the input (random weights alone give logits near
1e-12, which would let a broken pipeline pass).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import paddle

from serving.core.metadata import ModelMeta, PreprocessSpec, load_meta

TINY_LABELS = ("waving", "clapping", "jumping")
TINY_PREPROCESS = PreprocessSpec(num_seg=8, scale_size=64, crop_size=56,
                                 dense_clips=2, dense_crops=3, dense_span=16)


def export_tiny_model(out_dir: Path, *, fmt: str,
                      calibrate_bn: Callable[[paddle.nn.Layer, paddle.Tensor], None],
                      **model_kwargs: object) -> ModelMeta:
    """Exports the tiny model to `out_dir` once; later calls (other test modules of the same
    session) reuse the export. The weights come from a fixed seed, so every format holds the
    same network; `model_kwargs` go to the builder (e.g. another dropout)."""
    if (out_dir / "model_meta.json").is_file():
        return load_meta(out_dir)
    from train.export import export_model
    from train.models import build_model

    paddle.seed(0)
    model = build_model("pptsm_v2_lcnet", num_classes=len(TINY_LABELS),
                        num_seg=TINY_PREPROCESS.num_seg, width_mult=0.25, **model_kwargs)
    model.eval()
    size = TINY_PREPROCESS.crop_size
    clip = np.random.RandomState(0).standard_normal((2, TINY_PREPROCESS.num_seg, 3, size, size))
    calibrate_bn(model, paddle.to_tensor(clip.astype("float32")))
    return export_model(model, out_dir, name="tiny", version="test-1", labels=list(TINY_LABELS),
                        preprocess=TINY_PREPROCESS, architecture="pptsm_v2_lcnet", fmt=fmt)


def write_video(path: Path, *, num_frames: int = 24, width: int = 96, height: int = 72,
                fps: float = 12.0, seed: int = 0) -> Path:
    """Writes a real MPEG-4 file with OpenCV: a bright square moving over a noisy background,
    so frames differ from one another and from other seeds."""
    rng = np.random.RandomState(seed)
    background = rng.randint(0, 120, (height, width, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    side = min(width, height) // 3
    for index in range(num_frames):
        frame = background.copy()
        x = (index * 3) % (width - side)
        frame[height // 3: height // 3 + side, x: x + side] = (40 * seed % 256, 220, 250)
        writer.write(frame)
    writer.release()
    return path


def write_clip_list(folder: Path, count: int) -> Path:
    """A PaddleVideo list file of `count` real clips in `folder` (labels cycling over
    TINY_LABELS), as quantize's calibration and the precision checks read it."""
    lines = []
    for seed in range(count):
        write_video(folder / f"clip{seed}.mp4", num_frames=30, seed=seed)
        lines.append(f"clip{seed}.mp4 {seed % len(TINY_LABELS)}")
    path = folder / "clips.list"
    path.write_text("\n".join(lines) + "\n")
    return path


def raw_frames(num_frames: int = 10, height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    """Random RGB uint8 frames [T, H, W, 3] for the `frames` request protocol."""
    return np.random.RandomState(seed).randint(0, 256, (num_frames, height, width, 3),
                                               dtype=np.uint8)
