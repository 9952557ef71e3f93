"""The model-family latency table: every PP-TSM / PP-TSMv2 family at 224 px on one clip, with
each inference engine (Paddle Inference, and OpenVINO where installed).

Each family is exported once (random weights, see export_random.py) and cached under the
benchmark's output folder; timing goes through `serving.tools.predict.benchmark`, i.e. the service's
own decode, preprocessing and predictor code.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from serving.core.engines.base import ENGINES
from serving.core.engines.openvino import unavailable_reason
from serving.core.metadata import load_meta
from serving.tools.offline import OfflinePredictor
from serving.tools.predict import benchmark
from serving.core.predictor import PredictorSettings
from serving.core.spread import Spread
from bench.clips import BenchClip


@dataclass(frozen=True)
class Family:
    model: str
    backbone: str
    arch: str
    frames: int
    kwargs: dict[str, object] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        return f"{self.arch}_{self.frames}f"


FAMILIES = (
    Family("PP-TSM", "ResNet50-vd", "pptsm_resnet50", 8),
    Family("PP-TSM", "ResNet101-vd", "pptsm_resnet101", 8),
    Family("PP-TSM", "MobileNetV2", "pptsm_mobilenet_v2", 8),
    Family("PP-TSM", "MobileNetV3-large", "pptsm_mobilenet_v3_large", 8),
    Family("PP-TSMv2", "PP-LCNetV2", "pptsm_v2_lcnet", 8),
    Family("PP-TSMv2", "PP-LCNetV2 + LTA", "pptsm_v2_lcnet", 16, {"use_temporal_att": True}),
)


@dataclass(frozen=True)
class ModelTiming:
    model: str
    backbone: str
    frames: int
    input_px: int
    weights: str
    engine: str
    precision: str
    threads: int
    preprocess_ms: Spread
    inference_ms: Spread
    total_ms: Spread


def bench_engines() -> tuple[tuple[str, ...], str]:
    """The engines this environment can time, and a sentence naming one it cannot."""
    reason = unavailable_reason()
    if reason:
        return ("paddle",), f"OpenVINO not measured: {reason}. "
    return ENGINES, ""


def exported_family(family: Family, models_dir: Path) -> Path:
    """The family's export folder, exporting it in a child process on first use."""
    out = models_dir / family.folder_name
    if (out / "model_meta.json").is_file():
        return out
    models_dir.mkdir(parents=True, exist_ok=True)
    repo_root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bench.export_random", family.arch, str(family.frames),
               str(out), *(f"{key}={value!r}" for key, value in family.kwargs.items())]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    done = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"export of {family.folder_name} failed:\n{done.stderr[-3000:]}")
    return out


def export_families(families: Sequence[Family], models_dir: Path, workers: int = 2) -> list[Path]:
    """Every family's export folder, the missing ones exported `workers` at a time: an export is
    mostly one core's work, so on 2 cores two side by side take about half as long (a cold
    `make bench QUICK=1` spends most of its first minute here)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda family: exported_family(family, models_dir), families))


def time_model(model_dir: Path, clip: BenchClip, *, model: str, backbone: str,
               settings: PredictorSettings, runs: int, warmup: int) -> ModelTiming:
    meta = load_meta(model_dir)
    predictor = OfflinePredictor(model_dir, settings)
    spreads = benchmark(predictor, clip.read(), runs=runs, warmup=warmup)
    weights = "random" if "weights" in meta.source else "trained"  # see export_random.py
    ran = predictor.predictor.settings  # engine and precision as run (after any `auto`)
    return ModelTiming(model, backbone, meta.preprocess.num_seg, meta.preprocess.crop_size,
                       weights, ran.engine, ran.precision, settings.cpu_threads,
                       spreads["preprocess_ms"], spreads["inference_ms"], spreads["total_ms"])
