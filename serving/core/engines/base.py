"""What every inference engine shares: the settings a model op configures, the error it raises,
and what a loaded program hands to `serving.core.predictor.Predictor`.

Why a contract this small: Paddle Inference and OpenVINO differ in how they are configured, how
they share a program between threads and which program files they read, but the service needs
only "float32 [N, T, 3, S, S] in, float32 [N, num_classes] out" from either. Each engine module
(`paddle.py`, `openvino.py`) turns settings into a `LoadedProgram`; the predictor owns the pool.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.core.errors import PPTSMError

ENGINES = ("paddle", "openvino")
AUTO = "auto"  # engine or precision chosen per machine at start-up (serving.core.engines.choice)
CPU_PRECISIONS = ("fp32", "bf16", "int8")
# `ModelMeta.source` key that serving.tools.quantize writes into a Paddle int8 model's metadata.
# An int8 program only runs as int8 with oneDNN's int8 passes on, and an fp32 program gains
# nothing from them, so the predictor checks that precision and program agree instead of guessing.
INT8_SOURCE_KEY = "int8_quantization"
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")

# Paddle Serving's `local_service_conf.device_type` values that the predictor supports.
SERVING_DEVICE_CPU = 0
SERVING_DEVICE_GPU = 1
SERVING_DEVICE_TENSORRT = 2

# Ops kept on Paddle's plain CPU kernels when oneDNN is on: on Paddle 3.3.1, oneDNN's
# broadcasting elementwise_mul (PP-TSMv2's SE and LTA gates) and its reduce_mean (LTA's per-frame
# mean) are slower than the plain kernels, enough to dominate PP-TSMv2's inference; outputs are
# the same to 1e-5, and ResNets and int8 programs are unaffected (figures:
# docs/speed.md).
ONEDNN_SLOW_OPS = ("elementwise_mul", "reduce_mean")


class PredictorError(PPTSMError, RuntimeError):
    """The predictor cannot be built or run with the requested settings; the message says why."""


@dataclass(frozen=True)
class PredictorSettings:
    """How to run the program. Defaults are the plain CPU settings the tools use (Paddle
    Inference, fp32); the service's config asks for `engine: auto`, `precision: auto`.

    `max_batch_size` bounds the batch dimension for TensorRT's dynamic shapes; it should equal
    the largest batch the service feeds (op batch_size times the views per request).
    """

    device: str = "cpu"  # "cpu" or "gpu"
    engine: str = "paddle"  # paddle | openvino | auto (OpenVINO only runs on CPU here)
    cpu_threads: int = 2
    use_onednn: bool = True
    onednn_cache_capacity: int = 10  # input shapes oneDNN keeps compiled kernels for; 0 = no limit
    onednn_excluded_ops: tuple[str, ...] = ONEDNN_SLOW_OPS  # .pdmodel programs only
    # CPU: fp32 | bf16 | int8 | auto; GPU with TensorRT: fp32 | fp16 | int8
    precision: str = "fp32"
    ir_optim: bool = True
    memory_optim: bool = True  # honoured for .pdmodel only (PIR .json fails with it on 3.3.1)
    gpu_id: int = 0
    gpu_memory_mb: int = 1000  # initial GPU memory pool
    use_tensorrt: bool = False
    tensorrt_min_subgraph_size: int = 3
    tensorrt_workspace_mb: int = 1024
    # Folder for serialised TensorRT engines ("" = none): with it, a restart loads the engines
    # built by an earlier start instead of spending minutes building them again.
    tensorrt_cache_dir: str = ""
    max_batch_size: int = 1
    instances: int = 1  # GPU: predictors that may run at the same time; CPU always runs one

    def validate(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise PredictorError(f"device: 'cpu' or 'gpu', got {self.device!r}")
        if self.engine not in (*ENGINES, AUTO):
            raise PredictorError(
                f"engine: one of {', '.join((*ENGINES, AUTO))}, got {self.engine!r}")
        if self.engine == "openvino" and self.device != "cpu":
            raise PredictorError("engine openvino runs on CPU only (device_type 0); on GPU use "
                                 "paddle (Paddle Inference with TensorRT) or auto")
        if self.device == "cpu" and self.precision not in (*CPU_PRECISIONS, AUTO):
            raise PredictorError(f"precision {self.precision!r} is not available on CPU; use one "
                                 f"of {', '.join((*CPU_PRECISIONS, AUTO))}")
        if self.device == "gpu" and self.precision not in TENSORRT_PRECISIONS:
            raise PredictorError(
                f"precision {self.precision!r} is not available on GPU; use one of {TENSORRT_PRECISIONS}")
        if self.device == "gpu" and self.precision != "fp32" and not self.use_tensorrt:
            raise PredictorError(f"precision {self.precision!r} on GPU needs TensorRT (device_type 2)")
        if self.use_tensorrt and self.device != "gpu":
            raise PredictorError("TensorRT needs device 'gpu'")
        if min(self.cpu_threads, self.max_batch_size, self.instances) < 1:
            raise PredictorError("cpu_threads, max_batch_size and instances must be >= 1")

    @classmethod
    def from_local_service_conf(cls, conf: Mapping[str, Any], *, max_batch_size: int,
                                instances: int) -> "PredictorSettings":
        """Maps Paddle Serving's documented `local_service_conf` keys (device_type, devices,
        thread_num, use_mkldnn, mkldnn_cache_capacity, precision, ir_optim, mem_optim,
        min_subgraph_size) onto settings, plus this service's own `engine` and
        `tensorrt_cache_dir`, so the service is configured the way any Paddle Serving op is,
        although it runs its own predictor. Only the first id of `devices` is used: one op
        drives one device."""
        device_type = int(conf.get("device_type", SERVING_DEVICE_CPU))
        if device_type not in (SERVING_DEVICE_CPU, SERVING_DEVICE_GPU, SERVING_DEVICE_TENSORRT):
            raise PredictorError(
                f"local_service_conf.device_type: 0 (CPU), 1 (GPU) or 2 (GPU + TensorRT), "
                f"got {device_type}")
        devices = str(conf.get("devices", "") or "").strip()
        gpu_ids = [int(d) for d in devices.split(",") if d.strip()] or [0]
        defaults = cls()
        settings = cls(
            device="cpu" if device_type == SERVING_DEVICE_CPU else "gpu",
            engine=str(conf.get("engine", defaults.engine)).lower(),
            cpu_threads=int(conf.get("thread_num", defaults.cpu_threads)),
            use_onednn=bool(conf.get("use_mkldnn", defaults.use_onednn)),
            onednn_cache_capacity=int(
                conf.get("mkldnn_cache_capacity", defaults.onednn_cache_capacity)),
            precision=str(conf.get("precision", defaults.precision)).lower(),
            ir_optim=bool(conf.get("ir_optim", defaults.ir_optim)),
            memory_optim=bool(conf.get("mem_optim", defaults.memory_optim)),
            gpu_id=gpu_ids[0],
            use_tensorrt=device_type == SERVING_DEVICE_TENSORRT,
            tensorrt_min_subgraph_size=int(
                conf.get("min_subgraph_size", defaults.tensorrt_min_subgraph_size)),
            tensorrt_cache_dir=str(conf.get("tensorrt_cache_dir", "") or ""),
            max_batch_size=max_batch_size,
            instances=instances,
        )
        settings.validate()
        return settings


Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LoadedProgram:
    """A program an engine has loaded: its tensor names and the runners that execute it. Each
    runner is used by one thread at a time (the predictor's pool sees to that); several runners
    may run at once."""

    input_name: str
    output_name: str
    runners: tuple[Runner, ...]
