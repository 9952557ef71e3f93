"""Command line: extract the frames of every video of PaddleVideo list files (`make frames`).

    python -m train.extract_frames --root data/synthetic --out data/synthetic/rawframes \
        --list data/synthetic/train.list --list data/synthetic/val.list [--workers 4]

Each video `<root>/a/b/clip.mp4` becomes the folder `<out>/a/b/clip/` of `img_00001.jpg`, ...
(every decodable frame, decoded by the service's decoders), and each list `X.list` gets a frame
list `X_frames.list` beside it with PaddleVideo's `folder num_frames label` lines, folders
relative to `--out` (the recipes' `data.frames_dir`). Frames train several times faster than
videos because nothing is decoded twice and JPEG reads are cheap.

Resumable: a folder is written under a `.partial` name and renamed when complete, so folders
that exist are done and are skipped by the next run; a `.partial` left by an interrupted run is
redone. A video that cannot be decoded is reported and left out of the frame list, and the exit
status is 1.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from serving.core.preprocess.decode import DecodeLimits, decode_all
from train.data.frame_folder import FRAME_PATTERN, JPEG_QUALITY, count_frames, write_frames
from serving.core.list_file import ListFileError, Sample, format_frames_line, read_list_file

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class Job:
    video: Path
    folder: Path
    pattern: str
    quality: int


@dataclass(frozen=True)
class Outcome:
    folder: Path
    num_frames: int = 0
    skipped: bool = False
    error: Optional[str] = None


def frames_list_path(list_path: Path) -> Path:
    """`train.list` -> `train_frames.list` (PaddleVideo's names for Kinetics-400)."""
    return list_path.with_name(f"{list_path.stem}_frames{list_path.suffix}")


def folder_for(video: Path, root: Path, out: Path) -> Path:
    """`<root>/a/b/clip.mp4` -> `<out>/a/b/clip`."""
    try:
        relative = video.relative_to(root)
    except ValueError:
        raise ListFileError(f"{video} is not below --root {root}") from None
    return out / relative.with_suffix("")


def extract(job: Job) -> Outcome:
    """Extracts one video unless its folder is already complete."""
    if job.folder.is_dir():
        return Outcome(job.folder, count_frames(job.folder, job.pattern), skipped=True)
    partial = job.folder.with_name(job.folder.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        frames = decode_all(job.video.read_bytes(), limits=DecodeLimits())
        count = write_frames(frames, partial, job.pattern, job.quality)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        shutil.rmtree(partial, ignore_errors=True)
        return Outcome(job.folder, error=f"{job.video}: {type(exc).__name__}: {exc}")
    os.replace(partial, job.folder)
    return Outcome(job.folder, count)


def write_frames_list(list_path: Path, samples: list[Sample], folders: list[Path], out: Path,
                      counts: dict[Path, int]) -> Path:
    """Writes `X_frames.list` for the samples whose folder was extracted (atomically)."""
    lines = [format_frames_line(folder.relative_to(out).as_posix(), counts[folder], sample.label)
             for sample, folder in zip(samples, folders) if counts.get(folder)]
    target = frames_list_path(list_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, target)
    return target


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Extract JPEG frame folders from video lists.")
    parser.add_argument("--list", action="append", required=True, type=Path, dest="lists",
                        help="a video list file (repeatable)")
    parser.add_argument("--root", type=Path, required=True,
                        help="the lists' video paths start here")
    parser.add_argument("--out", type=Path, required=True, help="frame folders go here")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality 1-100")
    parser.add_argument("--pattern", default=FRAME_PATTERN, help="frame file name pattern")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        per_list = [(path, read_list_file(path, args.root)) for path in args.lists]
        folders = {path: [folder_for(s.path, args.root, args.out) for s in samples]
                   for path, samples in per_list}
    except ListFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    jobs = {folder: Job(sample.path, folder, args.pattern, args.quality)
            for path, samples in per_list for sample, folder in zip(samples, folders[path])}
    for folder in jobs:
        folder.parent.mkdir(parents=True, exist_ok=True)

    outcomes: list[Outcome] = []
    with multiprocessing.Pool(max(1, args.workers)) as pool:
        for outcome in tqdm(pool.imap_unordered(extract, jobs.values()), total=len(jobs),
                            desc="extract", unit="video", disable=args.no_progress):
            if outcome.error:
                tqdm.write(f"error: {outcome.error}", file=sys.stderr)
            outcomes.append(outcome)
    counts = {o.folder: o.num_frames for o in outcomes if not o.error}
    for path, samples in per_list:
        print(f"wrote {write_frames_list(path, samples, folders[path], args.out, counts)}")
    failed = sum(1 for o in outcomes if o.error)
    skipped = sum(1 for o in outcomes if o.skipped)
    print(f"{len(outcomes) - failed - skipped} extracted, {skipped} already done, {failed} failed; "
          f"frames in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
