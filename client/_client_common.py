"""What the HTTP and gRPC clients share: their arguments, finding the videos, classifying them
one by one or as a load run (_load_run.py), printing results.

Standalone on purpose (standard library only; OpenCV only for --frames): users copy the
`client/` folder next to their own code, so it imports nothing from this project.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _load_run import MakeRequest, run_load
from _protocol import TRANSPORT_ERROR, Answer, Send, build_frames_request, build_request

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})
MODES = ("uniform", "dense")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def collect_videos(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the video files directly inside the folder, sorted."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    raise FileNotFoundError(f"{path}: no such file or folder")


def result_record(path: Path, answer: Answer) -> dict[str, object]:
    """One video's outcome as a JSON-ready dict; JSON-valued fields are decoded."""
    record: dict[str, object] = {"file": str(path), "err_no": answer.err_no}
    if answer.err_no != 0:
        record["err_msg"] = answer.err_msg
        return record
    for key, value in answer.fields.items():
        record[key] = json.loads(value) if key in ("topk", "model", "timing_ms") else value
    return record


def result_line(record: dict[str, object]) -> str:
    """'<file>: <label> (score 0.912)' or '<file>: error <n>: <message>'."""
    if record["err_no"] != 0:
        return f"{record['file']}: error {record['err_no']}: {record['err_msg']}"
    line = f"{record['file']}: {record['label']} (score {float(record['score']):.3f})"
    others = record.get("topk", [])[1:]
    if others:
        line += "; next: " + ", ".join(f"{c['label']} {c['score']:.3f}" for c in others)
    return line


@dataclass(frozen=True)
class LabelledVideo:
    """A video and, when it comes from a list file, its expected class name."""

    path: Path
    expected: str | None = None


def read_labelled_list(list_path: Path, labels_path: Path) -> list[LabelledVideo]:
    """A PaddleVideo list file (`relative/path label_id` per line, relative to the list's folder)
    with its `<id> <name>` label list: the service's answers can then be scored."""
    names = {}
    for line in labels_path.read_text(encoding="utf-8").splitlines():
        index, _, name = line.strip().partition(" ")
        if name:
            names[int(index)] = name.strip()
    videos = []
    for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            videos.append(LabelledVideo(list_path.parent / parts[0], names[int(parts[-1])]))
        except (KeyError, ValueError):
            raise ValueError(f"{list_path}:{lineno}: label {parts[-1]!r} is not in {labels_path}") from None
    return videos


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, nargs="?", help="a video file, or a folder of video files")
    parser.add_argument("--video", type=Path, help="same as PATH: a video file or a folder")
    parser.add_argument("--list", type=Path, help="a PaddleVideo list file (`path label_id` lines); "
                        "with --labels, the accuracy is printed at the end")
    parser.add_argument("--labels", type=Path, help="the `<id> <name>` label list for --list")
    parser.add_argument("--topk", type=int, default=1, help="classes to report per video (default 1)")
    parser.add_argument("--mode", choices=MODES, default="uniform",
                        help="frame sampling: uniform (default) or dense (10 clips x 3 crops)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per video (JSON Lines) instead of text")
    parser.add_argument("--frames", action="store_true",
                        help="send PaddleVideo-style raw RGB frames (decoded here with OpenCV) "
                        "instead of the file, to compare the two")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="load run: requests in flight at once (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="load run: times each video is sent after its reference answer; "
                        "with --concurrency > 1 or --repeat > 1, prints p50/p95/p99 latency, "
                        "throughput and answer counts instead of one line per video")


def request_maker(args: argparse.Namespace) -> MakeRequest:
    """Builds a request from a video path: the file's bytes, or its frames with --frames."""
    if args.frames:
        return functools.partial(build_frames_request, topk=args.topk, mode=args.mode)
    return lambda path: build_request(path.read_bytes(), topk=args.topk, mode=args.mode)


def classify_all(videos: Sequence[LabelledVideo], send: Send, make_request: MakeRequest, *,
                 as_json: bool) -> int:
    """Sends every video, printing one line each as it is answered; a failing video is reported
    and the rest still go. With expected labels, each line says whether the answer is right
    and a summary gives the accuracy. Returns non-zero if any video failed."""
    failed, correct, scored, latencies = 0, 0, 0, []
    for video in videos:
        try:
            request = make_request(video.path)
        except OSError as exc:
            answer = Answer(TRANSPORT_ERROR, f"cannot read the file: {exc.strerror}", {})
        except ValueError as exc:
            answer = Answer(TRANSPORT_ERROR, str(exc), {})
        else:
            tic = time.perf_counter()
            answer = send(request)
            latencies.append(time.perf_counter() - tic)
        record = result_record(video.path, answer)
        failed += answer.err_no != 0
        line = result_line(record)
        if video.expected is not None:
            record["expected"] = video.expected
            hit = answer.err_no == 0 and record["label"] == video.expected
            correct, scored = correct + hit, scored + 1
            line += f"  [expected {video.expected}: {'ok' if hit else 'WRONG'}]"
        print(json.dumps(record) if as_json else line, flush=True)
    if latencies and not as_json:
        print(f"{len(videos)} videos, {failed} failed; median latency "
              f"{1000 * statistics.median(latencies):.0f} ms", flush=True)
    if scored and not as_json:
        print(f"accuracy: {correct}/{scored} = {100.0 * correct / scored:.1f}%", flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def load(videos: Sequence[LabelledVideo], send: Send, make_request: MakeRequest, *,
         concurrency: int, repeat: int, as_json: bool) -> int:
    """A load run (see _load_run.py); non-zero when an answer was lost or wrong."""
    try:
        summary = run_load([video.path for video in videos], send, make_request,
                           concurrency=concurrency, repeat=repeat)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(summary.json() if as_json else summary.text(), flush=True)
    return EXIT_OK if summary.passed else EXIT_SOME_FAILED


def run(args: argparse.Namespace, send: Send) -> int:
    """The shared main: finds the videos and classifies them with `send`, one by one or as a
    load run."""
    target = args.video or args.path
    try:
        if min(args.concurrency, args.repeat) < 1:
            raise ValueError("--concurrency and --repeat must be >= 1")
        if args.list:
            if not args.labels:
                raise ValueError("--list needs --labels (the `<id> <name>` label list)")
            videos = read_labelled_list(args.list, args.labels)
        elif target is None:
            raise ValueError("give a video file or folder (PATH or --video), or --list")
        else:
            videos = [LabelledVideo(p) for p in collect_videos(target)]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not videos:
        print(f"error: {target}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})",
              file=sys.stderr)
        return EXIT_USAGE
    make_request = request_maker(args)
    if args.concurrency > 1 or args.repeat > 1:
        return load(videos, send, make_request, concurrency=args.concurrency, repeat=args.repeat,
                    as_json=args.json)
    return classify_all(videos, send, make_request, as_json=args.json)
