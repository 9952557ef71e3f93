"""A training dataset from a folder of your own videos, one sub-folder per class, and its command line.

    python -m train.data.folder_dataset --src videos/ --out data/mine [--split 0.8 0.1 0.1]
                                        [--seed 0] [--labels FILE] [--min-frames 8] [--force]

    videos/<class>/**/<clip>    any depth below the class folder; any container the service takes

Writes, in the layout the list-file datasets read (train/data/datasets.py):

    label_list.txt                  "<index> <name>": sorted class names, or the order of --labels
    train.list val.list test.list   "clips/<class>/<clip> <label>", a stratified, seeded split
    clips/<class>/...               symbolic links to the source files (nothing is copied)
    dataset.json                    source, split, seed, counts, skipped files and why

The links keep every path below the dataset root, which `make frames` needs, and free of
whitespace, which the list format cannot hold. Every file is probed first with the service's
own probe and limits (serving.core.preprocess.video_probe), so a file training could not read,
or the service would refuse, is listed with the reason instead of failing an epoch later.

Re-running gives the same files: probe results are kept in dataset.json by path, size and
modification time, so only new or changed files are probed again. The output folder is only
replaced when it holds a dataset made by this command, or with `--force`.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from serving.core.errors import LimitExceededError, VideoInputError
from serving.core.list_file import ListFileError, read_label_list
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.video_probe import probe_video

GENERATOR_NAME = "train.data.folder_dataset"
MANIFEST_NAME = "dataset.json"
LABEL_LIST_NAME = "label_list.txt"
LINK_DIR_NAME = "clips"
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
# PP-TSM samples 8 segments (PP-TSMv2 8 or 16): a shorter clip repeats frames, which says
# nothing about motion.
DEFAULT_MIN_FRAMES = 8
# Below this many clips a class's val and test scores are one or two clips: a warning, not a
# refusal, since fine-tuning can still learn from them.
FEW_CLIPS = 10
SKIPPED_SHOWN = 20
# Training reads with the decoder's default limits (train/data/video_dataset.py); a file over
# them would fail there.
TRAINING_LIMITS = DecodeLimits()
_WHITESPACE = re.compile(r"\s")


class FolderDatasetError(ValueError):
    """The source folder or the options cannot make a dataset; the message says why."""


@dataclass(frozen=True)
class Clip:
    """One usable video: its class, its file and its link below the dataset root."""

    label: str
    source: Path
    link: str  # relative to the dataset root, posix
    num_frames: int


@dataclass(frozen=True)
class Skipped:
    source: Path
    reason: str


@dataclass
class FolderDataset:
    """What `build_dataset` wrote: the classes in label order, each split's clips, the skips."""

    root: Path
    labels: list[str]
    splits: dict[str, list[Clip]]
    skipped: list[Skipped]
    probed: int  # files probed this run (the others came from the previous run's record)

    def counts(self) -> dict[str, dict[str, int]]:
        """{class: {split: clips}}."""
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.labels}
        for split, clips in self.splits.items():
            for clip in clips:
                table[clip.label][split] += 1
        return table


def class_folders(src: Path) -> dict[str, Path]:
    """{class name: folder}: the visible sub-folders of `src`."""
    if not src.is_dir():
        raise FolderDatasetError(f"{src}: no such folder (expected one sub-folder per class)")
    folders = {path.name: path for path in sorted(src.iterdir())
               if path.is_dir() and not path.name.startswith(".")}
    if not folders:
        raise FolderDatasetError(f"{src}: no class sub-folders (expected {src}/<class>/<video>)")
    return folders


def class_order(found: Sequence[str], labels_file: Path | None) -> list[str]:
    """The label list: the class folders sorted, or the order of `labels_file` (a label list,
    `<index> <name>` per line), which must name every class folder."""
    if labels_file is None:
        return sorted(found)
    try:
        labels = read_label_list(labels_file)
    except ListFileError as exc:
        raise FolderDatasetError(f"--labels: {exc}") from None
    unknown = sorted(set(found) - set(labels))
    if unknown:
        raise FolderDatasetError(f"--labels {labels_file} does not name the class folders "
                                 f"{', '.join(unknown)}")
    return labels


