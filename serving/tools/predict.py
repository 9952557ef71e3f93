"""Classify video files in-process, with the service's code path, and time it.

    python -m serving.tools.predict --model-dir model_repo/NAME --video FILE_OR_FOLDER [--topk K]
        [--mode uniform|dense] [--config pipeline_config/config.yml] [--threads N]
        [--precision fp32|bf16|int8] [--backend auto|pyav|decord|opencv|ORDER]
        [--benchmark N [--warmup W]]

Prints the top-k classes of every video. With `--benchmark N` it then runs each video W times
to warm up (oneDNN compiles its kernels on the first run) and N times measured, and prints
preprocessing (probe + sampled decode + resize/crop/normalise), inference and total ms per
video as median (min-max). Predictor settings default to the service's defaults; `--config`
takes them (and the decode settings) from a pipeline config, exactly as the service would.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from serving.core.errors import CodedError
from serving.core.metadata import MetadataError
from serving.tools.offline import OfflinePredictor, Prediction
from serving.core.predictor import CPU_PRECISIONS, PredictorError, PredictorSettings
from serving.core.preprocess.decode import backend_order
from serving.core.preprocess.pipeline import SAMPLING_MODES as MODES
from serving.core.spread import Spread

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})
BENCHMARK_COLUMNS = ("preprocess_ms", "inference_ms", "total_ms")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def video_files(path: Path) -> list[Path]:
    """`path` if it is a file, else the video files directly in the folder, sorted by name."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    raise FileNotFoundError(f"{path}: no such file or folder")


def benchmark(predictor: OfflinePredictor, video: bytes, *, runs: int, warmup: int,
              topk: int | None = None, mode: str | None = None) -> dict[str, Spread]:
    """Median (min-max) of BENCHMARK_COLUMNS over `runs` classifications after `warmup`."""
    for _ in range(warmup):
        predictor.classify(video, topk=topk, mode=mode)
    results: list[Prediction] = [predictor.classify(video, topk=topk, mode=mode)
                                 for _ in range(runs)]
    return {
        "preprocess_ms": Spread.of([r.preprocess_ms for r in results]),
        "inference_ms": Spread.of([r.infer_ms for r in results]),
        "total_ms": Spread.of([r.total_ms for r in results]),
    }


def settings_line(predictor: OfflinePredictor) -> str:
    """The settings a timing depends on, printed with every benchmark table."""
    settings = predictor.predictor.settings
    return (f"{predictor.meta.name} ({predictor.meta.architecture}, T={predictor.meta.preprocess.num_seg}, "
            f"{predictor.meta.preprocess.crop_size}px), {settings.cpu_threads} CPU threads, "
            f"{settings.precision}, oneDNN {'on' if settings.use_onednn else 'off'}, "
            f"decoder {predictor.decode.backend}")


def prediction_line(name: str, prediction: Prediction) -> str:
    classes = " | ".join(f"{c.label} {c.score:.4f}" for c in prediction.ranked)
    return f"{name}: {classes}"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Classify videos in-process with the service's preprocessing and predictor.")
    parser.add_argument("--model-dir", required=True, type=Path,
                        help="exported model folder, e.g. model_repo/pptsm")
    parser.add_argument("--video", required=True, type=Path, help="a video file or a folder")
    parser.add_argument("--topk", type=int, help="classes to print per video (default 5)")
    parser.add_argument("--mode", choices=MODES, help="sampling (default: the model's own)")
    parser.add_argument("--config", type=Path,
                        help="take predictor and decode settings from this pipeline config")
    parser.add_argument("--threads", type=int, help="CPU math threads (default 2)")
    parser.add_argument("--precision", choices=CPU_PRECISIONS, help="CPU precision (default fp32)")
    parser.add_argument("--backend", type=_backend,
                        help="video decoder: auto (default), pyav, decord, opencv or an order "
                             "such as decord,pyav")
    parser.add_argument("--benchmark", type=int, metavar="N", default=0,
                        help="time N runs per video after warm-up and print a table")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up runs per video (default 2)")
    args = parser.parse_args(argv)
    if args.benchmark < 0 or args.warmup < 0:
        parser.error("--benchmark and --warmup must be >= 0")
    return args


def _backend(value: str) -> str:
    try:
        backend_order(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _load(args: argparse.Namespace) -> OfflinePredictor:
    overrides = {key: value for key, value in (("cpu_threads", args.threads),
                                               ("precision", args.precision)) if value is not None}
    if args.config is not None:
        predictor = OfflinePredictor.from_service_config(args.model_dir, args.config, **overrides)
    else:
        predictor = OfflinePredictor(args.model_dir,
                                     dataclasses.replace(PredictorSettings(), **overrides))
    if args.backend is not None:
        predictor.decode = dataclasses.replace(predictor.decode, backend=args.backend)
    return predictor


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        videos = video_files(args.video)
        predictor = _load(args)
    except (OSError, MetadataError, PredictorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not videos:
        print(f"error: {args.video}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})",
              file=sys.stderr)
        return EXIT_USAGE
    failed: set[Path] = set()
    for path in videos:
        try:
            print(prediction_line(path.name, predictor.classify(
                path.read_bytes(), topk=args.topk, mode=args.mode)), flush=True)
        except (CodedError, ValueError, OSError) as exc:
            failed.add(path)
            print(f"{path.name}: error: {exc}", flush=True)
    if args.benchmark:
        print(f"\nbenchmark: median (min-max) of {args.benchmark} runs after {args.warmup} "
              f"warm-up runs; {settings_line(predictor)}")
        width = max(len(p.name) for p in videos)
        print(f"{'video':<{width}}  " + "  ".join(f"{c:>24}" for c in BENCHMARK_COLUMNS))
        for path in (p for p in videos if p not in failed):
            timings = benchmark(predictor, path.read_bytes(), runs=args.benchmark,
                                warmup=args.warmup, topk=args.topk, mode=args.mode)
            print(f"{path.name:<{width}}  " + "  ".join(f"{str(timings[c]):>24}"
                                                        for c in BENCHMARK_COLUMNS), flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
