"""PaddleVideo list files: one `relative/path label` per line, relative to the dataset root.

Kinetics-400 and UCF-101 lists as PaddleVideo writes them use the same two-column form (frame
lists add a frame count column: `path num_frames label`); both are accepted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ListFileError(ValueError):
    """A list or label file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


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
            raise ListFileError(f"{list_path}:{lineno}: expected 'path label', got {line!r}")
        try:
            label = int(parts[-1])
        except ValueError:
            raise ListFileError(f"{list_path}:{lineno}: label {parts[-1]!r} is not an integer") from None
        samples.append(Sample(root / parts[0], label))
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
