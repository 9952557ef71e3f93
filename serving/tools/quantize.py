"""fp32 export -> int8 model folder, by post-training quantisation calibrated on real clips.

    python -m serving.tools.quantize --model-dir model_repo/pptsm --calibration data/synthetic/train.list
        [--clips 16] [--algo avg] [--check data/synthetic/test.list --check-clips 64]
        [--out model_repo/pptsm-int8]

Why this path: PaddleSlim's `quant_post_static` is a thin wrapper around Paddle's own
`paddle.static.quantization.PostTrainingQuantization`, which ships with Paddle 3.3, so the
int8 model is made without PaddleSlim. The quantised program keeps quantize/dequantize ops
(`onnx_format`), which Paddle Inference's oneDNN int8 passes (`Config.enable_mkldnn_int8()`,
precision `int8` in serving.core.predictor) turn into int8 kernels. Calibration clips go through the
service's own preprocessing, so the activation ranges are those the service will see.

The result is a complete model folder (program, metadata, labels, serving confs, written by
serving.core.model_folder like every model folder) that the service and `serving.tools.predict`
load like any other, with precision int8. Its metadata records
the calibration and, with --check, the top-1 agreement and largest logit difference against
the fp32 model. Only legacy `.pdmodel` programs can be quantised (the static-graph quantiser
does not read PIR `.json`); the exporter writes `.pdmodel` by default.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serving.core.errors import PPTSMError
from serving.core.metadata import MetadataError, ModelMeta, load_meta
from serving.core.model_folder import StagedModelFolder
from serving.tools.precision_check import compare_with_fp32, labelled_inputs
from serving.core.predictor import (
    INT8_SOURCE_KEY,
    Predictor,
    PredictorError,
    PredictorSettings,
    default_int8_dir,
)
from serving.core.timing import StageClock

# Paddle's calibration algorithms for activation ranges; weights are always per-channel abs-max.
ALGORITHMS = ("avg", "abs_max", "hist", "KL", "mse")
# The ops whose int8 kernels carry the cost of a TSM network (its convolutions and the head).
QUANTIZABLE_OPS = ("conv2d", "depthwise_conv2d", "matmul_v2", "matmul", "mul")


class QuantizeError(PPTSMError, RuntimeError):
    """The model cannot be quantised as asked; the message says why."""


def _run_post_training_quantization(model_dir: Path, meta: ModelMeta, out_dir: Path,
                                    batches: Sequence[np.ndarray], algo: str) -> None:
    """Calibrates on `batches` and writes the quantised program under `out_dir` with the same
    relative file names as the fp32 one."""
    import paddle
    from paddle.static.quantization import PostTrainingQuantization

    program = Path(meta.inference.model_file)
    params = Path(meta.inference.params_file)
    (out_dir / program.parent).mkdir(parents=True, exist_ok=True)
    # The quantiser is static-graph code: legacy IR, static mode, and a scope of its own (it
    # loads the program's weights into the current global scope).
    scope = paddle.static.Scope()
    with paddle.pir_utils.OldIrGuard(), paddle.static.scope_guard(scope):
        paddle.enable_static()
        try:
            quantizer = PostTrainingQuantization(
                executor=paddle.static.Executor(paddle.CPUPlace()), scope=scope,
                model_dir=str(model_dir / program.parent), model_filename=program.name,
                params_filename=params.name,
                data_loader=lambda: ({meta.inference.input_name: batch} for batch in batches),
                batch_nums=len(batches), algo=algo, onnx_format=True,
                quantizable_op_type=list(QUANTIZABLE_OPS))
            quantizer.quantize()
            quantizer.save_quantized_model(str(out_dir / program.parent),
                                           model_filename=program.name,
                                           params_filename=params.name)
        finally:
            paddle.disable_static()


def quantize_model(model_dir: str | Path, out_dir: str | Path, *, calibration_list: str | Path,
                   clips: int = 16, algo: str = "avg", check_list: str | Path | None = None,
                   check_clips: int = 64, data_root: str | Path | None = None) -> ModelMeta:
    """Writes the int8 copy of `model_dir` to `out_dir` (replacing it only once it loads and,
    with `check_list`, has been compared with the fp32 model)."""
    model_dir = Path(model_dir)
    if algo not in ALGORITHMS:
        raise QuantizeError(f"algo: one of {', '.join(ALGORITHMS)}, got {algo!r}")
    meta = load_meta(model_dir)
    if INT8_SOURCE_KEY in meta.source:
        raise QuantizeError(f"{model_dir} is already quantised")
    if meta.inference.format != "pdmodel":
        raise QuantizeError(f"{model_dir}: the program is PIR .json; export it as .pdmodel "
                            "(`make export FORMAT=pdmodel`) to quantise it")
    clock = StageClock()
    batches = [item.views for item in labelled_inputs(calibration_list, meta.preprocess,
                                                      count=clips, root=data_root)]
    staged = StagedModelFolder.begin(out_dir, "quantize")
    _run_post_training_quantization(model_dir, meta, staged.path, batches, algo)
    raw = meta.to_dict()
    raw["name"] = f"{meta.name}-int8"
    raw["source"] = {**meta.source, INT8_SOURCE_KEY: {
        "fp32_model": str(model_dir), "fp32_version": meta.version, "algo": algo,
        "calibration_list": str(calibration_list), "calibration_clips": len(batches),
        "seconds": round(clock.total_ms() / 1000.0, 1)}}
    int8_meta = ModelMeta.from_dict(raw)
    staged.save_meta(int8_meta)
    int8 = Predictor(staged.path, int8_meta, PredictorSettings(precision="int8"))
    if check_list is not None:
        agreement = compare_with_fp32(model_dir, int8, check_list, count=check_clips,
                                      root=data_root)
        raw["evaluation"] = {**meta.evaluation, "int8_vs_fp32": agreement.as_dict()}
        int8_meta = ModelMeta.from_dict(raw)
    staged.publish(int8_meta)
    return int8_meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make an int8 copy of an exported model.")
    parser.add_argument("--model-dir", required=True, type=Path, help="the fp32 model folder")
    parser.add_argument("--calibration", required=True, type=Path,
                        help="PaddleVideo list file of calibration clips (training clips)")
    parser.add_argument("--clips", type=int, default=16, help="calibration clips (default 16)")
    parser.add_argument("--algo", choices=ALGORITHMS, default="avg",
                        help="activation range algorithm (default avg)")
    parser.add_argument("--check", type=Path, help="list file to compare int8 with fp32 on")
    parser.add_argument("--check-clips", type=int, default=64, help="clips compared (default 64)")
    parser.add_argument("--root", type=Path, help="folder the list paths are relative to "
                        "(default: the list file's folder)")
    parser.add_argument("--out", type=Path, help="output folder (default: MODEL_DIR-int8)")
    args = parser.parse_args(argv)
    out = args.out or default_int8_dir(args.model_dir)
    try:
        meta = quantize_model(args.model_dir, out, calibration_list=args.calibration,
                              clips=args.clips, algo=args.algo, check_list=args.check,
                              check_clips=args.check_clips, data_root=args.root)
    except (QuantizeError, MetadataError, PredictorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({meta.name}, calibrated on {args.clips} clips with {args.algo})")
    if "int8_vs_fp32" in meta.evaluation:
        print(f"int8 vs fp32: {meta.evaluation['int8_vs_fp32']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
