"""Builds a split's dataset from a recipe's `data` section, for either data format.

`data.format: video` reads `<root>/<split list>` as `video_path label` lines relative to the
root; `data.format: frames` reads frame lists (`folder num_frames label`, see
`python -m train.extract_frames`) whose folders are relative to `<root>/<frames_dir>`, as
PaddleVideo's `data_prefix` is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from train.config import ConfigError, section
from train.data.frame_folder import FRAME_PATTERN
from serving.core.list_file import read_label_list, read_list_file
from train.data.train_transforms import TrainAugment
from train.data.video_dataset import ClipDataset, ClipReader, FrameFolderReader, read_video_clip
from train.recipe import preprocess_spec_from_config

DATA_FORMATS = ("video", "frames")
DEFAULT_FRAMES_DIR = "rawframes"


def label_names(cfg: dict[str, Any]) -> list[str]:
    """The class names of the recipe's `data.label_list` (relative to `data.root`)."""
    data_cfg = section(cfg, "data")
    return read_label_list(Path(data_cfg["root"]) / data_cfg.get("label_list", "label_list.txt"))


def _reader_and_base(data_cfg: dict[str, Any]) -> tuple[ClipReader, Path]:
    root = Path(data_cfg["root"])
    data_format = data_cfg.get("format", "video")
    if data_format == "video":
        return read_video_clip, root
    if data_format == "frames":
        reader = FrameFolderReader(data_cfg.get("frame_pattern", FRAME_PATTERN))
        return reader, root / data_cfg.get("frames_dir", DEFAULT_FRAMES_DIR)
    raise ConfigError(f"data.format: one of {DATA_FORMATS}, got {data_format!r}")


def build_dataset(cfg: dict[str, Any], split: str, mode: str) -> ClipDataset:
    """The `split` ('train', 'val' or 'test') list as a dataset in `mode` ('train', 'uniform'
    or 'dense'); train mode uses the recipe's `augment`, `data.train_sampling` and seed."""
    data_cfg = section(cfg, "data")
    key = f"{split}_list"
    if key not in data_cfg:
        raise ConfigError(f"data.{key} is not set in {cfg.get('_source', 'the recipe')}")
    reader, base = _reader_and_base(data_cfg)
    list_path = Path(data_cfg["root"]) / data_cfg[key]
    samples = read_list_file(list_path, base)
    if isinstance(reader, FrameFolderReader) and samples[0].num_frames is None:
        raise ConfigError(f"data.format is frames but {list_path} is a video list (no frame "
                          "counts); extract frames with `make frames` and use its *_frames.list")
    return ClipDataset(samples, preprocess_spec_from_config(cfg), mode,
                       augment=TrainAugment(**cfg.get("augment", {})),
                       seed=int(cfg.get("train", {}).get("seed", 0)), reader=reader,
                       train_sampling=data_cfg.get("train_sampling", "uniform"))
