"""Exports one model family with random weights for timing: `python -m bench.export_random
ARCH NUM_SEG OUT_DIR [key=value ...]` (one process per model: some families cannot be built
twice in one process, and each export frees its memory when the process ends).

Weights come from a fixed seed and the batch norms are calibrated on one random clip, so the
logits depend on the input (with raw random weights they are nearly constant, which would make
precision comparisons meaningless). Timings do not depend on the weights' values.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import paddle

from serving.core.metadata import PreprocessSpec
from tests.conftest import calibrate_batch_norm_
from train.export import export_model
from train.models import build_model

NUM_CLASSES = 400  # Kinetics-400, the size of the published models' heads
WEIGHTS_NOTE = "random (seed 0), batch norms calibrated on one random clip"


def export_random(arch: str, num_seg: int, out_dir: Path, **model_kwargs: object) -> None:
    paddle.seed(0)
    model = build_model(arch, num_classes=NUM_CLASSES, num_seg=num_seg, **model_kwargs)
    spec = PreprocessSpec(num_seg=num_seg)
    clip = np.random.RandomState(0).standard_normal(
        (1, num_seg, 3, spec.crop_size, spec.crop_size)).astype("float32")
    calibrate_batch_norm_(model, paddle.to_tensor(clip))
    model.eval()
    export_model(model, out_dir, name=out_dir.name, version="bench-random",
                 labels=[f"class_{i:03d}" for i in range(NUM_CLASSES)], preprocess=spec,
                 architecture=arch, source={"weights": WEIGHTS_NOTE, "model_kwargs": model_kwargs})


def main(argv: list[str]) -> int:
    arch, num_seg, out_dir, *pairs = argv
    kwargs = {key: ast.literal_eval(value) for key, value in (p.split("=", 1) for p in pairs)}
    export_random(arch, int(num_seg), Path(out_dir), **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
