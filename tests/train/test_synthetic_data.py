"""Tests of the synthetic action dataset: files on disk (decoded with decord, OpenCV and PyAV), the
CLI, determinism, overwrite protection, and that the classes really need more than one frame."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import av
import cv2
import decord
import numpy as np
import pytest

from train.data.synthetic import (
    DEFAULT_CONFIG,
    DatasetExistsError,
    generate_dataset,
    main,
    render_clip,
    write_video,
)
from train.data.synthetic_classes import DEGREES, KNOWN_CLASS_NAMES, motion_class, opposite_class
from train.data.synthetic_motion import ClipScene, render_scene, sample_scene
from train.data.synthetic_settings import SPLITS, DatasetSettings, SettingsError, load_generator_config
from train.data.synthetic_video_file import VideoFileError

REPO_ROOT = Path(__file__).resolve().parents[2]
LIST_LINE = re.compile(r"^(videos/(train|val|test)/([a-z_]+)/\S+\.(mp4|avi)) (\d+)$")
Tracks = dict[str, list[np.ndarray]]
CLASS_NAMES = load_generator_config(DEFAULT_CONFIG).settings.classes  # the default dataset's


def _tiny_settings(train: int = 2, val: int = 1, test: int = 1) -> DatasetSettings:
    """The default settings shrunk to small, short clips so a whole dataset takes seconds."""
    settings = load_generator_config(DEFAULT_CONFIG).settings
    clip = dataclasses.replace(settings.clip, resolutions=((96, 72), (80, 96), (112, 64)),
                               fps_range=(15, 18), duration_range_s=(1.1, 1.6))
    counts = {"train": train, "val": val, "test": test}
    return dataclasses.replace(settings, clip=clip, clips_per_class=counts)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    generate_dataset(root, _tiny_settings(), seed=7, progress=False)
    return root


def _read_list(root: Path, split: str) -> list[tuple[str, str, int]]:
    """(relative path, class folder, label) per line, after checking the line's format."""
    entries = []
    for line in (root / f"{split}.list").read_text().splitlines():
        match = LIST_LINE.match(line)
        assert match, f"bad list line {line!r}"
        assert match.group(2) == split
        entries.append((match.group(1), match.group(3), int(match.group(5))))
    return entries


