"""Which videos to send, and the label each should get when that is known: a file, a folder
walked recursively (Kinetics layout `class/clip.mp4`: the class folder names the expected label),
or a PaddleVideo list file with its label list."""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})


@dataclass(frozen=True)
class LabelledVideo:
    """A video and, when its list line or class folder says, its expected class name."""

    path: Path
    expected: str | None = None


def label_key(name: str) -> str:
    """How a class folder is matched with a label: Kinetics downloaders write `air_drumming`
    or `air drumming` for the label `air drumming`, in any case."""
    return " ".join(name.replace("_", " ").split()).casefold()


def collect_videos(path: Path, labels: Collection[str] | None = None) -> list[LabelledVideo]:
    """`path` itself if it is a file, else every video file under the folder, at any depth,
    sorted; hidden files and folders are skipped (macOS writes `._clip.mp4` resource forks
    beside the clips of an archive it unpacked). A video in a sub-folder expects the label its
    folder names: any folder name when `labels` is None, else only a name that matches one of
    `labels` (the label's own spelling is then expected)."""
    if path.is_file():
        return [LabelledVideo(path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    by_key = None if labels is None else {label_key(label): label for label in labels}
    videos = []
    for video in sorted(p for p in path.rglob("*")
                        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                        and not any(part.startswith(".") for part in p.relative_to(path).parts)):
        expected = None
        if video.parent != path:
            folder = video.parent.name
            expected = folder if by_key is None else by_key.get(label_key(folder))
        videos.append(LabelledVideo(video, expected))
    return videos


def read_label_names(labels_path: Path) -> dict[int, str]:
    """A `<id> <name>` label list (PaddleVideo's label file)."""
    names = {}
    for line in labels_path.read_text(encoding="utf-8").splitlines():
        index, _, name = line.strip().partition(" ")
        if name:
            names[int(index)] = name.strip()
    return names


def read_labelled_list(list_path: Path, labels_path: Path) -> list[LabelledVideo]:
    """A PaddleVideo list file (`relative/path label_id` per line, relative to the list's folder)
    with its `<id> <name>` label list: the service's answers can then be scored."""
    names = read_label_names(labels_path)
    videos = []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            videos.append(LabelledVideo(list_path.parent / parts[0], names[int(parts[-1])]))
        except (KeyError, ValueError):
            raise ValueError(f"{list_path}:{lineno}: label {parts[-1]!r} is not in "
                             f"{labels_path}") from None
    return videos
