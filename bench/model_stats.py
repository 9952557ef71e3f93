"""Figures per model family: parameters, FLOPs, export time, single-clip CPU latency (and ONNX).

    python -m bench.model_stats [--out output/bench] [--threads 2] [--runs 5] [--onnx]

For each family of `bench.model_zoo.FAMILIES` (Kinetics-400 heads, 224 px, its default
frame count):

* parameters: trainable scalars (BN running statistics excluded, as papers count);
* FLOPs: multiply-accumulates of every convolution and fully connected layer on one clip of the
  fused inference network, the convention behind published video-model "FLOPs" (the TSM paper's
  33 G for TSM ResNet-50 8 frames); element-wise ops are left out;
* export time: what `train.export` recorded when the family was exported (shared cache with
  `bench.run_bench`, random weights with calibrated BN);
* latency: Paddle Inference `predict` on one preprocessed clip [1, T, 3, 224, 224], oneDNN,
  `--threads` CPU threads, median (min-max) of `--runs` after 2 warm-up runs; network only,
  decoding and preprocessing excluded (run_bench times those); the same with OpenVINO (fp32,
  latency hint, same threads) where it is installed;
* with `--onnx` and the ONNX tools installed: `model.onnx` written by `train.onnx_export`, its
  parity with Paddle Inference and its ONNX Runtime latency with the same thread count.

Prints a Markdown table and writes it with a CSV to --out (model_stats.md, model_stats.csv).
Slow on 2 cores (ResNet-101 dominates): the first run exports every family (~1 min each).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import paddle
import paddle.nn as nn

from serving.core.metadata import load_meta
from serving.core.predictor import Predictor, PredictorSettings
from serving.core.spread import Spread
from bench.decoding import _timed_ms
from bench.model_zoo import FAMILIES, Family, bench_engines, exported_family
from bench.report import Table
from train.models import build_model
from train.models.layers import fuse_reparam_

NUM_CLASSES = 400
CROP = 224
WARMUP_RUNS = 2
# Published figures to compare with. FLOPs: TSM paper (Lin et al., ICCV 2019), TSM ResNet-50,
# 8 frames, 224 px. CPU ms: PaddleVideo's model-zoo table (Xeon Gold 6148, "model inference
# time" per video, its own thread settings), for the released checkpoints of these families.
PUBLISHED_GFLOPS = {("pptsm_resnet50", 8): 33.0}
PUBLISHED_CPU_MS = {("pptsm_mobilenet_v2", 8): 137.0, ("pptsm_mobilenet_v3_large", 8): 139.1,
                    ("pptsm_v2_lcnet", 8): 189.6, ("pptsm_v2_lcnet", 16): 388.6,
                    ("pptsm_resnet50", 8): 1354.2, ("pptsm_resnet101", 8): 2236.9}


@dataclass(frozen=True)
class ModelStats:
    family: Family
    params_m: float
    gflops: float
    export_s: float
    paddle_ms: Spread
    openvino_ms: Optional[Spread] = None
    onnx_diff: Optional[float] = None
    onnx_ms: Optional[Spread] = None


def count_parameters(model: nn.Layer) -> int:
    """Trainable scalars (BN running statistics are non-trainable parameters in Paddle)."""
    return sum(int(np.prod(p.shape)) for p in model.parameters() if p.trainable)


def count_macs(model: nn.Layer, clip: paddle.Tensor) -> int:
    """Multiply-accumulates of all Conv2D and Linear layers for one forward pass of `clip`."""
    total = [0]

    def conv(layer: nn.Conv2D, inputs: tuple, output: paddle.Tensor) -> None:
        kernel = int(np.prod(layer.weight.shape[1:]))  # in/groups * kh * kw
        total[0] += int(np.prod(output.shape)) * kernel

    def linear(layer: nn.Linear, inputs: tuple, output: paddle.Tensor) -> None:
        total[0] += int(np.prod(output.shape)) * int(layer.weight.shape[0])

    counters: dict[type, Callable] = {nn.Conv2D: conv, nn.Linear: linear}
    hooks = [layer.register_forward_post_hook(counters[type(layer)])
             for layer in model.sublayers() if type(layer) in counters]
    try:
        with paddle.no_grad():
            model(clip)
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]


def network_figures(family: Family) -> tuple[float, float]:
    """(parameters in millions, GFLOPs as multiply-accumulates) of the fused inference net."""
    paddle.seed(0)
    model = build_model(family.arch, num_classes=NUM_CLASSES, num_seg=family.frames,
                        **family.kwargs)
    params = count_parameters(model)
    model.eval()
    fuse_reparam_(model)
    clip = paddle.zeros([1, family.frames, 3, CROP, CROP], dtype="float32")
    return params / 1e6, count_macs(model, clip) / 1e9


def time_runs(run: Callable[[], object], runs: int) -> Spread:
    """Median (min-max) ms of `runs` calls after WARMUP_RUNS untimed ones (oneDNN compiles its
    kernels on the first calls)."""
    for _ in range(WARMUP_RUNS):
        run()
    return _timed_ms(run, runs)


def onnx_figures(model_dir: Path, clip: np.ndarray, threads: int,
                 runs: int) -> tuple[float, Spread]:
    """(ONNX Runtime vs Paddle Inference max abs diff, ONNX Runtime latency)."""
    from train.onnx_export import ONNX_FILENAME, export_onnx, onnx_session

    meta = load_meta(model_dir)
    if "onnx_parity_max_abs_diff" not in meta.evaluation:
        meta = export_onnx(model_dir)
    session = onnx_session(model_dir / ONNX_FILENAME, threads)
    feed = {session.get_inputs()[0].name: clip}
    return meta.evaluation["onnx_parity_max_abs_diff"], time_runs(
        lambda: session.run(None, feed), runs)


def measure(family: Family, models_dir: Path, threads: int, runs: int,
            with_onnx: bool) -> ModelStats:
    params_m, gflops = network_figures(family)
    model_dir = exported_family(family, models_dir)
    export_s = float(load_meta(model_dir).evaluation["export_seconds"])
    clip = np.random.RandomState(0).standard_normal(
        (1, family.frames, 3, CROP, CROP)).astype("float32")
    engine_ms = {}
    for engine in bench_engines()[0]:
        predictor = Predictor.from_model_dir(model_dir, PredictorSettings(engine=engine,
                                                                          cpu_threads=threads))
        engine_ms[engine] = time_runs(lambda: predictor.predict(clip), runs)
    stats = ModelStats(family, params_m, gflops, export_s, engine_ms["paddle"],
                       engine_ms.get("openvino"))
    if not with_onnx:
        return stats
    diff, onnx_ms = onnx_figures(model_dir, clip, threads, runs)
    return dataclasses.replace(stats, onnx_diff=diff, onnx_ms=onnx_ms)


def stats_table(stats: list[ModelStats], threads: int, with_onnx: bool) -> Table:
    def published(table: dict[tuple[str, int], float], family: Family) -> str:
        value = table.get((family.arch, family.frames))
        return "-" if value is None else f"{value:g}"

    headers = ("model", "backbone", "frames", "params M", "GFLOPs", "published GFLOPs",
               "export s", "Paddle Inference ms", "OpenVINO ms", "published CPU ms")
    rows = [(s.family.model, s.family.backbone, s.family.frames, f"{s.params_m:.2f}",
             f"{s.gflops:.2f}", published(PUBLISHED_GFLOPS, s.family), f"{s.export_s:.1f}",
             s.paddle_ms, s.openvino_ms or "-", published(PUBLISHED_CPU_MS, s.family))
            for s in stats]
    if with_onnx:
        headers += ("ONNX max abs diff", "ONNX Runtime ms")
        rows = [row + (f"{s.onnx_diff:.1e}", s.onnx_ms) for row, s in zip(rows, stats)]
    note = (f"224 px, Kinetics-400 heads, one clip, {threads} CPU threads, fp32, oneDNN on "
            f"(Paddle Inference), latency hint (OpenVINO). {bench_engines()[1]}Load average "
            f"{os.getloadavg()[0]:.1f}. GFLOPs = conv + fc "
            "multiply-accumulates of the fused network. Published CPU ms: PaddleVideo's table, "
            "another CPU and thread count: compare ratios, not absolute values.")
    return Table("PP-TSM model families: size, compute, export and latency", headers, rows, note)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Parameters, FLOPs, export time and latency.")
    parser.add_argument("--out", type=Path, default=Path("output/bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs after 2 warm-up runs")
    parser.add_argument("--onnx", action="store_true",
                        help="also export model.onnx and time ONNX Runtime (needs the ONNX tools)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with_onnx = args.onnx and all(importlib.util.find_spec(name)
                                  for name in ("paddle2onnx", "onnx", "onnxruntime"))
    if args.onnx and not with_onnx:
        print("ONNX tools not installed (pip install -r requirements/onnx.txt); skipping ONNX",
              file=sys.stderr)
    stats = []
    for family in FAMILIES:
        print(f"measuring {family.folder_name} ...", file=sys.stderr, flush=True)
        stats.append(measure(family, args.out / "models", args.threads, args.runs, with_onnx))
    table = stats_table(stats, args.threads, with_onnx)
    text = table.markdown()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_stats.md").write_text(text, encoding="utf-8")
    table.write_csv(args.out / "model_stats.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
