"""Writes the synthetic action dataset to disk in PaddleVideo's layout, and its command line.

    python -m train.data.synthetic --out data/synthetic [--config FILE] [--seed 0]
                                   [--train N --val N --test N] [--workers N] [--quick] [--force]
    python -m train.data.synthetic --out data/synthetic_long --long N [--segments M]
                                   [--segment-seconds LOW HIGH] [--resolution WxH] [--fps F] ...

Result (paths in the list files are relative to the dataset root):

    label_list.txt                  "<index> <name>" per line, as PaddleVideo's Kinetics label list
    train.list val.list test.list   "videos/<split>/<class>/<split>_<index>.<ext> <label>" per line
    videos/<split>/<class>/         the clips: mp4 (mp4v) and avi (MJPG, XVID), mixed
    dataset.json                    seed, settings, classes, counts: what made this dataset

Every clip has its own random generator seeded from (seed, split, index), so the output does not
depend on the number of worker processes or their scheduling, and changing the number of training
clips leaves the validation and test clips untouched. A clip is written under a temporary name and
renamed only once decord and OpenCV have read it back; the list files are written last, so an
interrupted run never leaves a list that names a missing video.

With `--long N` the command writes, instead of the clip dataset, N long videos of the same classes
(`synthetic_long`: M segments of random lengths, each a clip of one class) and a ground-truth
timeline beside each:

    label_list.txt                       as above
    videos/long_<index>.mp4              the video (mp4v unless the codec is chosen)
    videos/long_<index>.timeline.json    [{start_s, end_s, start_frame, end_frame, class_id, label}]
    dataset.json                         seed, settings, the long-video settings, the videos
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from train.data.synthetic_long import (
    TIMELINE_SUFFIX,
    LongVideoSettings,
    iter_long_video_frames,
    plan_long_video,
)
from train.data.synthetic_motion import iter_scene_frames, render_clip, sample_scene
from train.data.synthetic_settings import (
    SPLITS,
    ClipSettings,
    DatasetSettings,
    SettingsError,
    load_generator_config,
)
from train.data.synthetic_video_file import CODECS, VideoFileError, check_video, write_video

__all__ = [
    "DEFAULT_CONFIG",
    "DatasetExistsError",
    "DatasetSummary",
    "LongVideoSettings",
    "generate_dataset",
    "generate_long_videos",
    "long_video_entropy",
    "main",
    "render_clip",
    "write_video",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "data" / "synthetic_default.yaml"
MANIFEST_NAME = "dataset.json"
LABEL_LIST_NAME = "label_list.txt"
VIDEO_DIR_NAME = "videos"
GENERATOR_NAME = "train.data.synthetic"
# Bump when the generator's output for the same settings and seed changes, so that an old dataset
# is not mistaken for the one the current code would write.
FORMAT_VERSION = 2

# Independent random streams per split: (seed, split, stream, ...) seeds each generator.
_SCENE_STREAM = 0
_CODEC_STREAM = 1
# Long videos draw from their own stream, so they never repeat a clip of the dataset.
_LONG_STREAM = 2
LONG_VIDEO_PREFIX = "long_"
DEFAULT_SEGMENTS = 6
DEFAULT_SEGMENT_SECONDS = (10.0, 30.0)
DEFAULT_LONG_CODEC = "mp4v"
# What identifies a generator run in dataset.json; "long" only for long-video sets.
_IDENTITY_KEYS = ("generator", "format_version", "seed", "settings", "long")

# Workers are spawned, not forked: the caller may be a training process with live threads (tqdm's
# monitor, Paddle's pools) whose locks a fork would copy in whatever state they happen to be.
_WORKER_START_METHOD = "spawn"


class DatasetExistsError(RuntimeError):
    """The output directory holds something other than the dataset about to be generated."""


@dataclass(frozen=True)
class ClipJob:
    """One clip to make: what it shows, where it goes, how it is encoded, how it is seeded."""

    split: str
    class_name: str
    relative_path: str
    codec: str
    entropy: tuple[int, ...]


@dataclass(frozen=True)
class ClipRecord:
    """A clip that was written and read back."""

    job: ClipJob
    num_frames: int
    num_bytes: int


@dataclass(frozen=True)
class DatasetSummary:
    """What a generation run produced."""

    root: Path
    seed: int
    counts: dict[str, dict[str, int]]  # split -> class name -> clips
    codec_counts: dict[str, int]
    total_frames: int
    total_bytes: int
    elapsed_s: float

    def describe(self) -> str:
        """A table of clips per class and split, then codecs, frames, size and time."""
        classes = list(self.counts[SPLITS[0]])
        width = max(map(len, [*classes, "total"]))

        def row(label: str, cells: Sequence[object]) -> str:
            return f"{label:<{width}} " + " ".join(f"{cell:>6}" for cell in cells)

        lines = [f"synthetic dataset {self.root} (seed {self.seed})", row("class", SPLITS)]
        lines += [row(name, [self.counts[split][name] for split in SPLITS]) for name in classes]
        lines.append(row("total", [sum(self.counts[split].values()) for split in SPLITS]))
        lines.append("codecs: " + ", ".join(f"{codec} {count}" for codec, count in self.codec_counts.items()))
        lines.append(f"{self.total_frames:,} frames, {self.total_bytes / 2**20:.1f} MiB, "
                     f"{self.elapsed_s:.1f} s")
        return "\n".join(lines)


def _codec_sequence(codec_mix: Mapping[str, float], count: int, rng: np.random.Generator) -> list[str]:
    """Exactly the mix's shares of `count` (largest remainders), in random order: even a tiny split
    gets every codec with a non-negligible share, and codec never correlates with class."""
    names = list(codec_mix)
    shares = np.array([codec_mix[name] for name in names], dtype=float)
    exact = shares / shares.sum() * count
    allotted = np.floor(exact).astype(int)
    for position in np.argsort(-(exact - allotted), kind="stable")[: count - allotted.sum()]:
        allotted[position] += 1
    sequence = [name for name, times in zip(names, allotted) for _ in range(times)]
    return [sequence[i] for i in rng.permutation(count)]


def _plan_jobs(settings: DatasetSettings, seed: int) -> list[ClipJob]:
    """All clips of the dataset, split by split, classes interleaved (clip i shows class i mod C)."""
    jobs = []
    classes = settings.classes
    for split_number, split in enumerate(SPLITS):
        count = settings.clips_per_class[split] * len(classes)
        codec_rng = np.random.default_rng([seed, split_number, _CODEC_STREAM])
        for index, codec in enumerate(_codec_sequence(settings.codec_mix, count, codec_rng)):
            class_name = classes[index % len(classes)]
            path = f"{VIDEO_DIR_NAME}/{split}/{class_name}/{split}_{index:05d}{CODECS[codec].extension}"
            jobs.append(ClipJob(split, class_name, path, codec, (seed, split_number, _SCENE_STREAM, index)))
    return jobs


def _make_clip(job: ClipJob, clip_settings: ClipSettings, root: Path) -> ClipRecord:
    """Renders, writes and verifies one clip; the file appears under its final name only if valid."""
    rng = np.random.default_rng(job.entropy)
    scene = sample_scene(job.class_name, clip_settings, rng)
    final_path = root / job.relative_path
    final_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = final_path.with_name(".partial-" + final_path.name)
    try:
        written = write_video(partial_path, iter_scene_frames(scene, rng), scene.fps, job.codec)
        check_video(partial_path, scene.num_frames, scene.size)
    except VideoFileError as error:
        partial_path.unlink(missing_ok=True)
        width, height = scene.size
        raise VideoFileError(f"clip {job.relative_path} ({job.codec}, {width}x{height}, "
                             f"{scene.num_frames} frames at {scene.fps} fps) failed: {error}") from error
    os.replace(partial_path, final_path)
    return ClipRecord(job, written, final_path.stat().st_size)


def _single_threaded_worker() -> None:
    """Pool initializer: each worker process already owns a core, so OpenCV's own thread pool would
    only oversubscribe the machine."""
    cv2.setNumThreads(1)


def _run_jobs(make: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Any]:
    """`make(job)` for every job, results in job order, in this process or in a pool of `workers`
    processes (`make` must then be picklable: a module-level function or a partial of one)."""
    if workers == 1:
        yield from map(make, jobs)
        return
    context = multiprocessing.get_context(_WORKER_START_METHOD)
    with context.Pool(workers, initializer=_single_threaded_worker) as pool:
        yield from pool.imap(make, jobs)


def _write_text_atomically(path: Path, text: str) -> None:
    partial = path.with_name(".partial-" + path.name)
    partial.write_text(text)
    os.replace(partial, path)


def _write_json_atomically(path: Path, document: Mapping[str, Any]) -> None:
    _write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def _identity(settings: DatasetSettings, seed: int) -> dict[str, Any]:
    """What makes two datasets the same: identical identity means identical content."""
    return {"generator": GENERATOR_NAME, "format_version": FORMAT_VERSION, "seed": seed,
            "settings": settings.to_dict()}


def _recorded_identity(root: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        identity = {key: manifest[key] for key in _IDENTITY_KEYS if key in manifest}
    except (OSError, ValueError, TypeError):
        return None
    return identity if set(_IDENTITY_KEYS[:4]) <= set(identity) else None


def _prepare_root(root: Path, identity: dict[str, Any], force: bool) -> None:
    """Makes `root` ready for a fresh dataset. A previous run of the same dataset (complete or
    interrupted) is replaced silently; anything else only with `force`. Only the generator's own
    files are removed, list files first, so no list ever points at deleted videos."""
    if root.exists() and not root.is_dir():
        raise DatasetExistsError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    if not any(root.iterdir()):
        return
    recorded = _recorded_identity(root)
    if recorded != identity and not force:
        reason = (f"holds files but no readable {MANIFEST_NAME}" if recorded is None
                  else f"holds a different dataset (seed {recorded['seed']}, or other settings)")
        raise DatasetExistsError(f"refusing to overwrite {root}: it {reason}. "
                                 "Choose another output directory, or pass --force to replace it.")
    for name in (*(f"{split}.list" for split in SPLITS), LABEL_LIST_NAME, MANIFEST_NAME):
        (root / name).unlink(missing_ok=True)
    if (root / VIDEO_DIR_NAME).exists():
        shutil.rmtree(root / VIDEO_DIR_NAME)


def _write_lists(root: Path, classes: Sequence[str], records: Sequence[ClipRecord]) -> None:
    """label_list.txt and one list file per split, in PaddleVideo's formats."""
    labels = "".join(f"{index} {name}\n" for index, name in enumerate(classes))
    _write_text_atomically(root / LABEL_LIST_NAME, labels)
    for split in SPLITS:
        lines = [f"{record.job.relative_path} {classes.index(record.job.class_name)}\n"
                 for record in records if record.job.split == split]
        _write_text_atomically(root / f"{split}.list", "".join(lines))


