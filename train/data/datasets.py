"""Builds a split's dataset from a recipe's `data` section, for either data format.

`data.format: video` reads `<root>/<split list>` as `video_path label` lines relative to the
root; `data.format: frames` reads frame lists (`folder num_frames label`, see
`python -m train.extract_frames`) whose folders are relative to `<root>/<frames_dir>`, as
PaddleVideo's `data_prefix` is.
"""
from __future__ import annotations

from pathlib import Path

from serving.core.list_file import read_label_list, read_list_file
from train.config import ConfigError, DataConfig, Recipe
from train.data.video_dataset import ClipDataset, ClipReader, FrameFolderReader, read_video_clip


def label_names(recipe: Recipe) -> list[str]:
    """The class names of the recipe's `data.label_list` (relative to `data.root`)."""
    return read_label_list(Path(recipe.data.root) / recipe.data.label_list)


def _reader_and_base(data: DataConfig) -> tuple[ClipReader, Path]:
    root = Path(data.root)
    if data.format == "frames":
        return FrameFolderReader(data.frame_pattern), root / data.frames_dir
    return read_video_clip, root


def build_dataset(recipe: Recipe, split: str, mode: str) -> ClipDataset:
    """The `split` ('train', 'val' or 'test') list as a dataset in `mode` ('train', 'uniform'
    or 'dense'); train mode uses the recipe's `augment`, `data.train_sampling` and seed."""
    data = recipe.data
    key = f"{split}_list"
    list_name = getattr(data, key, None)
    if list_name is None:
        raise ConfigError(f"data.{key} is not set in {recipe.source or 'the recipe'}")
    reader, base = _reader_and_base(data)
    list_path = Path(data.root) / list_name
    samples = read_list_file(list_path, base)
    if isinstance(reader, FrameFolderReader) and samples[0].num_frames is None:
        raise ConfigError(f"data.format is frames but {list_path} is a video list (no frame "
                          "counts); extract frames with `make frames` and use its *_frames.list")
    return ClipDataset(samples, recipe.preprocess, mode, augment=recipe.augment,
                       seed=recipe.train.seed, reader=reader,
                       train_sampling=data.train_sampling)
