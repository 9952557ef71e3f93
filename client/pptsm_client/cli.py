"""What the HTTP and gRPC command lines share: their arguments, finding the videos, classifying
them one by one or as a load run (load_run.py), printing results."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from .load_run import MakeRequest, run_load
from .protocol import (
    MODES,
    TRANSPORT_ERROR,
    Answer,
    Send,
    build_frames_request,
    build_request,
    build_upload,
    request_options,
)
from .report import result_lines, result_record
from .retry import RetryingSender, RetryPolicy
from .videos import (
    VIDEO_SUFFIXES,
    LabelledVideo,
    collect_videos,
    label_key,
    read_label_names,
    read_labelled_list,
)

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
TIMELINE_OPTIONS = ("window_s", "stride_s", "min_score", "smooth")

# The service's labels, when it can tell them (the HTTP client reads its metadata route).
LabelSource = Callable[[], Collection[str] | None]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, nargs="?",
                        help="a video file, or a folder of videos (walked recursively)")
    parser.add_argument("--video", type=Path,
                        help="same as PATH: a video file, or a folder walked recursively; in "
                        "the Kinetics layout (class/clip.mp4) the class folder names the expected "
                        "label, and the accuracy is printed at the end")
    parser.add_argument("--list", type=Path,
                        help="a PaddleVideo list file (`path label_id` lines); with --labels, "
                        "the accuracy is printed at the end")
    parser.add_argument("--labels", type=Path, help="the `<id> <name>` label list for --list; "
                        "with a folder, only class folders named by a label are scored")
    parser.add_argument("--topk", type=int, default=1,
                        help="classes to report per video (default 1)")
    parser.add_argument("--mode", choices=MODES, default="uniform",
                        help="frame sampling: uniform (default), dense (10 clips x 3 crops) or "
                        "timeline (windows over a long video: one line per segment)")
    parser.add_argument("--window-s", type=float,
                        help="timeline: window length in seconds (default: the service's, 10)")
    parser.add_argument("--stride-s", type=float,
                        help="timeline: seconds between window starts (default: half the window)")
    parser.add_argument("--min-score", type=float,
                        help="timeline: least top-1 score a segment is made of (default: the "
                        "service's, 0.5)")
    parser.add_argument("--smooth", type=int, choices=(0, 1),
                        help="timeline: 1 (the service's default) averages each window's scores "
                        "with its neighbours', 0 answers each window on its own frames")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per video (JSON Lines) with the full answer "
                        "instead of text")
    parser.add_argument("--frames", action="store_true",
                        help="send PaddleVideo-style raw RGB frames (decoded here with OpenCV) "
                        "instead of the file, to compare the two")
    parser.add_argument("--retries", type=int, default=0,
                        help="send a request again up to N times when the answer is err_no 54, "
                        "55 or 503 or the connection fails, after a jittered exponential backoff "
                        "(default 0); retries are counted in the summary")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="load run: requests in flight at once (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="load run: times each video is sent after its reference answer; "
                        "with --concurrency > 1 or --repeat > 1, prints p50/p95/p99 latency, "
                        "throughput and answer counts instead of one line per video")
    parser.set_defaults(binary=False)  # plain uploads are HTTP's (pptsm-http adds --binary)


def options_of(args: argparse.Namespace) -> dict[str, str]:
    """The request's option keys; the timeline ones only with --mode timeline."""
    timeline = {name: getattr(args, name) for name in TIMELINE_OPTIONS}
    given = [name for name, value in timeline.items() if value is not None]
    if given and args.mode != "timeline":
        flag = "--" + given[0].replace("_", "-")
        raise ValueError(f"{flag} needs --mode timeline")
    return request_options(topk=args.topk, mode=args.mode, **timeline)


def request_maker(args: argparse.Namespace) -> MakeRequest:
    """Builds a request from a video path: the file's bytes (base64 in the key/value form, or a
    plain upload with --binary), or its frames with --frames."""
    options = options_of(args)
    if args.frames:
        return functools.partial(build_frames_request, options=options)
    if args.binary:
        return lambda path: build_upload(path.read_bytes(), options, path.name)
    return lambda path: build_request(path.read_bytes(), options)


def classify_all(videos: Sequence[LabelledVideo], send: RetryingSender, make_request: MakeRequest,
                 *, as_json: bool) -> int:
    """Sends every video, printing its lines as it is answered; a failing video is reported and
    the rest still go. With expected labels, each line says whether the answer is right and a
    summary gives the accuracy. Returns non-zero if any video failed."""
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
        lines = result_lines(record)
        if video.expected is not None and (answer.err_no != 0 or "label" in record):
            record["expected"] = video.expected
            hit = (answer.err_no == 0
                   and label_key(str(record["label"])) == label_key(video.expected))
            correct, scored = correct + hit, scored + 1
            lines[0] += f"  [expected {video.expected}: {'ok' if hit else 'WRONG'}]"
        print(json.dumps(record) if as_json else "\n".join(lines), flush=True)
    if latencies and not as_json:
        print(f"{len(videos)} videos, {failed} failed; median latency "
              f"{1000 * statistics.median(latencies):.0f} ms; {send.retries} retries", flush=True)
    if scored and not as_json:
        print(f"accuracy: {correct}/{scored} = {100.0 * correct / scored:.1f}%", flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def load(videos: Sequence[LabelledVideo], send: RetryingSender, make_request: MakeRequest, *,
         concurrency: int, repeat: int, as_json: bool) -> int:
    """A load run (see load_run.py); non-zero when an answer was lost or wrong."""
    try:
        summary = run_load([video.path for video in videos], send, make_request,
                           concurrency=concurrency, repeat=repeat)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    summary = dataclasses.replace(summary, retries=send.retries)
    print(summary.json() if as_json else summary.text(), flush=True)
    return EXIT_OK if summary.passed else EXIT_SOME_FAILED


def find_videos(args: argparse.Namespace, service_labels: LabelSource) -> list[LabelledVideo]:
    """The videos the arguments name, with their expected labels where known."""
    target = args.video or args.path
    if args.list:
        if not args.labels:
            raise ValueError("--list needs --labels (the `<id> <name>` label list)")
        return read_labelled_list(args.list, args.labels)
    if target is None:
        raise ValueError("give a video file or folder (PATH or --video), or --list")
    if target.is_dir():
        labels = (read_label_names(args.labels).values() if args.labels else service_labels())
        return collect_videos(target, labels)
    return collect_videos(target)


def run(args: argparse.Namespace, send: Send,
        service_labels: LabelSource = lambda: None) -> int:
    """The shared main: finds the videos and classifies them with `send` (retried as --retries
    says), one by one or as a load run."""
    try:
        if min(args.concurrency, args.repeat) < 1:
            raise ValueError("--concurrency and --repeat must be >= 1")
        if args.retries < 0:
            raise ValueError("--retries must be >= 0")
        make_request = request_maker(args)
        videos = find_videos(args, service_labels)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not videos:
        print(f"error: {args.video or args.path}: no video files "
              f"({', '.join(sorted(VIDEO_SUFFIXES))})", file=sys.stderr)
        return EXIT_USAGE
    retrying = RetryingSender(send, RetryPolicy(retries=args.retries))
    if args.concurrency > 1 or args.repeat > 1:
        return load(videos, retrying, make_request, concurrency=args.concurrency,
                    repeat=args.repeat, as_json=args.json)
    return classify_all(videos, retrying, make_request, as_json=args.json)
