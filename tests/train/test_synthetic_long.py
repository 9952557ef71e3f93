"""Long synthetic videos (`python -m train.data.synthetic --long N`): the ground-truth timeline
beside each video must match the frames written, boundaries to the frame and labels by the motion
the decoded pixels show."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import decord
import numpy as np
import pytest

from train.data.synthetic import (
    DEFAULT_CONFIG,
    DatasetExistsError,
    LongVideoSettings,
    generate_dataset,
    generate_long_videos,
    long_video_entropy,
    main,
)
from train.data.synthetic_classes import DEGREES, motion_class
from train.data.synthetic_long import TIMELINE_SUFFIX, plan_long_video
from train.data.synthetic_motion import ClipScene
from train.data.synthetic_settings import DatasetSettings, SettingsError, load_generator_config

SEED = 5
FPS = 15


def _settings() -> DatasetSettings:
    """The default classes and look; one short clip per class and split where a clip dataset is
    written (the overwrite test)."""
    settings = load_generator_config(DEFAULT_CONFIG).settings
    clip = dataclasses.replace(settings.clip, duration_range_s=(1.1, 1.6))
    return dataclasses.replace(settings, clip=clip,
                               clips_per_class={"train": 1, "val": 1, "test": 1})


LONG = LongVideoSettings(count=2, segments=4, segment_range_s=(2.0, 3.5), resolution=(96, 80), fps=FPS)


@pytest.fixture(scope="module")
def long_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_long") / "long"
    generate_long_videos(root, _settings(), LONG, SEED, progress=False, workers=2)
    return root


def _decode_all(path: Path) -> np.ndarray:
    reader = decord.VideoReader(str(path), num_threads=1)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def _pose(frames: np.ndarray, scene: ClipScene) -> np.ndarray:
    """Mean over `frames` of the object's centre x / width, centre y / height and log radius,
    found as the pixels more than 40 grey levels from the pass's static backdrop."""
    height, width = frames.shape[1:3]
    body = (np.abs(frames.astype(np.int16) - scene.backdrop).max(axis=-1) > 40)
    ys, xs = np.mgrid[0:height, 0:width]
    area = body.sum(axis=(1, 2))
    return np.array([((body * xs).sum(axis=(1, 2)) / area).mean() / width,
                     ((body * ys).sum(axis=(1, 2)) / area).mean() / height,
                     np.log(np.sqrt(area / math.pi)).mean()])


def _video_paths(root: Path) -> list[Path]:
    return sorted((root / "videos").glob("long_*.mp4"))


def test_timelines_tile_the_video_with_changing_labels(long_set: Path) -> None:
    classes = _settings().classes
    videos = _video_paths(long_set)
    assert len(videos) == LONG.count
    for video in videos:
        timeline = json.loads(video.with_name(video.stem + TIMELINE_SUFFIX).read_text())
        assert len(timeline) == LONG.segments
        assert timeline[0]["start_frame"] == 0 and timeline[0]["start_s"] == 0
        assert timeline[-1]["end_frame"] == len(decord.VideoReader(str(video)))
        for before, after in zip(timeline, timeline[1:]):
            assert before["end_frame"] == after["start_frame"] and before["end_s"] == after["start_s"]
            assert before["class_id"] != after["class_id"]
        for segment in timeline:
            assert segment["label"] == classes[segment["class_id"]]
            assert segment["start_s"] == pytest.approx(segment["start_frame"] / FPS, abs=1e-6)
            assert segment["end_s"] == pytest.approx(segment["end_frame"] / FPS, abs=1e-6)
            length_s = (segment["end_frame"] - segment["start_frame"]) / FPS
            assert LONG.segment_range_s[0] - 1 / FPS <= length_s <= LONG.segment_range_s[1] + 1 / FPS


def test_boundaries_and_labels_match_the_frames_written(long_set: Path) -> None:
    """Every decoded frame is closest to the backdrop of the segment the file puts it in (so the
    boundaries fall exactly where the picture changes), and within every segment the object
    moves the way the file's label says, and no other way."""
    clip = _settings().clip
    smallest_sweep = np.array([clip.travel_range[0], clip.travel_range[0],
                               math.log(clip.scale_ratio_range[0])])
    for index, video in enumerate(_video_paths(long_set)):
        timeline = json.loads(video.with_name(video.stem + TIMELINE_SUFFIX).read_text())
        plan = plan_long_video(_settings().classes, clip, LONG,
                               np.random.default_rng(long_video_entropy(SEED, index)))
        assert plan.timeline() == timeline
        frames = _decode_all(video)
        backdrops = np.stack([scene.backdrop for scene in plan.scenes]).astype(np.int16)
        for number, (segment, scene) in enumerate(zip(timeline, plan.scenes, strict=True)):
            shown = frames[segment["start_frame"]:segment["end_frame"]]
            distance = np.median(np.abs(shown[:, None].astype(np.int16) - backdrops[None]),
                                 axis=(2, 3, 4))
            assert (distance.argmin(axis=1) == number).all(), (video.name, number)
            change = (_pose(shown[-2:], scene) - _pose(shown[:2], scene)) / smallest_sweep
            found = {(degree, int(np.sign(value))) for degree, value in zip(DEGREES, change)
                     if abs(value) > 0.4}
            motion = motion_class(segment["label"])
            assert found == set(motion.drives), (video.name, number, segment["label"], change)
        assert timeline[-1]["end_frame"] == len(frames)


def test_cli_writes_long_videos_and_regenerates_only_the_same_set(tmp_path: Path, capsys) -> None:
    out = tmp_path / "long"
    args = ["--out", str(out), "--quick", "--long", "1", "--segments", "2",
            "--segment-seconds", "2", "3", "--resolution", "64x48", "--fps", "12", "--workers", "1"]
    assert main(args) == 0
    assert "long_00000.mp4: 64x48, 12 fps" in capsys.readouterr().out
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["status"] == "complete" and manifest["long"]["segments"] == 2
    assert [v["video"] for v in manifest["videos"]] == ["videos/long_00000.mp4"]
    assert main(args) == 0  # the same set is replaced silently
    assert main([*args[:4], "2", *args[5:]]) == 2  # another set is not
    assert "refusing to overwrite" in capsys.readouterr().err


def test_a_clip_dataset_is_not_overwritten_by_long_videos(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", _settings(), seed=1, progress=False)
    with pytest.raises(DatasetExistsError, match="refusing to overwrite"):
        generate_long_videos(tmp_path / "data", _settings(), LONG, seed=1, progress=False)


def test_bad_long_settings_are_refused_with_their_reason(capsys) -> None:
    with pytest.raises(SettingsError, match="0 < low <= high"):
        LongVideoSettings(1, 2, (3.0, 2.0))
    with pytest.raises(SettingsError, match="72x64: decord cannot decode"):
        LongVideoSettings(1, 2, (2.0, 3.0), resolution=(72, 64)).check_against(_settings().clip)
    with pytest.raises(SystemExit):
        main(["--out", "unused", "--segments", "3"])
    assert "need --long N" in capsys.readouterr().err
