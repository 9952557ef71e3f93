"""Re-measures the figures behind thresholds and switches in the code, whose comments keep only
the reason (docs/speed.md, "Measurements behind the code's choices", lists the figures):

    python -m bench.code_choices [--model-dir DIR] [--repeats N]

* resize pool (`transforms.PARALLEL_RESIZE_MIN_PIXELS`): 16 frames resized in the calling
  thread and on the shared pool, for frame sizes around the threshold;
* oneDNN exclusions (`predictor.ONEDNN_SLOW_OPS`), with `--model-dir` (e.g. a PP-TSMv2 16f
  export: `python -m bench.export_random pptsm_v2_lcnet 16 /tmp/v2_16f use_temporal_att=True`):
  median inference with the slow ops kept off oneDNN and with every op on oneDNN.

Medians (min-max) in ms after one warm-up run; the machine's load moves them, so compare the
two columns of one run.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from serving.core.metadata import load_meta
from serving.core.predictor import Predictor, PredictorSettings
from serving.core.preprocess import transforms
from serving.core.spread import Spread
from serving.core.timing import StageClock

# (input width, height) -> output (width, height): a training-size clip, the threshold's
# neighbourhood, and the service's 320x240 and 720p inputs scaled to 256 px.
RESIZES = (((128, 96), (64, 48)), ((160, 120), (171, 128)), ((240, 180), (171, 128)),
           ((320, 240), (341, 256)), ((1280, 720), (455, 256)))
FRAMES = 16


def _median_ms(work: Callable[[], object], repeats: int) -> Spread:
    work()  # warm-up: pools start, oneDNN compiles its kernels
    times = []
    for _ in range(repeats):
        clock = StageClock()
        work()
        times.append(clock.total_ms())
    return Spread.of(times)


def resize_rows(repeats: int) -> list[str]:
    """One line per size: calling thread vs shared pool."""
    rows = []
    threshold = transforms.PARALLEL_RESIZE_MIN_PIXELS
    rng = np.random.RandomState(0)
    try:
        for (width, height), size in RESIZES:
            frames = rng.randint(0, 255, (FRAMES, height, width, 3), dtype=np.uint8)
            timings = {}
            for name, limit in (("thread", sys.maxsize), ("pool", 0)):
                transforms.PARALLEL_RESIZE_MIN_PIXELS = limit
                timings[name] = _median_ms(lambda: transforms.resize_frames(frames, size), repeats)
            rows.append(f"resize {FRAMES} frames {width}x{height} -> {size[0]}x{size[1]}: "
                        f"calling thread {timings['thread']} ms, pool {timings['pool']} ms")
    finally:
        transforms.PARALLEL_RESIZE_MIN_PIXELS = threshold
    return rows


def onednn_rows(model_dir: Path, repeats: int) -> list[str]:
    """Inference with ONEDNN_SLOW_OPS kept on plain kernels, and with every op on oneDNN."""
    shape = load_meta(model_dir).inference.input_shape[1:]
    batch = np.random.RandomState(0).standard_normal((1, *shape)).astype("float32")
    timings = {}
    for name, excluded in (("slow ops excluded", PredictorSettings.onednn_excluded_ops),
                           ("every op on oneDNN", ())):
        predictor = Predictor.from_model_dir(model_dir,
                                             PredictorSettings(onednn_excluded_ops=excluded))
        timings[name] = _median_ms(lambda: predictor.predict(batch), repeats)
    return [f"inference {model_dir.name}: " + ", ".join(f"{k} {v} ms" for k, v in timings.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="exported model for the oneDNN rows")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    rows = resize_rows(args.repeats)
    if args.model_dir:
        rows += onednn_rows(args.model_dir, args.repeats)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