def _summarise(root: Path, seed: int, classes: Sequence[str], records: Sequence[ClipRecord],
               elapsed_s: float) -> DatasetSummary:
    counts = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    codec_counts = dict.fromkeys(CODECS, 0)
    for record in records:
        counts[record.job.split][record.job.class_name] += 1
        codec_counts[record.job.codec] += 1
    return DatasetSummary(root, seed, counts, codec_counts, sum(r.num_frames for r in records),
                          sum(r.num_bytes for r in records), elapsed_s)


def generate_dataset(
    out_dir: str | Path,
    settings: DatasetSettings,
    seed: int,
    progress: bool = True,
    *,
    workers: int = 1,
    force: bool = False,
) -> DatasetSummary:
    """Generates the whole dataset under `out_dir` and returns what was written.

    Raises DatasetExistsError if `out_dir` holds something other than this same dataset (unless
    `force`), and VideoFileError if a clip cannot be written or does not read back correctly.
    """
    if workers < 1 or seed < 0:
        raise ValueError(f"workers must be >= 1 and seed >= 0, got workers={workers}, seed={seed}")
    started = time.perf_counter()
    root = Path(out_dir)
    identity = _identity(settings, seed)
    _prepare_root(root, identity, force)
    _write_json_atomically(root / MANIFEST_NAME, {**identity, "status": "incomplete"})

    jobs = _plan_jobs(settings, seed)
    make = functools.partial(_make_clip, clip_settings=settings.clip, root=root)
    records = list(tqdm(_run_jobs(make, jobs, workers), total=len(jobs), unit="clip",
                        desc="synthetic clips", disable=not progress))
    _write_lists(root, settings.classes, records)

    summary = _summarise(root, seed, settings.classes, records, time.perf_counter() - started)
    _write_json_atomically(root / MANIFEST_NAME, {
        **identity,
        "status": "complete",
        "classes": list(settings.classes),
        "label_list": LABEL_LIST_NAME,
        "lists": {split: f"{split}.list" for split in SPLITS},
        "counts": summary.counts,
        "codec_counts": summary.codec_counts,
        "total_frames": summary.total_frames,
        "total_bytes": summary.total_bytes,
    })
    return summary


