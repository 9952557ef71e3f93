"""fp32 export -> int8, by post-training quantisation calibrated on real clips, for either engine.

    python -m serving.tools.quantize --model-dir model_repo/pptsm --calibration data/synthetic/train.list
        [--clips 16] [--algo avg] [--check data/synthetic/test.list --check-clips 64]
        [--out model_repo/pptsm-int8]
    python -m serving.tools.quantize --engine openvino --model-dir model_repo/pptsm
        --calibration data/synthetic/train.list --check data/synthetic/val.list [--clips 300]

OpenVINO (`--engine openvino`, `make quantize ENGINE=openvino`): NNCF's accuracy-controlled
post-training quantisation of the program OpenVINO reads from the folder, calibrated on the
training clips. Its validation metric is the share of validation clips on which the int8 model
gives the fp32 model's top-1, with a maximum drop of 1 - MIN_AGREEMENT, so NNCF keeps in fp32 the
layers that would change answers. The result is published only if it then agrees with fp32 on at
least MIN_AGREEMENT of the validation clips: as `openvino/int8.xml` + `.bin` inside the fp32 model
folder (one folder serves both precisions; `precision: auto` picks), with the agreement, the
largest logit difference and the speed-up recorded under `agreement["openvino/int8"]` in its
model_meta.json. The folder is rewritten through serving.core.model_folder (staged copy, swapped
in), so a failed or refused quantisation leaves the served folder as it was.

Paddle (the default engine):

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
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from serving.core.errors import PPTSMError
from serving.core.metadata import MetadataError, ModelMeta, load_meta
from serving.core.model_folder import StagedModelFolder
from serving.tools.precision_check import Agreement, compare, compare_with_fp32, labelled_inputs
from serving.core.engines.choice import MIN_AGREEMENT
from serving.core.engines.openvino import INT8_IR_FILE, program_path
from serving.core.predictor import (
    INT8_SOURCE_KEY,
    Predictor,
    PredictorError,
    PredictorSettings,
    default_int8_dir,
)
from serving.core.stages import ranked_classes
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


def agreement_gate(agreement: Agreement) -> None:
    """Refuses an int8 model that gives fp32's top-1 on fewer than MIN_AGREEMENT of the clips."""
    if agreement.top1_agreement < MIN_AGREEMENT:
        raise QuantizeError(
            f"int8 agrees with fp32 on {agreement.top1_agreement:.1%} of {agreement.clips} "
            f"validation clips, below the {MIN_AGREEMENT:.1%} required; not published "
            "(more calibration clips, or a model trained longer, usually help)")


def _nncf_int8(fp32_program: Path, calibration: Sequence[np.ndarray],
               validation: Sequence[np.ndarray], fp32_top1: Sequence[int]):
    """NNCF's accuracy-controlled int8 of the OpenVINO model read from `fp32_program`, whose
    metric is top-1 agreement with fp32 (so the fp32 model scores 1.0 and the allowed drop is
    1 - MIN_AGREEMENT)."""
    import nncf
    import openvino as ov

    def agreement_metric(compiled, items) -> tuple[float, list[float]]:
        hits = [float(ranked_classes(compiled(views)[0], 1)[0][0] == top1)
                for views, top1 in items]
        return sum(hits) / len(hits), hits

    return nncf.quantize_with_accuracy_control(
        ov.Core().read_model(str(fp32_program)),
        calibration_dataset=nncf.Dataset(list(calibration)),
        validation_dataset=nncf.Dataset(list(zip(validation, fp32_top1))),
        validation_fn=agreement_metric, max_drop=1.0 - MIN_AGREEMENT,
        drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
        target_device=nncf.TargetDevice.CPU, subset_size=len(calibration))


