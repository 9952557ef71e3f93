"""`make dataset` (train/data/folder_dataset.py) on folders of real video files written here:
the lists, the label list, the stratified split, the files it skips and why, re-runs, and that
the result is what the list-file dataset and `make frames` read."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.core.list_file import read_label_list, read_list_file
from serving.core.preprocess.decode_limits import DecodeLimits
from tests.video_corpus import encode_audio_only, encode_video
from train import extract_frames
from train.data import folder_dataset
from train.data.folder_dataset import FolderDatasetError, build_dataset, main, split_counts

LISTS = ("train.list", "val.list", "test.list", "label_list.txt")


def _tree(src: Path, layout: dict[str, int]) -> dict[str, list[Path]]:
    """`layout` {class: clips}: small real videos, every third in a nested folder, containers
    mixed; returns {class: files}."""
    files: dict[str, list[Path]] = {}
    for label, count in layout.items():
        for index in range(count):
            suffix = (".mp4", ".avi", ".mkv")[index % 3]
            folder = src / label / ("day 2" if index % 3 == 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            codec = "mjpeg" if suffix == ".avi" else "libx264"
            files.setdefault(label, []).append(encode_video(
                folder / f"clip {index}{suffix}", codec=codec, num_frames=12, width=32,
                height=24, seed=index, pix_fmt="yuvj420p" if codec == "mjpeg" else "yuv420p"))
    return files


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Two classes of 10 and 5 clips, a corrupt file, an audio-only file, a 3-frame clip, notes."""
    src = tmp_path_factory.mktemp("own") / "videos"
    _tree(src, {"waving": 10, "pouring water": 5})
    (src / "waving" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(3000))
    encode_audio_only(src / "pouring water" / "sound.mp4")
    encode_video(src / "waving" / "blink.mp4", num_frames=3, width=32, height=24)
    (src / "waving" / "notes.txt").write_text("shot on Tuesday\n")
    (src / "waving" / ".hidden.mp4").write_bytes(b"ignored")
    return src


def test_lists_labels_split_and_skips(source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "data"
    assert main(["--src", str(source), "--out", str(out), "--split", "0.6", "0.2", "0.2",
                 "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert read_label_list(out / "label_list.txt") == ["pouring water", "waving"]
    samples = {split: read_list_file(out / f"{split}.list") for split in ("train", "val", "test")}
    per_class = {split: [sum(s.label == c for s in found) for c in (0, 1)]
                 for split, found in samples.items()}
    assert per_class == {"train": [3, 6], "val": [1, 2], "test": [1, 2]}
    every = [sample for found in samples.values() for sample in found]
    assert len({sample.path for sample in every}) == 15
    for sample in every:  # below the root, no whitespace, a link to the source file
        relative = sample.path.relative_to(out)
        assert relative.parts[0] == "clips" and " " not in str(relative)
        assert sample.path.resolve().is_relative_to(source.resolve())
    assert {p.resolve().suffix for p in (s.path for s in every)} == {".mp4", ".avi", ".mkv"}

    skipped = {Path(item["file"]).name: item["reason"]
               for item in json.loads((out / "dataset.json").read_text())["skipped"]}
    assert skipped == {
        "broken.mp4": "video: not a decodable video container",
        "sound.mp4": "video: the container has no video stream",
        "blink.mp4": "too short: 3 frames, fewer than --min-frames 8",
        "notes.txt": "video: not a decodable video container"}
    for name, reason in skipped.items():
        assert f"{name}: {reason}" in report
    assert "pouring water       3       1       1       5" in report
    assert "warning: fewer than 10 clips in pouring water" in report
    assert "waving" not in report.split("warning:")[1]


def test_rerun_is_idempotent_and_force_probes_again(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = build_dataset(source, out, progress=False)
    written = {name: (out / name).read_text() for name in LISTS}
    again = build_dataset(source, out, progress=False)
    assert again.probed == 0 and first.probed == 19
    assert {name: (out / name).read_text() for name in LISTS} == written
    assert build_dataset(source, out, force=True, progress=False).probed == 19


def test_labels_file_fixes_the_order_and_must_name_every_class(source: Path,
                                                               tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("0 waving\n1 clapping\n2 pouring water\n")
    out = tmp_path / "data"
    build_dataset(source, out, labels_file=labels, progress=False)
    assert read_label_list(out / "label_list.txt") == ["waving", "clapping", "pouring water"]
    assert {s.label for s in read_list_file(out / "train.list")} == {0, 2}
    labels.write_text("0 waving\n")
    with pytest.raises(FolderDatasetError, match="does not name the class folders pouring water"):
        build_dataset(source, tmp_path / "other", labels_file=labels, progress=False)


def test_refuses_a_folder_it_did_not_make_and_bad_splits(source: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "synthetic"
    foreign.mkdir()
    (foreign / "train.list").write_text("videos/a.mp4 0\n")
    with pytest.raises(FolderDatasetError, match="refusing to write into"):
        build_dataset(source, foreign, progress=False)
    assert (foreign / "train.list").read_text() == "videos/a.mp4 0\n"
    with pytest.raises(FolderDatasetError, match="summing to 1"):
        build_dataset(source, tmp_path / "x", fractions=(0.8, 0.1, 0.2), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderDatasetError, match="no class sub-folders"):
        build_dataset(tmp_path / "empty", tmp_path / "y", progress=False)


def test_probe_reports_files_over_the_limits(source: Path) -> None:
    clip = next((source / "waving").glob("clip 0.mp4"))
    frames, reason = folder_dataset.probe_file(clip, DecodeLimits(max_frames=5))
    assert frames == 0 and reason.startswith("over the limits: video: 12 frames exceeds the "
                                             "limit of 5 (max_frames)")
    assert folder_dataset.probe_file(clip) == (12, "")


@pytest.mark.parametrize("total,expected", [(10, [8, 1, 1]), (3, [1, 1, 1]), (2, [2, 0, 0]),
                                            (7, [5, 1, 1]), (0, [0, 0, 0])])
def test_split_counts(total: int, expected: list[int]) -> None:
    assert split_counts(total, (0.8, 0.1, 0.1)) == expected


def test_make_frames_works_on_the_result(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    build_dataset(source, out, progress=False)
    assert extract_frames.main(["--root", str(out), "--out", str(out / "rawframes"),
                                "--list", str(out / "val.list"), "--no-progress"]) == 0
    frames = read_list_file(out / "val_frames.list", out / "rawframes")
    assert [s.label for s in frames] == [s.label for s in read_list_file(out / "val.list")]
    assert all(s.num_frames == 12 and s.path.is_dir() for s in frames)
