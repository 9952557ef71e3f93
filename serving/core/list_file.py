"""PaddleVideo list files: one `relative/path label` per line, relative to the dataset root.

Kinetics-400 and UCF-101 video lists as PaddleVideo writes them use this two-column form; frame
lists (`*_frames.list`) add the frame count of each frame folder: `folder num_frames label`.
Both are accepted; the count is kept because PaddleVideo samples frame folders by it rather than
by the files present.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from serving.core.errors import PPTSMError


class ListFileError(PPTSMError, ValueError):
    """A list or label file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    num_frames: Optional[int] = None  # frame lists only: frames in the folder


def format_frames_line(folder: str, num_frames: int, label: int) -> str:
    """One line of a PaddleVideo frame list (without the newline)."""
    return f"{folder} {num_frames} {label}"


def read_list_file(list_path: str | Path, root: str | Path | None = None) -> list[Sample]:
    list_path = Path(list_path)
    root = Path(root) if root is not None else list_path.parent
    if not list_path.is_file():
        raise ListFileError(f"{list_path}: no such list file")
    samples = []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise ListFileError(f"{list_path}:{lineno}: expected 'path label' or "
                                f"'folder num_frames label', got {line!r}")
        try:
            label = int(parts[-1])
        except ValueError:
            raise ListFileError(f"{list_path}:{lineno}: label {parts[-1]!r} is not an integer") from None
        num_frames = None
        if len(parts) == 3:
            if not parts[1].isdigit() or int(parts[1]) < 1:
                raise ListFileError(f"{list_path}:{lineno}: frame count {parts[1]!r} is not a "
                                    "positive integer")
            num_frames = int(parts[1])
        samples.append(Sample(root / parts[0], label, num_frames))
    if not samples:
        raise ListFileError(f"{list_path}: no samples")
    return samples


def read_label_list(path: str | Path) -> list[str]:
    """Reads `<index> <name>` lines (Kinetics style) into a list ordered by index."""
    path = Path(path)
    if not path.is_file():
        raise ListFileError(f"{path}: no such label list")
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        index, _, name = line.strip().partition(" ")
        if not index.isdigit() or not name:
            raise ListFileError(f"{path}:{lineno}: expected '<index> <name>', got {line!r}")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise ListFileError(f"{path}: class indices must be 0..{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]