def quantize_openvino(model_dir: str | Path, *, calibration_list: str | Path,
                      check_list: str | Path, clips: int = 300, check_clips: int | None = None,
                      data_root: str | Path | None = None) -> ModelMeta:
    """Adds the NNCF int8 program to `model_dir` (openvino/int8.xml) and records its agreement
    with fp32 on `check_clips` clips of `check_list` (all of them by default), or refuses."""
    import openvino as ov

    model_dir = Path(model_dir)
    meta = load_meta(model_dir)
    fp32 = Predictor(model_dir, meta, PredictorSettings(engine="openvino"))
    if importlib.util.find_spec("nncf") is None:
        raise QuantizeError("NNCF is not installed: it comes with requirements/train.txt "
                            "(`make install`)")
    clock = StageClock()
    calibration = [item.views for item in labelled_inputs(calibration_list, meta.preprocess,
                                                          count=clips, root=data_root)]
    validation = list(labelled_inputs(check_list, meta.preprocess,
                                      count=check_clips or sys.maxsize, root=data_root))
    fp32_top1 = [ranked_classes(fp32.predict(item.views), 1)[0][0] for item in validation]
    int8_model = _nncf_int8(program_path(model_dir, meta, "fp32"), calibration,
                            [item.views for item in validation], fp32_top1)
    staged = StagedModelFolder.begin_from(model_dir, "quantize-openvino")
    ov.save_model(int8_model, str(staged.path / INT8_IR_FILE), compress_to_fp16=False)
    int8 = Predictor(staged.path, meta, PredictorSettings(engine="openvino", precision="int8"))
    agreement = compare(fp32, int8, validation)
    agreement_gate(agreement)
    raw = meta.to_dict()
    raw["agreement"] = {**meta.agreement, "openvino/int8": {
        **agreement.as_dict(), "validation_list": str(check_list),
        "calibration_list": str(calibration_list), "calibration_clips": len(calibration),
        "tool": "nncf.quantize_with_accuracy_control",
        "seconds": round(clock.total_ms() / 1000.0, 1)}}
    published = ModelMeta.from_dict(raw)
    staged.publish(published)
    return published


def _run(args: argparse.Namespace) -> str:
    """Quantises as the arguments say; returns what to print."""
    if args.engine == "openvino":
        if args.check is None:
            raise QuantizeError("--engine openvino needs --check (the validation list): an int8 "
                                "model is only published once checked against fp32")
        meta = quantize_openvino(args.model_dir, calibration_list=args.calibration,
                                 check_list=args.check, clips=args.clips or 300,
                                 check_clips=args.check_clips, data_root=args.root)
        return (f"wrote {args.model_dir / INT8_IR_FILE}; int8 vs fp32: "
                f"{meta.agreement['openvino/int8']}")
    out = args.out or default_int8_dir(args.model_dir)
    clips = args.clips or 16
    meta = quantize_model(args.model_dir, out, calibration_list=args.calibration, clips=clips,
                          algo=args.algo, check_list=args.check,
                          check_clips=args.check_clips or 64, data_root=args.root)
    summary = f"wrote {out} ({meta.name}, calibrated on {clips} clips with {args.algo})"
    if "int8_vs_fp32" in meta.evaluation:
        summary += f"\nint8 vs fp32: {meta.evaluation['int8_vs_fp32']}"
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make an int8 version of an exported model.")
    parser.add_argument("--model-dir", required=True, type=Path, help="the fp32 model folder")
    parser.add_argument("--engine", choices=("paddle", "openvino"), default="paddle",
                        help="paddle: Paddle's post-training int8 into a copy (--out); openvino: "
                        "NNCF int8 with accuracy control into MODEL_DIR/openvino (default paddle)")
    parser.add_argument("--calibration", required=True, type=Path,
                        help="PaddleVideo list file of calibration clips (training clips)")
    parser.add_argument("--clips", type=int,
                        help="calibration clips (default 16 for paddle, 300 for openvino)")
    parser.add_argument("--algo", choices=ALGORITHMS, default="avg",
                        help="paddle: activation range algorithm (default avg)")
    parser.add_argument("--check", type=Path, help="list file to compare int8 with fp32 on "
                        "(openvino: the validation split, required)")
    parser.add_argument("--check-clips", type=int,
                        help="clips compared (default 64 for paddle, the whole list for openvino)")
    parser.add_argument("--root", type=Path, help="folder the list paths are relative to "
                        "(default: the list file's folder)")
    parser.add_argument("--out", type=Path, help="paddle: output folder (default: MODEL_DIR-int8)")
    args = parser.parse_args(argv)
    try:
        print(_run(args))
    except (QuantizeError, MetadataError, PredictorError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
