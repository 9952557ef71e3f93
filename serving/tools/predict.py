"""Classify a video, a folder of videos or a list file in-process, with the service's code path.

    python -m serving.tools.predict --model-dir model_repo/NAME --video FILE|FOLDER|LIST
        [--out results.jsonl|results.csv [--format jsonl|csv] [--resume | --overwrite]]
        [--workers N] [--threads N] [--mode uniform|dense|timeline] [--topk K]
        [--window-s S --stride-s S --min-score P --smooth 0|1] [--root DIR] [--config pipeline_config/config.yml]
        [--precision fp32|bf16|int8] [--backend auto|pyav|decord|opencv|ORDER]
        [--benchmark N [--warmup W]]

Folders are walked recursively; a class folder (`class/clip.mp4`) or a list file gives each
video's expected label, and then accuracy and a confusion matrix are printed (and written beside
`--out` as <out>.confusion.csv). With `--out` every video becomes one row of a JSON Lines or CSV
file (serving.tools.batch_rows: path, expected, label, score, top-k or timeline segments,
timings, error), written as it is ready, with a progress bar; `--resume` skips the videos
already in it, so an interrupted run (Ctrl-C, a kill) continues where it stopped. Without
`--out` each video's answer is printed as a line. A video that fails is a row with its error and
the run goes on; the exit status is then 1. `--workers N` runs N processes, each with its own
predictor of cores/N threads. `--benchmark N` then times each video (serving.tools.benchmark).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from serving.core.errors import PPTSMError
from serving.core.metadata import MetadataError, load_meta
from serving.core.predictor import CPU_PRECISIONS, PredictorError
from serving.core.preprocess.decode import backend_order
from serving.core.preprocess.pipeline import SAMPLING_MODES
from serving.core.timeline import TIMELINE, TimelineOptions
from serving.tools.batch_rows import FORMATS, Row, RowWriter, format_of, read_rows
from serving.tools.batch_run import (
    PredictorRecipe,
    Task,
    WorkerStartError,
    run_batch,
    threads_per_worker,
)
from serving.tools.batch_summary import describe, summarize, write_confusion_csv
from serving.tools.benchmark import benchmark, print_benchmark_table
from serving.tools.corpus import CorpusVideo, find_videos

# `benchmark` stays importable from here for bench/model_zoo.py, which times models with it.
__all__ = ["benchmark", "main"]

MODES = (*SAMPLING_MODES, TIMELINE)
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def answer_line(row: Row) -> str:
    """A row as one printed line: the ranked classes, the timeline's segments, or the error."""
    if row["error"] is not None:
        return f"{row['path']}: error: {row['error']}"
    if row["segments"] is not None:
        parts = [f"{s['start_s']:.1f}-{s['end_s']:.1f} s {s['label']} {s['score']:.4f}"
                 for s in row["segments"]]
        return f"{row['path']}: " + (" | ".join(parts) or "no segment reaches min_score")
    return f"{row['path']}: " + " | ".join(f"{c['label']} {c['score']:.4f}" for c in row["topk"])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.tools.predict",
        description="Classify videos in-process with the service's preprocessing and predictor: "
                    "one file, a folder (recursively) or a PaddleVideo list file.")
    parser.add_argument("--model-dir", required=True, type=Path,
                        help="exported model folder, e.g. model_repo/pptsm")
    parser.add_argument("--video", required=True, type=Path,
                        help="a video file, a folder (class/clip.mp4 gives expected labels) or a "
                             "list file ('path label' lines)")
    parser.add_argument("--root", type=Path,
                        help="folder the list file's paths are relative to (default: its own)")
    parser.add_argument("--out", type=Path, help="results file, one row per video")
    parser.add_argument("--format", choices=FORMATS,
                        help="results format (default: csv for a .csv --out, else jsonl)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the rows already in --out and classify only the other videos")
    again.add_argument("--overwrite", action="store_true", help="start --out over if it exists")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes, each with its own predictor (default 1)")
    parser.add_argument("--threads", type=int,
                        help="CPU math threads per worker (default: cores / workers)")
    parser.add_argument("--topk", type=int, help="classes per video or window (default 5)")
    parser.add_argument("--mode", choices=MODES,
                        help="uniform or dense sampling (default: the model's own), or timeline")
    parser.add_argument("--window-s", type=float, help="timeline window, seconds (default 10)")
    parser.add_argument("--stride-s", type=float, help="timeline stride (default: half the window)")
    parser.add_argument("--min-score", type=float,
                        help="timeline: lowest top-1 score a segment keeps (default 0.5)")
    parser.add_argument("--smooth", type=int, choices=(0, 1),
                        help="timeline: 1 (default) averages each window's scores with its "
                             "neighbours', 0 answers each window alone")
    parser.add_argument("--config", type=Path,
                        help="take predictor and decode settings from this pipeline config")
    parser.add_argument("--precision", choices=CPU_PRECISIONS, help="CPU precision (default fp32)")
    parser.add_argument("--backend", type=_backend,
                        help="video decoder: auto (default), pyav, decord, opencv or an order "
                             "such as decord,pyav")
    parser.add_argument("--benchmark", type=int, metavar="N", default=0,
                        help="then time N runs per video after warm-up and print a table")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up runs per video (default 2)")
    args = parser.parse_args(argv)
    if args.benchmark < 0 or args.warmup < 0:
        parser.error("--benchmark and --warmup must be >= 0")
    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--workers and --threads must be >= 1")
    if args.resume and args.out is None:
        parser.error("--resume needs --out")
    if args.benchmark and args.mode == TIMELINE:
        parser.error("--benchmark times single classifications, not timelines")
    timeline_flags = (args.window_s, args.stride_s, args.min_score, args.smooth)
    if args.mode != TIMELINE and any(value is not None for value in timeline_flags):
        parser.error("--window-s, --stride-s, --min-score and --smooth need --mode timeline")
    return args


