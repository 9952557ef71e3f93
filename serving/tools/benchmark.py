"""Timing one video's classification in-process: `python -m serving.tools.predict --benchmark N`.

Each video is classified W times to warm up (oneDNN compiles its kernels on the first run) and N
times measured; preprocessing (probe + sampled decode + resize/crop/normalise), inference and
total milliseconds come out as median (min-max). The benchmarks (bench/model_zoo.py) time models
through `benchmark` too, so their figures are the service's stage costs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from serving.core.spread import Spread
from serving.tools.offline import OfflinePredictor, Prediction

BENCHMARK_COLUMNS = ("preprocess_ms", "inference_ms", "total_ms")


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


def print_benchmark_table(predictor: OfflinePredictor, videos: Sequence[tuple[str, Path]], *,
                          runs: int, warmup: int, topk: int | None = None,
                          mode: str | None = None) -> None:
    """One row per (name, path): the spreads of BENCHMARK_COLUMNS, under a line of settings."""
    print(f"\nbenchmark: median (min-max) of {runs} runs after {warmup} "
          f"warm-up runs; {settings_line(predictor)}")
    width = max(len(name) for name, _ in videos)
    print(f"{'video':<{width}}  " + "  ".join(f"{c:>24}" for c in BENCHMARK_COLUMNS))
    for name, path in videos:
        timings = benchmark(predictor, path.read_bytes(), runs=runs, warmup=warmup, topk=topk,
                            mode=mode)
        print(f"{name:<{width}}  " + "  ".join(f"{str(timings[c]):>24}"
                                               for c in BENCHMARK_COLUMNS), flush=True)
