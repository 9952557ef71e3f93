"""List-file clip dataset over either data format: videos decoded on the fly, or frame folders.

Only the sampled frames of a clip are read. Videos are decoded through `serving.core.preprocess.decode`
(the service's own decoders); frame folders hold PaddleVideo's `img_00001.jpg` files. Both
formats share the sampling, augmentation and the service's exact evaluation preprocessing, so a
validation score predicts the served score, and the two formats give the same clip for the same
indices (up to JPEG loss).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

import numpy as np
from paddle.io import Dataset

from serving.core.errors import VideoInputError
from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.decode import DecodeLimits, open_video, read_sampled
from serving.core.preprocess.pipeline import preprocess_dense, preprocess_uniform, sample_indices
from train.data.frame_folder import FRAME_PATTERN, read_frames
from serving.core.list_file import Sample
from train.data.train_transforms import TRAIN_SAMPLINGS, TrainAugment

log = logging.getLogger(__name__)

# Training reads trusted local files; the limits only guard against a broken file eating memory.
_TRAIN_LIMITS = DecodeLimits()

IndexChooser = Callable[[int], Sequence[int]]


class ClipReader(Protocol):
    """Reads the frames `choose(num_frames)` picks (0-based) from one sample: RGB uint8."""

    def __call__(self, sample: Sample, choose: IndexChooser) -> np.ndarray: ...


def read_video_clip(sample: Sample, choose: IndexChooser) -> np.ndarray:
    """`data.format: video`: opens the file, decodes only the chosen frames."""
    with open_video(sample.path.read_bytes(), limits=_TRAIN_LIMITS) as video:
        return read_sampled(video, choose)[1]


@dataclass(frozen=True)
class FrameFolderReader:
    """`data.format: frames`: index i is file number i + 1 (PaddleVideo's FrameDecoder); the
    frame count is the frame list's, as PaddleVideo samples by it. A folder shorter than the clip
    repeats frames as a video does (PaddleVideo's reader would ask for a missing file)."""

    pattern: str = FRAME_PATTERN

    def __call__(self, sample: Sample, choose: IndexChooser) -> np.ndarray:
        if sample.num_frames is None:
            raise ValueError(f"{sample.path}: a frame list line needs its frame count")
        indices = choose(sample.num_frames)
        return read_frames(sample.path, [index + 1 for index in indices], self.pattern)


class ClipDataset(Dataset):
    """Yields (clip float32 [T', 3, S, S], label int64).

    `mode` is `train` (random sampling by `train_sampling` + `augment`), `uniform` (the
    service's uniform view) or `dense` (10 clips x 3 crops, T' = 240 for T = 8).
    """

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, mode: str = "train",
                 augment: Optional[TrainAugment] = None, seed: int = 0, max_retries: int = 5,
                 reader: ClipReader = read_video_clip, train_sampling: str = "uniform") -> None:
        if mode not in ("train", "uniform", "dense"):
            raise ValueError(f"mode: 'train', 'uniform' or 'dense', got {mode!r}")
        if train_sampling not in TRAIN_SAMPLINGS:
            raise ValueError(f"train_sampling: one of {TRAIN_SAMPLINGS}, got {train_sampling!r}")
        self.samples = samples
        self.spec = spec
        self.mode = mode
        self.augment = augment or TrainAugment()
        self.seed = seed
        self.max_retries = max_retries
        self.reader = reader
        self.train_sampling = train_sampling
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
            except (VideoInputError, OSError) as exc:
                if self.mode != "train" or attempt == self.max_retries:
                    raise RuntimeError(f"{sample.path}: {exc}") from exc
                log.warning("skipping unreadable clip %s: %s", sample.path, exc)
                index = random.Random(index + attempt).randrange(len(self.samples))
        raise AssertionError("unreachable")

    def _train_clip(self, sample: Sample, rng: random.Random,
                    pick: Callable[[list[int]], list[int]] = list) -> np.ndarray:
        """A training clip of `sample` (the recipe's train sampling and augmentation), of the
        sampled frames that `pick` keeps."""
        frames = self.reader(
            sample, lambda n: pick(self.augment.indices(n, self.spec, self.train_sampling, rng)))
        return self.augment(frames, self.spec, rng)

    def _load(self, sample: Sample, index: int) -> np.ndarray:
        spec = self.spec
        if self.mode == "train":
            rng = random.Random(hash((self.seed, self._epoch, index)))
            clip = self._train_clip(sample, rng)
            cut = self.augment.draw_cut(spec.num_seg, rng)
            if cut:
                other = self.samples[rng.randrange(len(self.samples))]
                clip = cut.join(clip, self._train_clip(other, rng, cut.pick))
            return clip
        frames = self.reader(sample, lambda n: sample_indices(n, spec, self.mode))
        if self.mode == "dense":
            return preprocess_dense(frames, spec)
        return preprocess_uniform(frames, spec)