def _backend(value: str) -> str:
    try:
        backend_order(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _task(args: argparse.Namespace) -> Task:
    task = Task(args.mode, args.topk, args.window_s, args.stride_s, args.min_score,
                None if args.smooth is None else bool(args.smooth))
    if args.mode == TIMELINE:
        TimelineOptions(**task.timeline_options())  # a bad option stops the run, not every video
    return task


def _previous_rows(args: argparse.Namespace, fmt: str) -> list[Row]:
    """The rows a resumed run keeps; refuses to start over a results file by accident."""
    if args.resume:
        return read_rows(args.out, fmt)
    if not args.overwrite and args.out.is_file() and args.out.stat().st_size:
        raise PPTSMError(f"{args.out} exists: pass --resume to continue it or --overwrite to "
                         "start it over")
    return []


def _run(args: argparse.Namespace, recipe: PredictorRecipe, task: Task,
         todo: Sequence[CorpusVideo], writer: RowWriter | None) -> list[Row]:
    """Classifies `todo`, writing (or printing) each row as it comes, under a progress bar."""
    rows: list[Row] = []
    started = time.perf_counter()
    with tqdm(total=len(todo), unit="video", desc="classify", file=sys.stderr,
              disable=writer is None) as progress:
        for row in run_batch(recipe, task, todo, args.workers):
            rows.append(row)
            if writer is not None:
                writer.write(row)
            else:
                print(answer_line(row), flush=True)
            progress.update()
    elapsed = time.perf_counter() - started
    if rows and writer is not None:
        print(f"classified {len(rows)} videos in {elapsed:.1f} s ({len(rows) / elapsed:.2f} "
              f"videos/s, {args.workers} worker(s) x {recipe.threads} thread(s))", file=sys.stderr)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    fmt = format_of(args.out, args.format) if args.out is not None else None
    try:
        meta = load_meta(args.model_dir)
        videos = find_videos(args.video, meta.labels, args.root)
        task = _task(args)
        previous = _previous_rows(args, fmt) if args.out is not None else []
    except (PPTSMError, MetadataError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    recipe = PredictorRecipe(args.model_dir, args.threads or threads_per_worker(args.workers),
                             args.config, args.precision, args.backend)
    done = {row["path"] for row in previous}
    todo = [video for video in videos if video.key not in done]
    if previous:
        print(f"resuming: {len(videos) - len(todo)} of {len(videos)} videos already in {args.out}",
              file=sys.stderr)
    writer = RowWriter(args.out, fmt, fresh=not args.resume) if args.out is not None else None
    try:
        new_rows = _run(args, recipe, task, todo, writer)
    except KeyboardInterrupt:
        kept = f"; the rows so far are in {args.out}: run again with --resume" if writer else ""
        print(f"\ninterrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (WorkerStartError, PredictorError, MetadataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if writer is not None:
            writer.close()
    rows = [*previous, *new_rows]
    summary = summarize(rows, meta.labels)
    print(describe(summary))
    if args.out is not None and summary.scored:
        confusion = args.out.with_name(args.out.name + ".confusion.csv")
        write_confusion_csv(summary, confusion)
        print(f"confusion matrix written to {confusion}")
    if args.benchmark:
        ok = [(row["path"], video.path) for row, video in zip(new_rows, todo) if row["error"] is None]
        if ok:
            print_benchmark_table(recipe.build(), ok, runs=args.benchmark, warmup=args.warmup,
                                  topk=args.topk, mode=args.mode)
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