def video_files(folder: Path) -> list[Path]:
    """Every visible regular file below `folder`, in a stable order."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".")
                                                for part in path.relative_to(folder).parts))


def probe_file(path: Path, limits: DecodeLimits = TRAINING_LIMITS) -> tuple[int, str]:
    """(frame count, "") for a video training can read, else (0, why not)."""
    try:
        limits.check_bytes(path.stat().st_size)  # before reading a huge file into memory
        probe = probe_video(path.read_bytes(), limits)
    except LimitExceededError as exc:
        return 0, f"over the limits: {exc}"
    except VideoInputError as exc:
        return 0, str(exc)
    except OSError as exc:
        return 0, f"unreadable: {exc.strerror or exc}"
    return probe.num_frames, ""


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _link_name(label: str, relative: Path, taken: set[str]) -> str:
    """`clips/<class>/<path>` with whitespace replaced (list lines are space-separated), made
    unique should two names differ only there."""
    base = _WHITESPACE.sub("_", f"{LINK_DIR_NAME}/{label}/{relative.as_posix()}")
    name, stem, suffix, copy = base, base[: -len(relative.suffix) or None], relative.suffix, 2
    while name in taken:
        name, copy = f"{stem}-{copy}{suffix}", copy + 1
    taken.add(name)
    return name


def split_counts(total: int, fractions: Sequence[float]) -> list[int]:
    """Clips per split for one class: largest remainders, and at least one clip in every split
    with a share once the class has a clip for each."""
    exact = [total * share for share in fractions]
    counts = [int(value) for value in exact]
    order = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for index in order[: total - sum(counts)]:
        counts[index] += 1
    if total >= sum(1 for share in fractions if share > 0):
        for index, share in enumerate(fractions):
            if share > 0 and counts[index] == 0:
                donor = max(range(len(counts)), key=counts.__getitem__)
                counts[donor] -= 1
                counts[index] += 1
    return counts


def stratified_split(clips: Sequence[Clip], labels: Sequence[str], fractions: Sequence[float],
                     seed: int) -> dict[str, list[Clip]]:
    """Each class's clips shuffled (seeded by the seed and the class) and cut by `fractions`."""
    splits: dict[str, list[Clip]] = {split: [] for split in SPLITS}
    for label in labels:
        members = sorted((clip for clip in clips if clip.label == label), key=lambda c: c.link)
        random.Random(f"{seed}:{label}").shuffle(members)
        start = 0
        for split, count in zip(SPLITS, split_counts(len(members), fractions)):
            splits[split].extend(members[start:start + count])
            start += count
    return {split: sorted(members, key=lambda c: c.link) for split, members in splits.items()}


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _previous_probes(out: Path, force: bool) -> dict[str, Any]:
    """The probe record of a dataset this command made in `out` (empty with `force`); refuses
    an `out` that holds anything else unless `force`."""
    if out.exists() and not out.is_dir():
        raise FolderDatasetError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return {}
    manifest = _read_manifest(out)
    if not force and (manifest is None or manifest.get("generator") != GENERATOR_NAME):
        raise FolderDatasetError(
            f"refusing to write into {out}: it holds files that this command did not make "
            f"(no {MANIFEST_NAME} of {GENERATOR_NAME}); choose another folder or pass --force")
    return {} if force or manifest is None else dict(manifest.get("probes", {}))


def _write_text(path: Path, text: str) -> None:
    """Atomically: an interrupted run never leaves half a list."""
    partial = path.with_name(".partial-" + path.name)
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _write_links(out: Path, clips: Sequence[Clip]) -> None:
    """`clips/` afresh: one symbolic link per clip to its absolute source path."""
    link_root = out / LINK_DIR_NAME
    if link_root.is_symlink() or link_root.is_file():
        link_root.unlink()
    elif link_root.exists():
        shutil.rmtree(link_root)
    for clip in clips:
        link = out / clip.link
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clip.source.resolve())


