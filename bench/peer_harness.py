"""Times PaddleVideo's own predictor on video files; run by bench/peer_paddlevideo.py with the
side virtualenv's interpreter, so it imports nothing of this project (only PaddleVideo, Paddle
and the standard library).

    python bench/peer_harness.py PADDLEVIDEO CONFIG MODEL_FILE PARAMS_FILE THREADS WARMUP RUNS
        CLIP [CLIP ...]

It goes the way PaddleVideo's `tools/predict.py` goes for a recognition model: the config's
INFERENCE helper (`build_inference_helper`; for PP-TSM `ppTSM_Inference_helper`: decord, Sampler,
Scale, CenterCrop, Image2Array, Normalization), the predictor from predict.py's own
`create_paddle_predictor` with CPU, oneDNN, `THREADS` math threads and fp32, then `copy_from_cpu`,
`run`, `copy_to_cpu` and the helper's `postprocess`, one clip per batch. Prints one JSON line per
clip: the medians and ranges of preprocessing, inference and their total (ms), and the top-1 class.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("paddlevideo", "config", "model_file", "params_file"):
        parser.add_argument(name)
    for name in ("threads", "warmup", "runs"):
        parser.add_argument(name, type=int)
    parser.add_argument("clips", nargs="+")
    args = parser.parse_args()
    root = Path(args.paddlevideo).resolve()
    sys.path[:0] = [str(root / "tools"), str(root)]  # what running tools/predict.py sets up
    from paddlevideo.utils import get_config  # noqa: PLC0415 - found on the path set above
    from predict import create_paddle_predictor  # noqa: PLC0415
    from utils import build_inference_helper  # noqa: PLC0415

    cfg = get_config(args.config, overrides=[], show=False)
    helper = build_inference_helper(cfg.INFERENCE)
    options = argparse.Namespace(  # predict.py's command line for a CPU fp32 oneDNN run
        model_file=args.model_file, params_file=args.params_file, use_gpu=False, use_xpu=False,
        use_npu=False, precision="fp32", ir_optim=True, use_tensorrt=False, gpu_mem=8000,
        enable_mkldnn=True, cpu_threads=args.threads, disable_glog=True, batch_size=1)
    _, predictor = create_paddle_predictor(options, cfg)
    inputs = [predictor.get_input_handle(name) for name in predictor.get_input_names()]
    outputs = [predictor.get_output_handle(name) for name in predictor.get_output_names()]

    for clip in args.clips:
        times: dict[str, list[float]] = {"preprocess_ms": [], "inference_ms": [], "total_ms": []}
        result = None
        for run in range(args.warmup + args.runs):
            started = time.perf_counter()
            batch = helper.preprocess_batch([clip])
            prepared = time.perf_counter()
            for handle, value in zip(inputs, batch):
                handle.copy_from_cpu(value)
            predictor.run()
            logits = [handle.copy_to_cpu() for handle in outputs]
            result = helper.postprocess(logits, print_output=False, return_result=True)
            done = time.perf_counter()
            if run >= args.warmup:
                times["preprocess_ms"].append((prepared - started) * 1000.0)
                times["inference_ms"].append((done - prepared) * 1000.0)
                times["total_ms"].append((done - started) * 1000.0)
        top1 = int(result[0]["topk_class"][0]) if result else -1
        print(json.dumps({"clip": clip, "top1": top1,
                          **{key: _spread(values) for key, values in times.items()}}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
