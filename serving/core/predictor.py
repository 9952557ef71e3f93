"""Paddle Inference wrapper: the one place that knows how to run an exported PP-TSM program.

Why a module of its own: Paddle Serving 0.9's local predictor only finds `*.pdmodel`, while
Paddle 3.3 exports some families only as PIR `.json`, and each format has its own quirks on
paddle 3.3.1 (see shared/reference/EXPORT_FACTS.md):
  * a PIR `.json` program fails in `create_predictor` when memory optimisation is on, so
    memory optimisation is applied to `.pdmodel` programs only;
  * oneDNN is what makes CPU inference fast; ResNets need the `.pdmodel` export for it, which the
    exporter guarantees by choosing the format, so this module simply follows the metadata.

Thread safety: a Paddle predictor must not run in two threads at once, and on paddle 3.3.1
`clone()` itself corrupts the clone when another predictor of the same program is running
("Tensor holds no memory", "Filter tensor's layout should be ONEDNN"). So predictors are cloned
up front, before anything runs, and kept in a pool: `predict` borrows one for the whole
feed-run-fetch and gives it back, which makes one `Predictor` safe to share between the threads
of a Paddle Serving op. On CPU the pool holds a single predictor whatever `instances` says:
cloned oneDNN predictors fail intermittently on 3.3.1 ("could not execute a primitive") even
when their runs are serialised, because they share oneDNN's primitive cache, and Paddle
Inference holds the GIL while it runs, so clones would gain nothing on CPU anyway (README,
"Choosing threads and processes"). On GPU each of `instances` clones runs on its own.
"""
from __future__ import annotations

import queue
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.core.errors import PPTSMError
from serving.core.metadata import ModelMeta, load_meta
from serving.core.program_files import legacy_op_types

CPU_PRECISIONS = ("fp32", "bf16", "int8")
# Paddle 3.3.1's analysis pass that turns an inference dropout into a scale op: with bf16 or
# int8 enabled the (1 - p) factor of a `downscale_in_infer` dropout (PP-TSMv2's head, p = 0.2)
# is then lost and every logit comes out 1/(1 - p) = 1.25x too large (same top-1, wrong
# scores). Without the pass the dropout op itself runs, in fp32, at no measurable cost.
DROPOUT_TO_SCALE_PASS = "simplify_with_basic_ops_pass"
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")

# Paddle Serving's `local_service_conf.device_type` values that this wrapper supports.
SERVING_DEVICE_CPU = 0
SERVING_DEVICE_GPU = 1
SERVING_DEVICE_TENSORRT = 2

# `ModelMeta.source` key that serving.tools.quantize writes into an int8 model's metadata. An int8
# program only runs as int8 with oneDNN's int8 passes on, and an fp32 program gains nothing from
# them, so the predictor checks that precision and program agree instead of guessing.
INT8_SOURCE_KEY = "int8_quantization"


def default_int8_dir(model_dir: Path) -> Path:
    """Where serving.tools.quantize writes a model's int8 copy unless told otherwise, and where
    serving.tools.precision_check looks for it: MODEL_DIR-int8 beside the fp32 folder."""
    return model_dir.with_name(f"{model_dir.name}-int8")

# Ops kept on Paddle's plain CPU kernels when oneDNN is on: on Paddle 3.3.1, oneDNN's
# broadcasting elementwise_mul (PP-TSMv2's SE and LTA gates) and its reduce_mean (LTA's per-frame
# mean) are slower than the plain kernels, enough to dominate PP-TSMv2's inference; outputs are
# the same to 1e-5, and ResNets and int8 programs are unaffected (figures: README, "Speed: where
# the time goes").
ONEDNN_SLOW_OPS = ("elementwise_mul", "reduce_mean")


class PredictorError(PPTSMError, RuntimeError):
    """The predictor cannot be built or run with the requested settings; the message says why."""


