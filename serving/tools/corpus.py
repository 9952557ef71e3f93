"""The videos a batch run classifies, and the label each is expected to get, if known.

Three sources, told apart by what the path is:
- a video file: that one video;
- a folder: every video file below it, recursively, in sorted order; a video directly inside a
  folder named after one of the model's classes (Kinetics' `class/clip.mp4` layout) is expected
  to get that class;
- any other file: a PaddleVideo list file (`relative/path label` per line, serving.core.list_file),
  whose label ids are the model's class ids.
Each video is keyed by its path relative to the folder (or the list's root): the key a results
file records, and what `--resume` matches.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.core.errors import PPTSMError
from serving.core.list_file import read_list_file

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})


class CorpusError(PPTSMError):
    """The corpus cannot be read: missing path, no videos, a list label the model lacks."""


@dataclass(frozen=True)
class CorpusVideo:
    key: str  # the path as rows record it
    path: Path
    expected: str | None  # the model's label this video should get, when the source says


def _folder_key(name: str) -> str:
    """Class-folder names match labels whatever their separators and case ('air drumming',
    'air_drumming', 'Air-Drumming')."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def find_videos(source: Path, labels: Sequence[str], list_root: Path | None = None) -> list[CorpusVideo]:
    """The videos of `source` (see the module docstring) with their expected labels."""
    if source.is_dir():
        by_folder = {_folder_key(label): label for label in labels}
        paths = sorted(p for p in source.rglob("*")
                       if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not paths:
            raise CorpusError(f"{source}: no video files below it "
                              f"({', '.join(sorted(VIDEO_SUFFIXES))})")
        return [CorpusVideo(p.relative_to(source).as_posix(), p,
                            by_folder.get(_folder_key(p.parent.name)) if p.parent != source else None)
                for p in paths]
    if source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
        return [CorpusVideo(source.name, source, None)]
    if source.is_file():
        return _listed_videos(source, labels, list_root)
    raise CorpusError(f"{source}: no such file or folder")


def _listed_videos(list_path: Path, labels: Sequence[str], root: Path | None) -> list[CorpusVideo]:
    root = root if root is not None else list_path.parent
    videos = []
    for sample in read_list_file(list_path, root):
        if not 0 <= sample.label < len(labels):
            raise CorpusError(f"{list_path}: {sample.path.relative_to(root).as_posix()} has label "
                              f"{sample.label}, but the model's classes are 0..{len(labels) - 1}")
        videos.append(CorpusVideo(sample.path.relative_to(root).as_posix(), sample.path,
                                  labels[sample.label]))
    return videos
