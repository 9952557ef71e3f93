"""The benchmark behind `make bench`: model-family latency, lower precisions against fp32,
serving load, decoding.

    python -m bench.run_bench [--quick]
        [--sections models precision serving decoding hostile uploads timeline batch preprocess
                    peer]
        [--out output/bench] [--threads 2] [--config pipeline_config/config.yml]
        [--serving-model DIR] [--trained DIR ...] [--precisions bf16 int8] [--peer PATH]

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
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.tools.launcher import ServiceProcess, free_port
from serving.tools.precision_check import compare_precision
from serving.core.metadata import load_meta
from serving.core.predictor import PredictorSettings
from serving.tools.quantize import QuantizeError, quantize_model, quantize_openvino
from bench.clips import CODECS, SIZES, bench_clip
from bench.decoding import BACKENDS, decode_timing
from bench.export_random import WEIGHTS_NOTE
from bench.hostile_load import serve_and_run
from bench.model_zoo import FAMILIES, bench_engines, export_families, exported_family, time_model
from bench.report import (
    Table,
    decoding_table,
    hostile_table,
    model_table,
    plot_decoding,
    plot_hostile,
    plot_models,
    plot_precision,
    plot_serving,
    precision_table,
    scaling_note,
    serving_table,
)
from bench.upload_forms import plot_uploads, time_forms, upload_forms, uploads_table
from bench.timeline import plot_timeline, run_timeline
from bench.batch_predict import plot_batch, run_batch_bench
from bench.peer_paddlevideo import (
    PeerUnavailable,
    peer_rows,
    peer_table,
    plot_peer,
    time_ours,
    time_peer,
)
from bench.preprocess_steps import NOTE as STEPS_NOTE, plot_steps, steps_table
from bench.preprocess_steps import run as run_steps
from bench.serving_load import (
    RequestBody,
    frames_body,
    frames_size,
    run_level,
    video_body,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("models", "precision", "serving", "decoding", "hostile", "uploads",
            "timeline", "batch", "preprocess")
# Run only when asked: PaddleVideo's predictor beside ours (--peer PATH).
OPTIONAL_SECTIONS = ("peer",)
SYNTHETIC = REPO_ROOT / "data" / "synthetic"
# Trained models measured when they exist: what `make demo` exports, and the R50 of
# train/configs/demo/pptsm_r50_synthetic.yaml (docs/speed.md).
TRAINED_MODELS = (REPO_ROOT / "model_repo" / "pptsm", REPO_ROOT / "model_repo" / "pptsm-r50")
LOW_PRECISIONS = ("bf16", "int8")
# Families also timed in bf16 / int8: the heaviest (the 2x target) and the one the serving
# section serves.
LOW_PRECISION_FAMILIES = (FAMILIES[0], FAMILIES[-1])


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
    precision_check_clips: int  # synthetic test clips each lower precision is compared on
    precisions: tuple[str, ...]  # lower precisions measured by default
    hostile_requests: int  # honest requests of each run of the hostile section


QUICK = Plan(2.0, 1, 3, ((1, 2), (4, 4), (16, 16)), ((1, 1), (4, 4), (16, 16)), 3, 1, 4, 8,
             ("bf16",), 48)
FULL = Plan(10.0, 2, 7, ((1, 8), (4, 16), (16, 48)), ((1, 4), (4, 8), (16, 16)), 5, 2, 16, 64,
            LOW_PRECISIONS, 160)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def supported_precisions(asked: list[str]) -> tuple[list[str], str]:
    """The asked lower precisions this CPU runs, and a sentence naming any it cannot."""
    import paddle

    if "bf16" in asked and not paddle.base.core.supports_bfloat16():
        return [p for p in asked if p != "bf16"], (
            "bf16 not measured: this CPU has no AVX512-BF16 / AMX (Paddle's supports_bfloat16() "
            "is False). ")
    return asked, ""


def _openvino_int8(fp32_dir: Path, plan: Plan, args: argparse.Namespace) -> Path:
    """A folder holding `fp32_dir`'s program and its OpenVINO int8 IR: `fp32_dir` itself where
    `make quantize ENGINE=openvino` made one, else a copy quantised here (NNCF, calibrated on
    synthetic training clips, checked on the validation split) and cached; raises QuantizeError
    where the int8 model disagrees with fp32 too often to be published."""
    if load_meta(fp32_dir).top1_agreement("openvino", "int8") is not None:
        return fp32_dir
    out = args.out / "models" / f"{fp32_dir.name}-openvino-c{plan.int8_calibration_clips}"
    cached = (out / "model_meta.json").is_file() and \
        load_meta(out).top1_agreement("openvino", "int8") is not None
    if not cached:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(fp32_dir, out)
        quantize_openvino(out, calibration_list=SYNTHETIC / "train.list",
                          check_list=SYNTHETIC / "val.list",
                          clips=plan.int8_calibration_clips,
                          check_clips=plan.precision_check_clips)
    return out


def _model_for(fp32_dir: Path, precision: str, plan: Plan, args: argparse.Namespace) -> Path:
    """The folder that runs `precision`: the export itself for fp32 and bf16, else its int8
    copy, calibrated on synthetic training clips and cached per calibration count."""
    if precision != "int8":
        return fp32_dir
    out = args.out / "models" / f"{fp32_dir.name}-int8-c{plan.int8_calibration_clips}"
    if not (out / "model_meta.json").is_file():
        quantize_model(fp32_dir, out, calibration_list=SYNTHETIC / "train.list",
                       clips=plan.int8_calibration_clips)
    return out


def run_models(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    clip = bench_clip(args.out / "clips", *SIZES[0], plan.clip_seconds)
    engines, engine_note = bench_engines()
    timings = []
    left_out = []
    for family, model_dir in zip(FAMILIES, export_families(FAMILIES, args.out / "models")):
        for engine in engines:
            timings.append(time_model(
                model_dir, clip, model=family.model, backbone=family.backbone,
                settings=PredictorSettings(engine=engine, cpu_threads=args.threads),
                runs=plan.runs, warmup=plan.warmup))
        print(f"  timed {family.folder_name}", file=sys.stderr, flush=True)
        if family not in LOW_PRECISION_FAMILIES:
            continue
        for precision in args.precisions:
            timings.append(time_model(
                _model_for(model_dir, precision, plan, args), clip, model=family.model,
                backbone=family.backbone,
                settings=PredictorSettings(cpu_threads=args.threads, precision=precision),
                runs=plan.runs, warmup=plan.warmup))
        if "openvino" in engines:
            try:
                timings.append(time_model(
                    _openvino_int8(model_dir, plan, args), clip, model=family.model,
                    backbone=family.backbone, settings=PredictorSettings(
                        engine="openvino", cpu_threads=args.threads, precision="int8"),
                    runs=plan.runs, warmup=plan.warmup))
            except QuantizeError as exc:
                left_out.append(f"OpenVINO int8 of {family.folder_name} not published: {exc}. ")
    for trained, engine in itertools.product(args.trained, engines):
        timings.append(time_model(trained, clip, model=trained.name, backbone="trained",
                                  settings=PredictorSettings(engine=engine,
                                                             cpu_threads=args.threads),
                                  runs=plan.runs, warmup=plan.warmup))
    note = (f"Decoder auto, oneDNN on (paddle), OpenVINO's CPU plugin with the latency hint "
            f"(openvino), {plan.warmup} warm-up and {plan.runs} timed runs per model. "
            f"Preprocessing = probe + decoding the sampled frames + resize/crop/normalise. "
            f"'random' weights: {WEIGHTS_NOTE} (timing does not depend on the values). "
            f"openvino int8: NNCF on {plan.int8_calibration_clips} training clips "
            f"(serving.tools.quantize --engine openvino). {engine_note}{''.join(left_out)}"
            f"{args.precision_note}{load_average()}.")
    return model_table(timings, clip.label, note), timings


def run_precision(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    """Each lower precision against fp32 on the synthetic test split, for the families timed
    in it and the trained models (the ones whose agreement and accuracy mean something)."""
    models = [(f"{f.model} {f.backbone} {f.frames}f", "random",
               exported_family(f, args.out / "models")) for f in LOW_PRECISION_FAMILIES]
    models += [(trained.name, "trained", trained) for trained in args.trained]
    rows = []
    for (label, weights, model_dir), precision in itertools.product(models, args.precisions):
        agreement = compare_precision(
            model_dir, precision, SYNTHETIC / "test.list", count=plan.precision_check_clips,
            candidate_dir=_model_for(model_dir, precision, plan, args), threads=args.threads)
        rows.append((label, weights, "paddle", precision, agreement))
        print(f"  compared {label} {precision}", file=sys.stderr, flush=True)
    engines, engine_note = bench_engines()
    for label, weights, model_dir in models if "openvino" in engines else ():
        try:
            int8_dir = _openvino_int8(model_dir, plan, args)
        except QuantizeError as exc:
            engine_note += f"OpenVINO int8 of {label} not published: {exc}. "
            continue
        rows.append((label, weights, "openvino", "int8", compare_precision(
            model_dir, "int8", SYNTHETIC / "test.list", count=plan.precision_check_clips,
            candidate_dir=int8_dir, threads=args.threads, engine="openvino")))
        print(f"  compared {label} openvino int8", file=sys.stderr, flush=True)
    note = (f"Each lower precision against fp32 on {plan.precision_check_clips} clips of the "
            f"synthetic test split (uniform sampling, batch of one clip, {args.threads} threads; "
            f"inference ms are medians over those clips at each model's input size). "
            + (f"int8: quantised by serving.tools.quantize on {plan.int8_calibration_clips} training "
               f"clips. " if "int8" in args.precisions else "")
            + f"Random-weight models have no accuracy to report, large logits (hence large "
            f"logit differences) and few different top-1 classes (with one, agreement is 100% "
            f"whatever the precision does). Trained: "
            f"{', '.join(str(t) for t in args.trained) or 'none found (run make demo)'}. "
            f"openvino int8: NNCF with accuracy control on {plan.int8_calibration_clips} training "
            f"clips, against OpenVINO fp32 (the model's own recorded int8 where `make quantize "
            f"ENGINE=openvino` made one). {engine_note}"
            f"{args.precision_note}{load_average()}.")
    return precision_table(rows, note), rows


def _max_request_bytes(config: Path) -> int:
    limits = (yaml.safe_load(config.read_text()) or {}).get("request_limits") or {}
    return int(limits.get("max_bytes", 0))


def _serve_and_load(model_dir: Path, args: argparse.Namespace, precision: str,
                    bodies: list[tuple[RequestBody, tuple[tuple[int, int], ...]]]) -> list:
    """One service start (PPTSM_PRECISION=precision) and every body at each of its levels."""
    work = args.out / "serving"
    work.mkdir(parents=True, exist_ok=True)
    env = {"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work),
           **({} if precision == "auto" else {"PPTSM_PRECISION": precision})}
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


def _engine_choice(service_log: Path) -> str:
    """The service's start-up line saying which engine and precision it chose."""
    text = service_log.read_text(encoding="utf-8", errors="replace") if service_log.is_file() \
        else ""
    return next((line.strip() for line in text.splitlines()
                 if line.startswith("inference engine ")), "not logged")


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
    # The config as it is (engine and precision auto where it says so), then each lower precision.
    results = _serve_and_load(model_dir, args, "auto", bodies)
    for precision in args.precisions:
        results += _serve_and_load(_model_for(model_dir, precision, plan, args), args,
                                   precision, videos)
    low_note = (f"{' and '.join(args.precisions)}: `video` requests only. "
                if args.precisions else "")
    if "int8" in args.precisions:
        low_note += (f"int8: the same model quantised by serving.tools.quantize on "
                     f"{plan.int8_calibration_clips} clips. ")
    note = (f"Model {model_dir} served with {args.config}; one warm-up request per level. "
            f"'auto': the config's own engine and precision; its choice at start-up: "
            f"{_engine_choice(args.out / 'serving' / 'service-auto.log')}. "
            + low_note + args.precision_note + " ".join(skipped) + " " + scaling_note(results)
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


def run_hostile(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    """16 honest clients alone, then beside 4 hostile ones (bench/hostile_load.py)."""
    model_dir = args.serving_model or exported_family(FAMILIES[-1], args.out / "models")
    honest = [bench_clip(args.out / "clips", *SIZES[0], plan.clip_seconds, codec).read()
              for codec in CODECS]
    result = serve_and_run(model_dir, args.config, honest, args.out / "hostile",
                           concurrency=16, total=plan.hostile_requests, hostile=4)
    sent = ", ".join(f"{name} {count}" for name, count in sorted(result.hostile_sent.items()))
    note = (f"Model {model_dir} served with {args.config}; honest requests: the "
            f"{SIZES[0][0]}x{SIZES[0][1]} {plan.clip_seconds:g} s clips ({', '.join(CODECS)}), "
            f"{plan.hostile_requests} per run at concurrency 16, every answer compared with the "
            f"clip's reference answer. Hostile requests sent meanwhile: {sent}. "
            f"{load_average()}.")
    return hostile_table(result, note), [result]


def run_uploads(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    """REST p50 of each request form (bench/upload_forms.py) at both clip sizes."""
    model_dir = args.serving_model or exported_family(FAMILIES[-1], args.out / "models")
    rounds = 2 * plan.runs
    work = args.out / "uploads"
    work.mkdir(parents=True, exist_ok=True)
    timings = []
    with ServiceProcess(model_dir, args.config, http_port=free_port(), rpc_port=free_port(),
                        log_path=work / "service.log",
                        env={"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work)}) as service:
        url = f"http://127.0.0.1:{service.http_port}/pptsm/prediction"
        for width, height in SIZES:
            clip = bench_clip(args.out / "clips", width, height, plan.clip_seconds)
            timings += time_forms(url, upload_forms(clip.label, clip.read()), rounds=rounds)
            print(f"  timed the upload forms of {clip.label}", file=sys.stderr, flush=True)
    note = (f"Model {model_dir} served with {args.config}; one request at a time, the three "
            f"forms taking turns, {rounds} of each after one warm-up round. The JSON row pays "
            f"for base64 (a third more bytes) and JSON on both sides; the others send the file "
            f"as it is. {load_average()}.")
    return uploads_table(timings, note), timings


def run_preprocess(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    """Each preprocessing step alone, then the stages as served (bench/preprocess_steps.py)."""
    timings = run_steps(args.out / "clips", plan.clip_seconds, plan.sparse_repeats)
    return steps_table(timings, f"{STEPS_NOTE} {load_average()}."), timings


def run_peer(plan: Plan, args: argparse.Namespace) -> tuple[Table, list]:
    """PaddleVideo's own predictor against this service's REST p50 (bench/peer_paddlevideo.py);
    a table without rows whose note says why when it cannot run."""
    model_dir = args.serving_model or exported_family(FAMILIES[-1], args.out / "models")
    clips = [bench_clip(args.out / "clips", width, height, plan.clip_seconds)
             for width, height in SIZES]
    try:
        if args.peer is None:
            raise PeerUnavailable("no PaddleVideo checkout given (--peer PATH)")
        peer = time_peer(args.peer, model_dir, clips, venv_dir=REPO_ROOT / "output" / "peer-venv",
                         threads=args.threads, warmup=plan.warmup, runs=plan.runs)
        ours = time_ours(model_dir, args.config, clips, work=args.out / "peer", runs=plan.runs)
    except PeerUnavailable as exc:
        return peer_table([], f"PaddleVideo's predictor not measured: {exc}."), []
    rows = peer_rows(peer, ours)
    note = (f"Model {model_dir}. PaddleVideo ({args.peer}): tools/predict.py's path in-process "
            f"(decord, Pillow, oneDNN fp32, {args.threads} threads), medians of {plan.runs} runs "
            f"after {plan.warmup} warm-up; preprocessing + inference + postprocessing per clip. "
            f"Ours: REST end to end at concurrency 1 with {args.config} as it is, "
            f"{plan.runs} requests after one warm-up. {load_average()}.")
    return peer_table(rows, note), rows


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PP-TSM benchmarks: models, precision, serving, decoding.")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2 s clips")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS + OPTIONAL_SECTIONS,
                        default=list(SECTIONS))
    parser.add_argument("--peer", type=Path, metavar="PATH",
                        help="a PaddleVideo checkout: adds the peer section (its own predictor "
                        "beside this service, in a side venv in output/peer-venv/)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output" / "bench")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per predictor")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "pipeline_config" / "config.yml",
                        help="pipeline config the serving section starts the service with")
    parser.add_argument("--serving-model", type=Path,
                        help="model the serving section serves (default: PP-TSMv2 16f export)")
    parser.add_argument("--trained", type=Path, action="append",
                        help="trained model folder: a row in the models section, compared in "
                        "the precision section; repeatable (default: those of "
                        + ", ".join(str(t.relative_to(REPO_ROOT)) for t in TRAINED_MODELS)
                        + " that exist)")
    parser.add_argument("--precisions", nargs="*", choices=LOW_PRECISIONS,
                        help="lower precisions measured beside fp32: rows for R50 and PP-TSMv2 "
                        "16f in-process, the precision section, a serving pass each (default: "
                        "bf16 int8; bf16 only with --quick; bf16 is skipped on CPUs without it)")
    args = parser.parse_args(argv)
    asked = args.precisions if args.precisions is not None else \
        list((QUICK if args.quick else FULL).precisions)
    args.precisions, args.precision_note = supported_precisions(asked)
    if args.trained is None:
        args.trained = [t for t in TRAINED_MODELS if (t / "model_meta.json").is_file()]
    if args.peer is not None and "peer" not in args.sections:
        args.sections.append("peer")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = QUICK if args.quick else FULL
    runners = {"models": (run_models, plot_models), "precision": (run_precision, plot_precision),
               "serving": (run_serving, plot_serving), "decoding": (run_decoding, plot_decoding),
               "hostile": (run_hostile, plot_hostile), "uploads": (run_uploads, plot_uploads),
               "timeline": (lambda plan, args: run_timeline(plan is QUICK, args, load_average()),
                            plot_timeline),
               "batch": (lambda plan, args: run_batch_bench(plan is QUICK, args, load_average()),
                         plot_batch),
               "preprocess": (run_preprocess, plot_steps), "peer": (run_peer, plot_peer)}
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