def build_dataset(src: Path, out: Path, *, fractions: Sequence[float] = DEFAULT_SPLIT,
                  seed: int = 0, labels_file: Path | None = None,
                  min_frames: int = DEFAULT_MIN_FRAMES, force: bool = False,
                  progress: bool = True) -> FolderDataset:
    """Probes every file of `src`'s class folders and writes the dataset to `out`."""
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise FolderDatasetError(f"--split: three shares >= 0 for train, val, test summing to "
                                 f"1, got {' '.join(map(str, fractions))}")
    if src.resolve() in (out.resolve(), *out.resolve().parents):
        raise FolderDatasetError(f"--out {out} must not contain --src {src}")
    folders = class_folders(src)
    labels = class_order(list(folders), labels_file)
    previous = _previous_probes(out, force)
    files = [(label, folder, path) for label, folder in folders.items()
             for path in video_files(folder)]
    clips: list[Clip] = []
    skipped: list[Skipped] = []
    probes: dict[str, Any] = {}
    taken: set[str] = set()
    probed = 0
    for label, folder, path in tqdm(files, desc="probing", unit="file", disable=not progress):
        key = str(path.resolve())
        fingerprint = _fingerprint(path)
        record = previous.get(key)
        if not record or record.get("fingerprint") != fingerprint:
            num_frames, reason = probe_file(path)
            record = {"fingerprint": fingerprint, "num_frames": num_frames, "reason": reason}
            probed += 1
        probes[key] = record
        reason = record["reason"] or (
            f"too short: {record['num_frames']} frames, fewer than --min-frames {min_frames}"
            if record["num_frames"] < min_frames else "")
        if reason:
            skipped.append(Skipped(path, reason))
            continue
        link = _link_name(label, path.relative_to(folder), taken)
        clips.append(Clip(label, path, link, record["num_frames"]))
    if not clips:
        raise FolderDatasetError(f"{src}: no usable video among {len(files)} files "
                                 f"({len(skipped)} skipped)")
    splits = stratified_split(clips, labels, fractions, seed)
    empty = [split for split, share in zip(SPLITS, fractions) if share > 0 and not splits[split]]
    if empty:
        raise FolderDatasetError(f"the {' and '.join(empty)} split would be empty: give a class "
                                 f"at least {len(SPLITS)} usable clips")

    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:  # lists first removed, so none names a link being rebuilt
        (out / f"{split}.list").unlink(missing_ok=True)
    _write_links(out, clips)
    index = {label: position for position, label in enumerate(labels)}
    _write_text(out / LABEL_LIST_NAME, "".join(f"{i} {name}\n" for i, name in enumerate(labels)))
    dataset = FolderDataset(out, labels, splits, skipped, probed)
    manifest = {"generator": GENERATOR_NAME, "source": str(src.resolve()),
                "split": list(fractions), "seed": seed, "min_frames": min_frames,
                "labels": labels, "counts": dataset.counts(),
                "skipped": [{"file": str(item.source), "reason": item.reason} for item in skipped],
                "probes": probes}
    _write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    for split in SPLITS:
        _write_text(out / f"{split}.list",
                    "".join(f"{clip.link} {index[clip.label]}\n" for clip in splits[split]))
    return dataset


def format_report(dataset: FolderDataset) -> str:
    """The skipped files and why, the table of clips per class and split, and the warnings."""
    lines = []
    if dataset.skipped:
        lines.append(f"skipped {len(dataset.skipped)} files:")
        lines += [f"  {item.source}: {item.reason}" for item in dataset.skipped[:SKIPPED_SHOWN]]
        if len(dataset.skipped) > SKIPPED_SHOWN:
            lines.append(f"  ... and {len(dataset.skipped) - SKIPPED_SHOWN} more "
                         f"(all in {dataset.root / MANIFEST_NAME})")
    counts = dataset.counts()
    width = max(len("class"), *(len(label) for label in dataset.labels))
    header = f"{'class':<{width}}  " + "  ".join(f"{split:>6}" for split in (*SPLITS, "total"))
    lines += [header, "-" * len(header)]
    for label in dataset.labels:
        row = [counts[label][split] for split in SPLITS]
        lines.append(f"{label:<{width}}  " + "  ".join(f"{n:>6}" for n in (*row, sum(row))))
    totals = [len(dataset.splits[split]) for split in SPLITS]
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{n:>6}" for n in (*totals, sum(totals))))
    few = [label for label in dataset.labels if sum(counts[label].values()) < FEW_CLIPS]
    if few:
        lines.append(f"warning: fewer than {FEW_CLIPS} clips in {', '.join(few)}: their val and "
                     "test scores rest on one or two clips; add clips if you can")
    lines.append(f"wrote {dataset.root}/{{train,val,test}}.list and {LABEL_LIST_NAME} "
                 f"({len(dataset.labels)} classes; {dataset.probed} files probed this run)")
    return "\n".join(lines)


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1, got {value}")
    return share


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.data.folder_dataset",
        description="Make a training dataset (list files, label list) from a folder with one "
                    "sub-folder of videos per class.")
    parser.add_argument("--src", type=Path, required=True,
                        help="folder of class sub-folders (videos at any depth below each)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--split", type=_share, nargs=3, default=list(DEFAULT_SPLIT),
                        metavar=("TRAIN", "VAL", "TEST"),
                        help="shares of each class's clips (default 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--labels", type=Path,
                        help="label list ('<index> <name>' lines, e.g. an earlier "
                             "label_list.txt) fixing the class order (default: sorted names)")
    parser.add_argument("--min-frames", type=int, default=DEFAULT_MIN_FRAMES,
                        help=f"skip videos with fewer frames (default {DEFAULT_MIN_FRAMES})")
    parser.add_argument("--force", action="store_true",
                        help="probe every file again and overwrite whatever --out holds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        dataset = build_dataset(args.src, args.out, fractions=args.split, seed=args.seed,
                                labels_file=args.labels, min_frames=args.min_frames,
                                force=args.force, progress=not args.no_progress)
    except FolderDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
