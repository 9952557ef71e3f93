"""ONNX export of a served model: writes `model_repo/<name>/model.onnx` next to the Paddle program
with paddle2onnx, and keeps it only if ONNX Runtime reproduces Paddle Inference's output.

The ONNX tools are optional (`pip install -r requirements/onnx.txt`, see that file for why its
versions coexist with base.txt's protobuf). The source is the exported program in
`serving_server/`, so the ONNX model is exactly the network that is served, fused and all.

Two paddle2onnx 2.1.0 behaviours are handled here:

* its optional post-processing either installs `onnx_graphsurgeon` with pip at run time
  (Polygraphy constant folding, the default) or fails on a misspelt pass name and is skipped
  (onnxoptimizer: "eliminate_nop_cast "); we keep the converter's own optimised output as is, and
  ONNX Runtime optimises the graph again when it loads it;
* it writes garbage as the slope of every `LeakyRelu` (the PP-TSM ResNets): Paddle 3.3 stores
  `leaky_relu`'s slope as a double attribute and the converter reads it as a float. We read the
  slope from the Paddle program and write it back; the parity check then proves the result.

Command line: `python -m train.onnx_export --model-dir model_repo/NAME [--opset 13]`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from serving.core.metadata import ModelMeta, load_meta
from serving.core.predictor import Predictor, PredictorSettings
from train.export import parity_bound
from serving.core.program_files import legacy_program, pir_op_attributes

ONNX_FILENAME = "model.onnx"
DEFAULT_OPSET = 13
ONNX_CPU_THREADS = 2


class OnnxExportError(RuntimeError):
    """The ONNX model could not be written or does not reproduce the Paddle program."""


def _onnx_tools() -> tuple[Any, Any, Any]:
    """(paddle2onnx, onnx, onnxruntime), or an error that says how to install them."""
    try:
        import onnx
        import onnxruntime
        import paddle2onnx
    except ImportError as exc:
        raise OnnxExportError(
            f"ONNX export needs paddle2onnx, onnx and onnxruntime ({exc}); install them with "
            "`pip install -r requirements/onnx.txt`") from None
    return paddle2onnx, onnx, onnxruntime


def program_leaky_relu_slopes(program: Path, fmt: str) -> list[float]:
    """The slope of every leaky_relu op of an exported Paddle program, in program order."""
    if fmt == "json":
        return [float(attrs["negative_slope"])
                for attrs in pir_op_attributes(program, "leaky_relu")]
    return [attr.f for block in legacy_program(program).blocks for op in block.ops
            if op.type == "leaky_relu" for attr in op.attrs if attr.name == "alpha"]


def restore_leaky_relu_slopes(model: Any, slopes: list[float]) -> int:
    """Writes the program's slope into every ONNX LeakyRelu; returns how many were set.

    Every PP-TSM ResNet uses one slope (0.01) everywhere; a program with several different slopes
    cannot be matched node by node safely, so it is refused.
    """
    nodes = [node for node in model.graph.node if node.op_type == "LeakyRelu"]
    if not nodes:
        return 0
    distinct = sorted(set(slopes))
    if len(distinct) != 1:
        raise OnnxExportError(
            f"the program's leaky_relu ops use slopes {distinct[:5]}; only programs with one "
            "slope can be repaired after paddle2onnx's LeakyRelu conversion")
    for node in nodes:
        for attr in node.attribute:
            if attr.name == "alpha":
                attr.f = distinct[0]
    return len(nodes)


def _convert(meta: ModelMeta, model_dir: Path, target: Path, opset: int) -> None:
    paddle2onnx, onnx, _ = _onnx_tools()
    program = model_dir / meta.inference.model_file
    try:
        paddle2onnx.export(str(program), str(model_dir / meta.inference.params_file),
                           save_file=str(target), opset_version=opset, enable_onnx_checker=True,
                           optimize_tool="none")
    except Exception as exc:  # noqa: BLE001 - the converter raises anything; report it as ours
        raise OnnxExportError(f"paddle2onnx failed on {program}: {exc}") from exc
    if not target.is_file():
        raise OnnxExportError(f"paddle2onnx wrote no model for {program} (see its log above)")
    model = onnx.load(str(target))
    if restore_leaky_relu_slopes(model, program_leaky_relu_slopes(program, meta.inference.format)):
        onnx.save(model, str(target))


def onnx_session(path: Path, threads: int = ONNX_CPU_THREADS) -> Any:
    """An ONNX Runtime CPU session with a fixed thread count (as the Paddle predictor has)."""
    _, _, onnxruntime = _onnx_tools()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # the converter leaves unused initializers; not worth warnings
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _parity(meta: ModelMeta, model_dir: Path, onnx_path: Path) -> tuple[float, float]:
    """Max abs difference between ONNX Runtime and Paddle Inference on a random clip, and the
    largest one accepted for Paddle's outputs (train.export.parity_bound)."""
    probe = np.random.RandomState(0).standard_normal(
        (1, *meta.inference.input_shape[1:])).astype("float32")
    expected = Predictor.from_model_dir(model_dir, PredictorSettings()).predict(probe)
    session = onnx_session(onnx_path)
    got = session.run(None, {session.get_inputs()[0].name: probe})[0]
    if got.shape != expected.shape:
        raise OnnxExportError(f"ONNX output shape {list(got.shape)} != Paddle's "
                              f"{list(expected.shape)}")
    return float(np.abs(got - expected).max()), parity_bound(expected)


def export_onnx(model_dir: str | Path, opset: int = DEFAULT_OPSET) -> ModelMeta:
    """Writes `model_dir/model.onnx`, verifies it and records it in the metadata's evaluation."""
    model_dir = Path(model_dir)
    meta = load_meta(model_dir)
    started = time.perf_counter()
    candidate = model_dir / (ONNX_FILENAME + ".tmp")
    _convert(meta, model_dir, candidate, opset)
    diff, bound = _parity(meta, model_dir, candidate)
    if not diff <= bound:
        candidate.unlink()
        raise OnnxExportError(f"ONNX Runtime differs from Paddle Inference by {diff:.2e} "
                              f"(tolerance {bound:.1e}); no model.onnx written")
    candidate.replace(model_dir / ONNX_FILENAME)
    meta = ModelMeta.from_dict({**meta.to_dict(), "evaluation": {
        **meta.evaluation, "onnx_file": ONNX_FILENAME, "onnx_opset": opset,
        "onnx_parity_max_abs_diff": diff,
        "onnx_export_seconds": round(time.perf_counter() - started, 2)}})
    meta.save(model_dir)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write model_repo/<name>/model.onnx from an exported model (paddle2onnx).")
    parser.add_argument("--model-dir", required=True, help="model_repo/<name> (already exported)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    args = parser.parse_args(argv)
    try:
        meta = export_onnx(args.model_dir, args.opset)
    except (OnnxExportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {Path(args.model_dir) / ONNX_FILENAME} (opset {args.opset}); ONNX Runtime vs "
          f"Paddle Inference max abs diff {meta.evaluation['onnx_parity_max_abs_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
