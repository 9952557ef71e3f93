"""Video-list dataset: decodes only the sampled frames of each clip, on the fly.

Decoding goes through `serving.preprocess.decode` (the service's own decoders), and evaluation
samples use the service's exact preprocessing, so a validation score predicts the served score.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from paddle.io import Dataset

from serving.errors import ServiceError
from serving.metadata import PreprocessSpec
from serving.preprocess.decode import DecodeLimits, open_video, read_sampled
from serving.preprocess.pipeline import preprocess_dense, preprocess_uniform, sample_indices
from train.data.list_file import Sample
from train.data.train_transforms import TrainAugment, train_indices

log = logging.getLogger(__name__)

# Training reads trusted local files; the limits only guard against a broken file eating memory.
_TRAIN_LIMITS = DecodeLimits()


def read_clip(path: Path, indices_for: Callable[[int], Sequence[int]]) -> np.ndarray:
    """Opens `path`, lets `indices_for(num_frames)` choose frames, returns them RGB uint8."""
    with open_video(path.read_bytes(), limits=_TRAIN_LIMITS) as video:
        return read_sampled(video, indices_for)[1]


class VideoClipDataset(Dataset):
    """Yields (clip float32 [T', 3, S, S], label int64).

    `mode` is `train` (random segment offsets + `augment`), `uniform` (the service's uniform
    view) or `dense` (10 clips x 3 crops, T' = 240 for T = 8).
    """

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, mode: str = "train",
                 augment: Optional[TrainAugment] = None, seed: int = 0, max_retries: int = 5) -> None:
        if mode not in ("train", "uniform", "dense"):
            raise ValueError(f"mode: 'train', 'uniform' or 'dense', got {mode!r}")
        self.samples = samples
        self.spec = spec
        self.mode = mode
        self.augment = augment or TrainAugment()
        self.seed = seed
        self.max_retries = max_retries
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Makes train-time randomness a function of (seed, epoch, index): reproducible runs and
        an exact resume, whatever the worker count."""
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        for attempt in range(self.max_retries + 1):
            sample = self.samples[index]
            try:
                return self._load(sample, index), np.int64(sample.label)
            except (ServiceError, OSError) as exc:
                if self.mode != "train" or attempt == self.max_retries:
                    raise RuntimeError(f"{sample.path}: {exc}") from exc
                log.warning("skipping unreadable clip %s: %s", sample.path, exc)
                index = random.Random(index + attempt).randrange(len(self.samples))
        raise AssertionError("unreachable")

    def _load(self, sample: Sample, index: int) -> np.ndarray:
        spec = self.spec
        if self.mode == "train":
            rng = random.Random(hash((self.seed, self._epoch, index)))
            frames = read_clip(sample.path, lambda n: train_indices(n, spec.num_seg, rng))
            return self.augment(frames, spec, rng)
        frames = read_clip(sample.path, lambda n: sample_indices(n, spec, self.mode))
        if self.mode == "dense":
            return preprocess_dense(frames, spec)
        return preprocess_uniform(frames, spec)