def long_video_entropy(seed: int, index: int) -> tuple[int, ...]:
    """The seed of long video `index`: its plan and its pixels come from one generator seeded so."""
    return (seed, _LONG_STREAM, index)


def _make_long_video(index: int, classes: Sequence[str], clip_settings: ClipSettings,
                     long: LongVideoSettings, seed: int, root: Path) -> dict[str, Any]:
    """Plans, renders, writes and verifies long video `index` and its timeline file; returns its
    manifest entry. The video appears under its final name only if it reads back correctly, and
    its timeline only after it."""
    rng = np.random.default_rng(long_video_entropy(seed, index))
    plan = plan_long_video(classes, clip_settings, long, rng)
    relative = f"{VIDEO_DIR_NAME}/{LONG_VIDEO_PREFIX}{index:05d}{CODECS[long.codec].extension}"
    final_path = root / relative
    final_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = final_path.with_name(".partial-" + final_path.name)
    try:
        write_video(partial_path, iter_long_video_frames(plan, rng), plan.fps, long.codec)
        check_video(partial_path, plan.num_frames, plan.size)
    except VideoFileError as error:
        partial_path.unlink(missing_ok=True)
        raise VideoFileError(f"long video {relative} failed: {error}") from error
    os.replace(partial_path, final_path)
    timeline = final_path.with_name(final_path.stem + TIMELINE_SUFFIX)
    _write_text_atomically(timeline, json.dumps(plan.timeline(), indent=1) + "\n")
    return {"video": relative, "timeline": timeline.relative_to(root).as_posix(), "fps": plan.fps,
            "size": list(plan.size), "num_frames": plan.num_frames,
            "duration_s": round(plan.num_frames / plan.fps, 6), "segments": len(plan.segments),
            "num_bytes": final_path.stat().st_size}


