"""The `frames` data format: extraction (`python -m train.extract_frames`, `make frames`) and
the frame-folder dataset, which must give the clip the video dataset gives for the same indices.

Frames are JPEG files, so the comparison is exact against the video's frames put through the
same JPEG round trip, and close (mean difference < 0.02 in normalised units) against the raw
video frames.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.core.preprocess.decode import decode_all
from tests.tiny_recipe import DEMO_RECIPE, REPO_ROOT, TINY_OVERRIDES
from train.config import ConfigError, Recipe, load_config
from train.data.datasets import build_dataset
from train.data.frame_folder import count_frames, jpeg_round_trip
from serving.core.list_file import Sample, read_list_file
from train.data.video_dataset import IndexChooser, read_video_clip

MODES = ("train", "uniform", "dense")


def _config(root: Path, data_format: str) -> Recipe:
    val_list = "val_frames.list" if data_format == "frames" else "val.list"
    return load_config(DEMO_RECIPE, [f"data.root={root}", f"data.format={data_format}",
                                     f"data.val_list={val_list}", *TINY_OVERRIDES])


def _jpeg_video_reader(sample: Sample, choose: IndexChooser) -> np.ndarray:
    """The video reader, with each frame written to and read back from JPEG as extraction does."""
    return jpeg_round_trip(read_video_clip(sample, choose))


def _extract(root: Path, out: Path, list_path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "train.extract_frames", "--root", str(root),
                           "--out", str(out), "--list", str(list_path), "--workers", "2",
                           "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_frame_list_has_paddlevideo_lines_and_every_decoded_frame(quick_frames: Path) -> None:
    videos = read_list_file(quick_frames / "val.list")
    frames = read_list_file(quick_frames / "val_frames.list", quick_frames / "rawframes")
    assert [s.label for s in frames] == [s.label for s in videos]
    first_line = (quick_frames / "val_frames.list").read_text().splitlines()[0].split()
    assert first_line[0] == "videos/val/move_left/val_00000" and len(first_line) == 3
    for video, folder in zip(videos[:2], frames[:2]):
        decoded = decode_all(video.path.read_bytes())
        assert folder.num_frames == len(decoded) == count_frames(folder.path)
        assert (folder.path / "img_00001.jpg").is_file()


@pytest.mark.parametrize("mode", MODES)
def test_frames_and_video_give_the_same_clip(quick_frames: Path, mode: str) -> None:
    from_frames = build_dataset(_config(quick_frames, "frames"), "val", mode)
    from_video = build_dataset(_config(quick_frames, "video"), "val", mode)
    through_jpeg = build_dataset(_config(quick_frames, "video"), "val", mode)
    through_jpeg.reader = _jpeg_video_reader
    indices = range(0, len(from_video), 3)
    for index in indices:
        clip, label = from_frames[index]
        np.testing.assert_array_equal(clip, through_jpeg[index][0])
        video_clip, video_label = from_video[index]
        assert label == video_label and clip.shape == video_clip.shape
        assert float(np.abs(clip - video_clip).mean()) < 0.02


def test_extraction_is_resumable(quick_dataset: Path, tmp_path: Path) -> None:
    list_path = tmp_path / "two.list"
    list_path.write_text("".join(line + "\n" for line in
                                 (quick_dataset / "val.list").read_text().splitlines()[:2]))
    out = tmp_path / "frames"
    assert "2 extracted, 0 already done" in _extract(quick_dataset, out, list_path)
    entries = (tmp_path / "two_frames.list").read_text().splitlines()
    first, second = (out / line.split()[0] for line in entries)

    # An interrupted run leaves a .partial folder, never a folder that looks complete.
    shutil.rmtree(second)
    (second.parent / (second.name + ".partial")).mkdir()
    (first / "img_00001.jpg").write_bytes(b"kept: done folders are not rewritten")
    assert "1 extracted, 1 already done" in _extract(quick_dataset, out, list_path)
    assert (tmp_path / "two_frames.list").read_text().splitlines() == entries
    assert not (second.parent / (second.name + ".partial")).exists()
    assert (first / "img_00001.jpg").read_bytes().startswith(b"kept")


def test_frames_format_refuses_a_video_list(quick_dataset: Path) -> None:
    cfg = _config(quick_dataset, "frames")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_list="val.list"))
    with pytest.raises(ConfigError, match="make frames"):
        build_dataset(cfg, "val", "uniform")
