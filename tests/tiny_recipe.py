"""The demo recipe shrunk for tests: quarter width, 4 frames of 32 px, batch 4, no workers, so a
training epoch on the `--quick` synthetic set takes seconds on 2 cores."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from train.config import TrainConfig
from train.config_reader import read_section

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "train" / "configs" / "demo" / "pptsmv2_lcnet_synthetic_demo.yaml"
TINY_OVERRIDES = ("model.width_mult=0.25", "model.num_seg=4", "preprocess.num_seg=4",
                  "preprocess.scale_size=36", "preprocess.crop_size=32", "train.batch_size=4",
                  "data.num_workers=0", "train.precise_bn.num_iters=2",
                  "train.precise_bn.interval_epochs=1", "train.processes=1")


def tiny_overrides(root: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    """`key=value` overrides of a tiny run on the dataset at `root`, writing to `out`."""
    return [f"data.root={root}", f"train.output_dir={out}", f"train.epochs={epochs}",
            *TINY_OVERRIDES, *extra]


def train_section(**keys: Any) -> TrainConfig:
    """A recipe's `train` section read from `keys` as the loader reads it (one epoch unless
    given), for tests of what the trainer does with one of its keys."""
    return read_section(TrainConfig, {"epochs": 1, **keys}, "train")


def as_cli(overrides: list[str]) -> list[str]:
    """The overrides as `-o key=value` command-line arguments."""
    return [arg for override in overrides for arg in ("-o", override)]