def generate_long_videos(out_dir: str | Path, settings: DatasetSettings, long: LongVideoSettings,
                         seed: int, progress: bool = True, *, workers: int = 1,
                         force: bool = False) -> list[dict[str, Any]]:
    """Writes `long.count` long videos of `settings.classes` (label ids as in the clip dataset of
    the same settings) with their timelines under `out_dir`; returns their manifest entries.
    Overwrite rules and errors as `generate_dataset`."""
    if workers < 1 or seed < 0:
        raise ValueError(f"workers must be >= 1 and seed >= 0, got workers={workers}, seed={seed}")
    long.check_against(settings.clip)
    root = Path(out_dir)
    identity = {**_identity(settings, seed), "long": _plain_long(long)}
    _prepare_root(root, identity, force)
    _write_json_atomically(root / MANIFEST_NAME, {**identity, "status": "incomplete"})
    make = functools.partial(_make_long_video, classes=settings.classes,
                             clip_settings=settings.clip, long=long, seed=seed, root=root)
    videos = list(tqdm(_run_jobs(make, range(long.count), workers), total=long.count,
                       unit="video", desc="synthetic long videos", disable=not progress))
    _write_text_atomically(root / LABEL_LIST_NAME,
                           "".join(f"{index} {name}\n" for index, name in enumerate(settings.classes)))
    _write_json_atomically(root / MANIFEST_NAME, {**identity, "status": "complete",
                                                  "classes": list(settings.classes),
                                                  "label_list": LABEL_LIST_NAME, "videos": videos})
    return videos