def _decode_all(path: Path) -> np.ndarray:
    reader = decord.VideoReader(str(path), num_threads=1)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def _opencv_frame_count(path: Path) -> int:
    """Frames OpenCV actually decodes, read one by one (not the container's claim)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


# --- the dataset on disk ------------------------------------------------------------------------

def test_label_list_is_paddlevideo_style(tiny_dataset: Path) -> None:
    lines = (tiny_dataset / "label_list.txt").read_text().splitlines()
    assert lines == [f"{index} {name}" for index, name in enumerate(CLASS_NAMES)]
    assert len(CLASS_NAMES) >= 8


def test_every_listed_video_exists_and_decodes_with_both_decoders(tiny_dataset: Path) -> None:
    sizes = set(_tiny_settings().clip.resolutions)
    for split in SPLITS:
        for relative_path, class_folder, label in _read_list(tiny_dataset, split):
            path = tiny_dataset / relative_path
            assert CLASS_NAMES[label] == class_folder
            frames = _decode_all(path)
            assert frames.shape[0] >= 16
            assert _opencv_frame_count(path) == frames.shape[0]
            assert (frames.shape[2], frames.shape[1]) in sizes
            assert frames.std() > 5, f"{relative_path} decodes to a blank clip"


def test_every_class_appears_in_every_split_as_configured(tiny_dataset: Path) -> None:
    per_class = _tiny_settings().clips_per_class
    for split in SPLITS:
        labels = [label for _, _, label in _read_list(tiny_dataset, split)]
        assert sorted(labels) == sorted(list(range(len(CLASS_NAMES))) * per_class[split])


def test_mp4_and_avi_files_with_their_codecs_are_mixed(tiny_dataset: Path) -> None:
    """The container's codec tag, read with PyAV (OpenCV only reports its decoder, FMP4 for both
    mp4v and Xvid)."""
    found = set()
    for split in SPLITS:
        for relative_path, _, _ in _read_list(tiny_dataset, split):
            with av.open(str(tiny_dataset / relative_path)) as container:
                found.add((Path(relative_path).suffix, container.streams.video[0].codec_context.codec_tag))
    assert found == {(".mp4", "mp4v"), (".avi", "MJPG"), (".avi", "XVID")}


def test_manifest_records_seed_settings_and_counts(tiny_dataset: Path) -> None:
    manifest = json.loads((tiny_dataset / "dataset.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["seed"] == 7
    assert manifest["classes"] == list(CLASS_NAMES)
    assert manifest["settings"] == _tiny_settings().to_dict()
    for split in SPLITS:
        assert sum(manifest["counts"][split].values()) == len(_read_list(tiny_dataset, split))
    on_disk = sorted(path for path in (tiny_dataset / "videos").rglob("*") if path.is_file())
    assert manifest["total_bytes"] == sum(path.stat().st_size for path in on_disk)
    assert not [path for path in on_disk if path.name.startswith(".partial-")]


def test_same_seed_gives_identical_lists_and_frames(tiny_dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, _tiny_settings(), seed=7, progress=False, workers=2)
    for name in ("train.list", "val.list", "test.list", "label_list.txt"):
        assert (again / name).read_bytes() == (tiny_dataset / name).read_bytes()
    for relative_path, _, _ in _read_list(tiny_dataset, "val"):
        np.testing.assert_array_equal(_decode_all(again / relative_path),
                                      _decode_all(tiny_dataset / relative_path))


def test_another_seed_gives_other_clips(tiny_dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_dataset(other, _tiny_settings(), seed=8, progress=False)
    first_clip = _read_list(tiny_dataset, "test")[0][0]
    assert (other / first_clip).exists()
    ours, theirs = _decode_all(tiny_dataset / first_clip), _decode_all(other / first_clip)
    assert ours.shape != theirs.shape or not np.array_equal(ours, theirs)


def test_refuses_to_overwrite_a_different_dataset_unless_forced(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    small = _tiny_settings(train=1, val=1, test=1)
    generate_dataset(root, small, seed=1, progress=False)
    before = (root / "train.list").read_bytes()
    with pytest.raises(DatasetExistsError, match="refusing to overwrite"):
        generate_dataset(root, small, seed=2, progress=False)
    assert (root / "train.list").read_bytes() == before
    generate_dataset(root, small, seed=1, progress=False)  # the same dataset may be regenerated
    assert (root / "train.list").read_bytes() == before
    generate_dataset(root, small, seed=2, progress=False, force=True)
    assert json.loads((root / "dataset.json").read_text())["seed"] == 2


def test_refuses_a_non_empty_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetExistsError, match="no readable dataset.json"):
        generate_dataset(tmp_path, _tiny_settings(), seed=0, progress=False)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_cli_refusal_exits_with_status_2(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tiny_dataset), "--quick", "--seed", "99", "--workers", "1"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_cli_quick_run_writes_a_complete_dataset(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    command = [sys.executable, "-m", "train.data.synthetic", "--out", str(out), "--quick", "--val", "2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "total" in result.stdout and "MiB" in result.stdout
    assert "synthetic clips" in result.stderr  # the tqdm progress bar
    quick = load_generator_config(DEFAULT_CONFIG, quick=True).settings.clips_per_class
    assert len(_read_list(out, "train")) == quick["train"] * len(CLASS_NAMES)
    assert len(_read_list(out, "val")) == 2 * len(CLASS_NAMES)
    for relative_path, _, _ in _read_list(out, "test"):
        assert len(decord.VideoReader(str(out / relative_path))) >= 16


# --- settings and the video writer --------------------------------------------------------------

def test_settings_reject_clips_shorter_than_16_frames() -> None:
    clip = load_generator_config(DEFAULT_CONFIG).settings.clip
    with pytest.raises(SettingsError, match="at least 16"):
        dataclasses.replace(clip, fps_range=(10, 12), duration_range_s=(1.0, 2.0))


def test_settings_reject_frame_widths_that_decord_cannot_decode() -> None:
    clip = load_generator_config(DEFAULT_CONFIG).settings.clip
    with pytest.raises(SettingsError, match="decord cannot decode"):
        dataclasses.replace(clip, resolutions=((72, 96),))


def test_config_typos_are_reported_with_their_key_path(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG.read_text().replace("noise_sigma_range:", "noise_sigma:", 1)
    config = tmp_path / "typo.yaml"
    config.write_text(text)
    typo = r"clip: unknown keys \['noise_sigma'\], missing keys \['noise_sigma_range'\]"
    with pytest.raises(SettingsError, match=typo):
        load_generator_config(config)
    config.write_text(DEFAULT_CONFIG.read_text().replace("shapes: [circle,", "shapes: [blob,", 1))
    with pytest.raises(SettingsError, match=r"clip.shapes: unknown \['blob'\]"):
        load_generator_config(config)


def test_settings_refuse_unknown_repeated_or_too_few_classes(tmp_path: Path) -> None:
    config = tmp_path / "classes.yaml"
    for classes, message in (("[move_left, jump]", r"classes: unknown \['jump'\]"),
                             ("[grow, grow]", "at least two, each once"),
                             ("[grow]", "at least two, each once")):
        config.write_text(re.sub(r"(?m)^classes: .*$", f"classes: {classes}",
                                 DEFAULT_CONFIG.read_text()))
        with pytest.raises(SettingsError, match=message):
            load_generator_config(config)


def test_a_dataset_of_chosen_classes_labels_them_in_the_given_order(tmp_path: Path) -> None:
    settings = dataclasses.replace(_tiny_settings(train=1, val=1, test=1),
                                   classes=("rotate_ccw", "rotate_cw", "move_down_right"))
    generate_dataset(tmp_path / "rotations", settings, seed=3, progress=False)
    labels = (tmp_path / "rotations" / "label_list.txt").read_text().splitlines()
    assert labels == ["0 rotate_ccw", "1 rotate_cw", "2 move_down_right"]
    for relative_path, class_folder, label in _read_list(tmp_path / "rotations", "train"):
        assert settings.classes[label] == class_folder


def test_every_class_of_the_catalogue_has_its_time_reversal_there() -> None:
    for name in KNOWN_CLASS_NAMES:
        assert opposite_class(opposite_class(name)) == name != opposite_class(name)
    assert opposite_class("move_up_right") == "move_down_left"
    assert opposite_class("rotate_cw") == "rotate_ccw"


def test_default_clips_keep_a_large_object_inside_the_centre_and_move_far() -> None:
    """What the demo model sees (a centre crop of a small resize) must still show the motion: the
    object is >= ~15% of the short side and its centre stays in the middle 60% of the frame."""
    clip = load_generator_config(DEFAULT_CONFIG).settings.clip
    for index in range(24):
        name = CLASS_NAMES[index % len(CLASS_NAMES)]
        scene = sample_scene(name, clip, np.random.default_rng(index))
        width, height = scene.size
        for pose in (scene.start, scene.end):
            assert 2 * pose.radius >= 0.145 * min(width, height)
            assert 0.2 * width - 1e-6 <= pose.x <= 0.8 * width + 1e-6
            assert 0.2 * height - 1e-6 <= pose.y <= 0.8 * height + 1e-6
        if name.startswith("move_"):
            travel = math.hypot(scene.end.x - scene.start.x, scene.end.y - scene.start.y)
            assert travel >= 0.35 * min(width, height)


def test_write_video_round_trips_frames(tmp_path: Path) -> None:
    frames = render_clip("grow", _tiny_settings().clip, np.random.default_rng(3))
    path = tmp_path / "clip.avi"
    assert write_video(path, frames, fps=15, codec="mjpg") == len(frames)
    decoded = _decode_all(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 6  # lossy, but the same picture


def test_write_video_rejects_bad_input_and_leaves_no_file(tmp_path: Path) -> None:
    frames = np.zeros((4, 64, 80, 3), np.uint8)
    with pytest.raises(VideoFileError, match="written to '.mp4' files"):
        write_video(tmp_path / "clip.avi", frames, fps=15, codec="mp4v")
    mixed = [frames[0], np.zeros((64, 96, 3), np.uint8)]
    with pytest.raises(VideoFileError, match="frame 1"):
        write_video(tmp_path / "clip.mp4", mixed, fps=15, codec="mp4v")
    assert list(tmp_path.iterdir()) == []


# --- the classes are temporal -------------------------------------------------------------------

def _track(frames: np.ndarray, scene: ClipScene) -> np.ndarray:
    """Per frame: object centre x / width, centre y / height, log of its radius (from the area),
    and the heading of its cap; measured from pixels that differ from the static background."""
    height, width = frames.shape[1:3]
    pixels = frames.astype(np.int16)

    def far_from(reference: np.ndarray) -> np.ndarray:
        """Pixels more than 40 grey levels from `reference` in some channel."""
        distance = np.abs(pixels - reference)
        return (distance[..., 0] > 40) | (distance[..., 1] > 40) | (distance[..., 2] > 40)

    body = far_from(scene.backdrop)
    cap = body & ~far_from(np.array(scene.cap_colour, np.int16))
    ys, xs = np.mgrid[0:height, 0:width]

    def centre(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        area = mask.sum(axis=(1, 2))
        return (mask * xs).sum(axis=(1, 2)) / area, (mask * ys).sum(axis=(1, 2)) / area

    body_x, body_y = centre(body)
    cap_x, cap_y = centre(cap)
    radius = np.sqrt(body.sum(axis=(1, 2)) / math.pi)
    heading = np.arctan2(cap_y - body_y, cap_x - body_x)
    return np.stack([body_x / width, body_y / height, np.log(radius), heading], axis=1)


@pytest.fixture(scope="module")
def tracks() -> Tracks:
    """40 rendered clips of every class of the catalogue, each reduced to its tracked pose per
    frame."""
    settings = _tiny_settings().clip
    result: Tracks = {name: [] for name in KNOWN_CLASS_NAMES}
    for label, name in enumerate(KNOWN_CLASS_NAMES):
        for index in range(40):
            rng = np.random.default_rng([11, label, index])
            scene = sample_scene(name, settings, rng)
            result[name].append(_track(render_scene(scene, rng), scene))
    return result


def _one_random_frame_each(clips: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.array([clip[rng.integers(len(clip))] for clip in clips])


def test_a_single_frame_has_the_same_pose_distribution_for_every_class(tracks: Tracks) -> None:
    """At a random moment, position and size look alike whatever the class: neither the per-class
    mean nor the per-class distribution (Kolmogorov-Smirnov distance) stands out."""
    rng = np.random.default_rng(0)
    single = {name: _one_random_frame_each(clips, rng)[:, :3] for name, clips in tracks.items()}
    pooled = np.concatenate(list(single.values()))
    pooled_cdf = np.arange(1, len(pooled) + 1) / len(pooled)
    for name, features in single.items():
        for column, feature in enumerate(("x", "y", "size")):
            mean_gap = abs(features[:, column].mean() - pooled[:, column].mean())
            assert mean_gap < 0.5 * pooled[:, column].std(), (name, feature)
            grid = np.sort(pooled[:, column])
            class_cdf = np.searchsorted(np.sort(features[:, column]), grid, side="right") / len(features)
            assert np.abs(class_cdf - pooled_cdf).max() < 0.3, (name, feature)


def test_left_and_right_are_inseparable_from_one_frame_but_not_from_two(tracks: Tracks) -> None:
    rng = np.random.default_rng(1)
    left = _one_random_frame_each(tracks["move_left"], rng)[:, 0]
    right = _one_random_frame_each(tracks["move_right"], rng)[:, 0]
    values = np.concatenate([left, right])
    is_right = np.r_[np.zeros(len(left), bool), np.ones(len(right), bool)]
    best_threshold_accuracy = max(max(np.mean((values > t) == is_right), np.mean((values <= t) == is_right))
                                  for t in values)
    assert best_threshold_accuracy < 0.7
    assert all(clip[-1, 0] - clip[0, 0] < -0.2 for clip in tracks["move_left"])
    assert all(clip[-1, 0] - clip[0, 0] > 0.2 for clip in tracks["move_right"])


def _unwrapped_turn(headings: np.ndarray) -> float:
    steps = np.diff(headings)
    return float(np.sum((steps + math.pi) % (2 * math.pi) - math.pi))


def test_the_change_over_the_clip_identifies_every_class(tracks: Tracks) -> None:
    """A rule with no learning (which pose coordinates changed by more than 40% of their smallest
    configured sweep over the clip, and which way) recovers the class of every clip."""
    clip = _tiny_settings().clip
    smallest_sweep = np.array([clip.travel_range[0], clip.travel_range[0],
                               math.log(clip.scale_ratio_range[0]), math.radians(clip.rotation_range_deg[0])])
    for name, clips in tracks.items():
        expected = {(degree, motion_class(name).direction(degree)) for degree in DEGREES
                    if motion_class(name).direction(degree)}
        for track in clips:
            change = np.r_[track[-1, :3] - track[0, :3], _unwrapped_turn(track[:, 3])] / smallest_sweep
            found = {(degree, int(np.sign(value))) for degree, value in zip(DEGREES, change)
                     if abs(value) > 0.4}
            assert found == expected, (name, change.round(2))
