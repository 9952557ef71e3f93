"""OpenVINO: runs the exported Paddle program on CPU through OpenVINO's Paddle front end, which
reads the `.pdmodel` + `.pdiparams` pair as the exporter wrote it (no conversion step, no extra
files), or the int8 IR that `serving.tools.quantize --engine openvino` stores beside it.

Why a second engine: on CPUs without AMX/AVX512-BF16 Paddle Inference's oneDNN fp32 path is all
there is, and OpenVINO's CPU plugin runs the same programs faster there with the same logits
(docs/cpu-engines.md). Limits, each refused with the reason: OpenVINO 2026.4's Paddle front end
reads legacy `.pdmodel` programs only (not PIR `.json`), and does not read the quantize/dequantize
programs of Paddle's own int8 flow (MODEL_DIR-int8); it runs on CPU only.

Threads: `cpu_threads` becomes INFERENCE_NUM_THREADS under the LATENCY hint (one stream: a
request's batch uses every thread), as Paddle's math threads do. Each of `instances` gets its own
infer request; OpenVINO releases the GIL while one runs, so they may run at the same time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.core.engines.base import (
    INT8_SOURCE_KEY,
    LoadedProgram,
    PredictorError,
    PredictorSettings,
    Runner,
)
from serving.core.metadata import ModelMeta

# Where the NNCF int8 IR lives inside a model folder (written by serving.tools.quantize).
INT8_IR_FILE = "openvino/int8.xml"
# OpenVINO's name for each precision it is asked to compute in; int8 comes from the IR itself
# (its FakeQuantize ops), the rest of that network stays in f32.
_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def unavailable_reason() -> str:
    """Why OpenVINO cannot be used in this environment, or "" when it can."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return (f"OpenVINO is not installed ({exc}); install requirements/openvino.txt "
                "(the CPU image has it)")
    return ""


def unreadable_reason(model_dir: Path, meta: ModelMeta, precision: str) -> str:
    """Why OpenVINO cannot run this model folder at `precision`, or "" when it can."""
    if INT8_SOURCE_KEY in meta.source:
        return (f"{model_dir} holds Paddle's quantised program, which OpenVINO does not read; "
                "serve it with engine paddle, or quantise the fp32 folder with "
                "`make quantize ENGINE=openvino`")
    if precision == "int8":
        if not (model_dir / INT8_IR_FILE).is_file():
            return (f"{model_dir / INT8_IR_FILE} is missing: make it with `make quantize "
                    "ENGINE=openvino` (serving.tools.quantize --engine openvino)")
        return ""
    if meta.inference.format != "pdmodel":
        return (f"{model_dir / meta.inference.model_file} is a PIR .json program, which OpenVINO's "
                "Paddle front end does not read; export it with `make export FORMAT=pdmodel`")
    return ""


def program_path(model_dir: Path, meta: ModelMeta, precision: str) -> Path:
    """The file OpenVINO reads for `precision`: the int8 IR, else the exported program."""
    return model_dir / (INT8_IR_FILE if precision == "int8" else meta.inference.model_file)


def _runner(request) -> Runner:
    def run(batch: np.ndarray) -> np.ndarray:
        # infer() copies the outputs out of the request's buffers (share_outputs is off), so
        # the array stays valid after the request runs again.
        return request.infer({0: np.ascontiguousarray(batch)})[0]

    return run


def load(model_dir: Path, meta: ModelMeta, settings: PredictorSettings) -> LoadedProgram:
    """Compiles the program of `model_dir` for OpenVINO's CPU plugin at `settings.precision`."""
    reason = unavailable_reason() or unreadable_reason(model_dir, meta, settings.precision)
    if reason:
        raise PredictorError(f"engine openvino: {reason}")
    import openvino as ov

    path = program_path(model_dir, meta, settings.precision)
    core = ov.Core()
    if settings.precision == "bf16" and "BF16" not in core.get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"):
        raise PredictorError("precision bf16: this CPU has no bfloat16 support (OpenVINO needs "
                             "AVX512-BF16 or AMX); use fp32 or int8")
    try:
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": settings.cpu_threads,
            # Explicit even for fp32: on AMX/AVX512-BF16 CPUs OpenVINO computes in bf16 unless
            # told otherwise, which would make "fp32" silently mean bf16.
            "INFERENCE_PRECISION_HINT": _PRECISION_HINT[settings.precision],
        })
    except RuntimeError as exc:
        raise PredictorError(f"OpenVINO could not load {path}: {exc}") from exc
    requests = [compiled.create_infer_request() for _ in range(settings.instances)]
    # The names the exporter recorded from Paddle: OpenVINO may name the same output tensor
    # after another of its Paddle variables, and callers match names with the metadata.
    return LoadedProgram(meta.inference.input_name, meta.inference.output_name,
                         tuple(_runner(r) for r in requests))