@dataclass(frozen=True)
class PredictorSettings:
    """How to run the program. Defaults are the CPU settings the service uses.

    `max_batch_size` bounds the batch dimension for TensorRT's dynamic shapes; it should equal
    the largest batch the service feeds (op batch_size times the views per request).
    """

    device: str = "cpu"  # "cpu" or "gpu"
    cpu_threads: int = 2
    use_onednn: bool = True
    onednn_cache_capacity: int = 10  # input shapes oneDNN keeps compiled kernels for; 0 = no limit
    onednn_excluded_ops: tuple[str, ...] = ONEDNN_SLOW_OPS  # .pdmodel programs only
    precision: str = "fp32"  # CPU: fp32 | bf16 | int8 (oneDNN); GPU with TensorRT: fp32 | fp16 | int8
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
        if self.device == "cpu" and self.precision not in CPU_PRECISIONS:
            raise PredictorError(
                f"precision {self.precision!r} is not available on CPU; use one of {CPU_PRECISIONS}")
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
        min_subgraph_size) onto settings, plus this service's own `tensorrt_cache_dir`, so the service is configured the way any Paddle
        Serving op is, although it runs its own predictor. Only the first id of `devices` is
        used: one op drives one device."""
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


def _paddle_inference():
    """Imports Paddle lazily so that modules importing this one for its settings stay light."""
    import paddle.inference as paddle_inference

    return paddle_inference


def _configure_cpu(config, settings: PredictorSettings, program_ops: frozenset[str]) -> None:
    """`program_ops` empty means unknown (PIR .json): every op may then use oneDNN."""
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(settings.cpu_threads)
    if settings.use_onednn:
        config.enable_mkldnn()
        config.set_mkldnn_cache_capacity(settings.onednn_cache_capacity)
        if program_ops and program_ops & set(settings.onednn_excluded_ops):
            # Paddle takes the list of ops that may use oneDNN, not the list of those that may not.
            config.set_mkldnn_op(set(program_ops - set(settings.onednn_excluded_ops)))
    else:
        config.disable_mkldnn()  # Paddle 3.3 enables oneDNN on CPU unless told otherwise
    if settings.precision in ("bf16", "int8") and not settings.use_onednn:
        raise PredictorError(f"precision {settings.precision} on CPU needs oneDNN (use_mkldnn: true)")
    if settings.precision == "bf16":
        import paddle

        # Paddle itself only logs "CPU does not support BFLOAT16 calculations" and runs fp32,
        # which would make a bf16 setting silently mean fp32; hence a hard error here.
        if not paddle.base.core.supports_bfloat16():
            raise PredictorError(
                "precision bf16: this CPU has no bfloat16 support (oneDNN bf16 needs "
                "AVX512-BF16 or AMX; paddle.base.core.supports_bfloat16() is False); use fp32, "
                "or int8 with a model made by `python -m serving.tools.quantize`")
        config.enable_mkldnn_bfloat16()
        config.delete_pass(DROPOUT_TO_SCALE_PASS)
    if settings.precision == "int8":
        import paddle

        if not paddle.base.core.supports_int8():
            raise PredictorError("precision int8 needs a CPU with AVX2 or newer; use fp32")
        config.enable_mkldnn_int8()
        config.delete_pass(DROPOUT_TO_SCALE_PASS)


def _configure_gpu(config, settings: PredictorSettings, input_name: str,
                   sample_shape: tuple[int, ...]) -> None:
    """Written against the documented Paddle Inference GPU/TensorRT API; not exercised in CI
    (no GPU there), hence the explicit checks that fail with a clear message instead."""
    import paddle

    if not paddle.is_compiled_with_cuda():
        raise PredictorError("device gpu requested but this Paddle build has no CUDA support")
    paddle_inference = _paddle_inference()
    config.enable_use_gpu(settings.gpu_memory_mb, settings.gpu_id)
    if not settings.use_tensorrt:
        return
    if settings.tensorrt_cache_dir:
        cache = Path(settings.tensorrt_cache_dir)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PredictorError(f"tensorrt_cache_dir {cache}: cannot create it ({exc})") from exc
        config.set_optim_cache_dir(str(cache))
    precision = {
        "fp32": paddle_inference.PrecisionType.Float32,
        "fp16": paddle_inference.PrecisionType.Half,
        "int8": paddle_inference.PrecisionType.Int8,
    }[settings.precision]
    config.enable_tensorrt_engine(
        workspace_size=settings.tensorrt_workspace_mb << 20,
        max_batch_size=settings.max_batch_size,
        min_subgraph_size=settings.tensorrt_min_subgraph_size,
        precision_mode=precision,
        use_static=bool(settings.tensorrt_cache_dir),  # serialise engines into the cache dir
        use_calib_mode=settings.precision == "int8",
    )
    # The batch is the only dynamic dimension of a PP-TSM input [N, T, 3, S, S].
    config.set_trt_dynamic_shape_info(
        {input_name: [1, *sample_shape]},
        {input_name: [settings.max_batch_size, *sample_shape]},
        {input_name: [1, *sample_shape]},
    )


def _check_int8_agreement(model_dir: Path, meta: ModelMeta, settings: PredictorSettings) -> None:
    """An int8 setting needs a quantized program and a quantized program needs the int8
    setting (on CPU; it would otherwise run its quantize/dequantize ops in fp32, slower than
    the fp32 model)."""
    if settings.device != "cpu":
        return
    quantized = INT8_SOURCE_KEY in meta.source
    if settings.precision == "int8" and not quantized:
        raise PredictorError(
            f"precision int8: {model_dir} holds an fp32 program; make an int8 copy with "
            f"`python -m serving.tools.quantize --model-dir {model_dir} ...` and serve that")
    if quantized and settings.precision != "int8":
        raise PredictorError(
            f"{model_dir} holds an int8 (quantized) program; run it with precision int8")


def _build_config(model_dir: Path, meta: ModelMeta, settings: PredictorSettings):
    inference = meta.inference
    config = _paddle_inference().Config(str(model_dir / inference.model_file),
                                        str(model_dir / inference.params_file))
    config.switch_ir_optim(settings.ir_optim)
    if settings.memory_optim and inference.format == "pdmodel":
        config.enable_memory_optim()
    if settings.device == "cpu":
        program_ops = (legacy_op_types(model_dir / inference.model_file)
                       if inference.format == "pdmodel" else frozenset())
        _configure_cpu(config, settings, program_ops)
    else:
        _configure_gpu(config, settings, inference.input_name, tuple(inference.input_shape[1:]))
    config.disable_glog_info()
    return config


class Predictor:
    """Runs one exported model: float32 [N, T, 3, S, S] in, float32 [N, num_classes] out."""

    def __init__(self, model_dir: str | Path, meta: ModelMeta, settings: PredictorSettings):
        settings.validate()
        self.meta = meta
        self.settings = settings
        self._sample_shape = tuple(meta.inference.input_shape[1:])
        model_dir = Path(model_dir)
        _check_int8_agreement(model_dir, meta, settings)
        for relative in (meta.inference.model_file, meta.inference.params_file):
            if not (model_dir / relative).is_file():
                raise PredictorError(f"{model_dir / relative}: model file missing")
        config = _build_config(model_dir, meta, settings)
        try:
            template = _paddle_inference().create_predictor(config)
        except (ValueError, RuntimeError) as exc:
            raise PredictorError(
                f"Paddle Inference could not load {model_dir / meta.inference.model_file}: {exc}"
            ) from exc
        self.input_name: str = template.get_input_names()[0]
        # The output name differs between legacy programs (the last layer's variable) and PIR
        # programs (`fetch_name_0`); position 0 is stable. The exporter records the name.
        self.output_name: str = template.get_output_names()[0]
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._pool.put(template)
        clones = settings.instances - 1 if settings.device != "cpu" else 0
        for _ in range(clones):
            self._pool.put(template.clone())

    @classmethod
    def from_model_dir(cls, model_dir: str | Path,
                       settings: PredictorSettings | None = None) -> "Predictor":
        """Loads `model_dir/model_meta.json` and the program it names."""
        return cls(model_dir, load_meta(model_dir), settings or PredictorSettings())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns the raw network output (logits) for a batch of clips or views."""
        if batch.dtype != np.float32 or batch.ndim != 5 or tuple(batch.shape[1:]) != self._sample_shape:
            raise ValueError(
                f"expected float32 [N, {', '.join(map(str, self._sample_shape))}], "
                f"got {batch.dtype} {list(batch.shape)}")
        if batch.shape[0] == 0:
            raise ValueError("empty batch")
        predictor = self._pool.get()
        try:
            feed = predictor.get_input_handle(self.input_name)
            feed.reshape(list(batch.shape))
            feed.copy_from_cpu(np.ascontiguousarray(batch))
            predictor.run()
            return predictor.get_output_handle(self.output_name).copy_to_cpu()
        finally:
            self._pool.put(predictor)