def _plain_long(long: LongVideoSettings) -> dict[str, Any]:
    """The long-video settings as dataset.json records them (lists, as JSON reads them back)."""
    return json.loads(json.dumps(dataclasses.asdict(long)))


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, rejected at parse time with a usage message."""

    def integer(text: str) -> int:  # named for argparse's "invalid integer value" message
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return integer


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.data.synthetic",
        description="Generate the synthetic labelled action-video dataset (PaddleVideo list-file layout).")
    parser.add_argument("--out", required=True, type=Path, help="dataset root directory to write")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="generator YAML (default: %(default)s)")
    parser.add_argument("--seed", type=_int_at_least(0), help="global seed (overrides the YAML)")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=_int_at_least(1), metavar="N",
                            help=f"{split} clips PER CLASS (overrides the YAML)")
    parser.add_argument("--workers", type=_int_at_least(1), help="worker processes (overrides the YAML)")
    parser.add_argument("--quick", action="store_true",
                        help="apply the YAML's 'quick' overlay: a tiny smoke-test dataset")
    parser.add_argument("--force", action="store_true", help="replace whatever dataset is already in --out")
    long = parser.add_argument_group(
        "long videos", "with --long N, write N long videos of the dataset's classes, each with a "
        "ground-truth <name>.timeline.json beside it, instead of the clip dataset")
    long.add_argument("--long", type=_int_at_least(1), metavar="N", help="number of long videos")
    long.add_argument("--segments", type=_int_at_least(1), metavar="M",
                      help=f"segments (actions) per long video (default {DEFAULT_SEGMENTS})")
    long.add_argument("--segment-seconds", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help="range of a segment's length, seconds (default %g %g: longer than the "
                           "service's 10 s timeline window)" % DEFAULT_SEGMENT_SECONDS)
    long.add_argument("--resolution", type=_resolution, metavar="WxH",
                      help="frame size of every long video (default: drawn per video from the "
                           "config's clip.resolutions)")
    long.add_argument("--fps", type=_int_at_least(1),
                      help="frame rate of every long video (default: drawn from clip.fps_range)")
    long.add_argument("--codec", choices=tuple(CODECS),
                      help=f"codec of the long videos (default {DEFAULT_LONG_CODEC})")
    args = parser.parse_args(argv)
    if args.long is None and any(getattr(args, name) is not None for name in _LONG_ONLY):
        parser.error("--segments, --segment-seconds, --resolution, --fps and --codec need --long N")
    return args


_LONG_ONLY = ("segments", "segment_seconds", "resolution", "fps", "codec")


def _resolution(text: str) -> tuple[int, int]:
    """An argparse type: WIDTHxHEIGHT."""
    width, separator, height = text.lower().partition("x")
    if not separator or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}")
    return int(width), int(height)


def _overridden(value: int | None, default: int) -> int:
    return default if value is None else value


def _describe_long(root: Path, videos: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"synthetic long videos {root}"]
    lines += [f"{v['video']}: {v['size'][0]}x{v['size'][1]}, {v['fps']} fps, {v['duration_s']:.1f} s, "
              f"{v['segments']} segments ({v['timeline']})" for v in videos]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: refused or bad settings, 1: a clip failed)."""
    args = _parse_args(argv)
    try:
        config = load_generator_config(args.config, quick=args.quick)
        counts = {split: _overridden(getattr(args, split), config.settings.clips_per_class[split])
                  for split in SPLITS}
        settings = dataclasses.replace(config.settings, clips_per_class=counts)
        seed, workers = _overridden(args.seed, config.seed), _overridden(args.workers, config.workers)
        if args.long is not None:
            long = LongVideoSettings(
                args.long, _overridden(args.segments, DEFAULT_SEGMENTS),
                tuple(args.segment_seconds or DEFAULT_SEGMENT_SECONDS), args.resolution, args.fps,
                args.codec or DEFAULT_LONG_CODEC)
            videos = generate_long_videos(args.out, settings, long, seed, workers=workers,
                                          force=args.force)
            print(_describe_long(args.out, videos))
            return 0
        summary = generate_dataset(args.out, settings, seed, workers=workers, force=args.force)
    except (SettingsError, DatasetExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except VideoFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
