"""The benchmark behind `make bench`: model-family latency, serving load, decoding.

    python -m tests.bench.run_bench [--quick] [--sections models serving decoding]
        [--out output/bench] [--threads 2] [--config pipeline_config/config.yml]
        [--serving-model DIR] [--trained DIR] [--int8 | --no-int8]

Prints one Markdown report and writes it with CSV files and PNG charts to --out (git-ignored).
Exported models and clips are cached in --out/models and --out/clips: the first run exports the
six families (about a minute each on 2 cores), later runs reuse them. `--quick` takes fewer
repeats and 2 s clips instead of 10 s ones, for smoke runs. Figures are medians with the
min-max spread; each section states the thread count, precision and the machine's load
average, because on a shared machine the absolute numbers move and only ratios measured in one
run compare well.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.launcher import ServiceProcess, free_port
from serving.predictor import PredictorSettings
from serving.quantize import quantize_model
from tests.bench.clips import CODECS, SIZES, bench_clip
from tests.bench.decoding import BACKENDS, decode_timing
from tests.bench.export_random import WEIGHTS_NOTE
from tests.bench.model_zoo import FAMILIES, exported_family, time_model
from tests.bench.report import (
    Table,
    decoding_table,
    model_table,
    plot_decoding,
    plot_models,
    plot_serving,
    scaling_note,
    serving_table,
)
from tests.bench.serving_load import (
    RequestBody,
    frames_body,
    frames_size,
    run_level,
    video_body,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("models", "serving", "decoding")
SYNTHETIC = REPO_ROOT / "data" / "synthetic"
# Families also timed int8: the heaviest (the 2x target) and the one the serving section serves.
INT8_FAMILIES = (FAMILIES[0], FAMILIES[-1])


@dataclass(frozen=True)
class Plan:
    """How much each section runs."""

    clip_seconds: float
    warmup: int
    runs: int
    video_levels: tuple[tuple[int, int], ...]  # (concurrency, requests)
    frames_levels: tuple[tuple[int, int], ...]
    sparse_repeats: int
    full_repeats: int
    int8_calibration_clips: int
    int8_check_clips: int


QUICK = Plan(2.0, 1, 3, ((1, 2), (4, 4), (16, 16)), ((1, 1), (4, 4), (16, 16)), 3, 1, 4, 8)
FULL = Plan(10.0, 2, 7, ((1, 8), (4, 16), (16, 48)), ((1, 4), (4, 8), (16, 16)), 5, 2, 16, 64)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def _int8_copy(fp32_dir: Path, plan: Plan) -> Path:
    """The int8 copy of an export, calibrated on synthetic training clips (cached per count)."""
    out = fp32_dir.with_name(f"{fp32_dir.name}-int8-c{plan.int8_calibration_clips}")
    if not (out / "model_meta.json").is_file():
        quantize_model(fp32_dir, out, calibration_list=SYNTHETIC / "train.list",
                       clips=plan.int8_calibration_clips, check_list=SYNTHETIC / "test.list",
                       check_clips=plan.int8_check_clips)
    return out


def run_models(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    clip = bench_clip(args.out / "clips", *SIZES[0], plan.clip_seconds)
    settings = PredictorSettings(cpu_threads=args.threads)
    timings = []
    for family in FAMILIES:
        model_dir = exported_family(family, args.out / "models")
        timings.append(time_model(model_dir, clip, model=family.model, backbone=family.backbone,
                                  settings=settings, runs=plan.runs, warmup=plan.warmup))
        print(f"  timed {family.folder_name}", file=sys.stderr, flush=True)
        if args.int8 and family in INT8_FAMILIES:
            timings.append(time_model(
                _int8_copy(model_dir, plan), clip, model=family.model, backbone=family.backbone,
                settings=PredictorSettings(cpu_threads=args.threads, precision="int8"),
                runs=plan.runs, warmup=plan.warmup))
    if args.trained is not None:
        timings.append(time_model(args.trained, clip, model=args.trained.name, backbone="trained",
                                  settings=settings, runs=plan.runs, warmup=plan.warmup))
    note = (f"Decoder auto, oneDNN on, {plan.warmup} warm-up and {plan.runs} timed runs per model. "
            f"Preprocessing = probe + decoding the sampled frames + resize/crop/normalise. "
            f"'random' weights: {WEIGHTS_NOTE} (timing does not depend on the values). "
            f"{load_average()}.")
    return model_table(timings, clip.label, note), timings


def _max_request_bytes(config: Path) -> int:
    limits = (yaml.safe_load(config.read_text()) or {}).get("request_limits") or {}
    return int(limits.get("max_bytes", 0))


def _serve_and_load(model_dir: Path, args: argparse.Namespace, precision: str,
                    bodies: list[tuple[RequestBody, tuple[tuple[int, int], ...]]]) -> list:
    """One service start (PPTSM_PRECISION=precision) and every body at each of its levels."""
    work = args.out / "serving"
    work.mkdir(parents=True, exist_ok=True)
    env = {"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work), "PPTSM_PRECISION": precision}
    results = []
    with ServiceProcess(model_dir, args.config, http_port=free_port(), rpc_port=free_port(),
                        log_path=work / f"service-{precision}.log", env=env) as service:
        url = f"http://127.0.0.1:{service.http_port}/pptsm/prediction"
        for body, levels in bodies:
            for concurrency, count in levels:
                results.append(run_level(url, body, concurrency=concurrency,
                                         requests_total=count, precision=precision))
                print(f"  served {body.kind} {body.clip} {precision} x{concurrency}",
                      file=sys.stderr, flush=True)
    return results


def run_serving(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    model_dir = args.serving_model or exported_family(FAMILIES[-1], args.out / "models")
    clips = [bench_clip(args.out / "clips", width, height, plan.clip_seconds)
             for width, height in SIZES]
    max_bytes = _max_request_bytes(args.config)
    videos, bodies, skipped = [], [], []
    for clip in clips:
        videos.append((video_body(clip.label, clip.read()), plan.video_levels))
        bodies.append(videos[-1])
        size = frames_size(clip.width, clip.height, clip.frames)
        if size * 3 // 4 <= max_bytes:
            bodies.append((frames_body(clip.label, clip.read()), plan.frames_levels))
        else:
            skipped.append(f"`frames` requests of the {clip.label} clip ({size / 1e6:.0f} MB) "
                           f"were not sent: the config's request_limits.max_bytes "
                           f"({max_bytes / 1e6:.0f} MB) refuses them.")
    results = _serve_and_load(model_dir, args, "fp32", bodies)
    int8_note = ""
    if args.int8:
        results += _serve_and_load(_int8_copy(model_dir, plan), args, "int8", videos)
        int8_note = (f"int8: the same model quantised by serving.quantize ("
                     f"{plan.int8_calibration_clips} calibration clips), `video` requests only. ")
    note = (f"Model {model_dir} served with {args.config}; one warm-up request per level. "
            + int8_note + " ".join(skipped) + " " + scaling_note(results)
            + f" {load_average()}.")
    return serving_table(results, note), results


def run_decoding(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    num_seg = FAMILIES[-1].frames
    timings = []
    for codec, (width, height) in itertools.product(CODECS, SIZES):
        clip = bench_clip(args.out / "clips", width, height, plan.clip_seconds, codec)
        for backend in BACKENDS:
            timings.append(decode_timing(clip, backend, num_seg=num_seg,
                                         sparse_repeats=plan.sparse_repeats,
                                         full_repeats=plan.full_repeats))
    note = (f"Sparse = probe + open + decode the {num_seg} uniformly sampled frames (PP-TSMv2 "
            f"16f); full = every frame, RGB. mp4v: MPEG-4 Part 2 (OpenCV), h264: libx264 with "
            f"B-frames; both a key frame every 12 frames, 25 fps. 'pyav, one decoder': PyAV "
            f"without its two-decoder split for frames of 640x360 and more. {load_average()}.")
    return decoding_table(timings, note), timings


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PP-TSM benchmarks: models, serving, decoding.")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2 s clips")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output" / "bench")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per predictor")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "pipeline_config" / "config.yml",
                        help="pipeline config the serving section starts the service with")
    parser.add_argument("--serving-model", type=Path,
                        help="model the serving section serves (default: PP-TSMv2 16f export)")
    parser.add_argument("--trained", type=Path, help="add a row for this trained model folder")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                        help="add int8 rows (R50 and PP-TSMv2 16f in-process, the served model) "
                        "(default: on, off with --quick)")
    args = parser.parse_args(argv)
    if args.int8 is None:
        args.int8 = not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = QUICK if args.quick else FULL
    runners = {"models": (run_models, plot_models), "serving": (run_serving, plot_serving),
               "decoding": (run_decoding, plot_decoding)}
    args.out.mkdir(parents=True, exist_ok=True)
    report = [f"## PP-TSM benchmark{' (quick)' if args.quick else ''}", "",
              f"Started with {load_average()}.", ""]
    for section in args.sections:
        run, plot = runners[section]
        print(f"running {section} ...", file=sys.stderr, flush=True)
        table, measured = run(plan, args)
        table.write_csv(args.out / f"{section}.csv")
        plot(measured, args.out / f"{section}.png")
        report.append(table.markdown())
    text = "\n".join(report)
    (args.out / "bench.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}: bench.md, "
          + ", ".join(f"{s}.csv, {s}.png" for s in args.sections), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
