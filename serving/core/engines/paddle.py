"""Paddle Inference: runs an exported program as Paddle Serving would, with oneDNN on CPU and
optionally TensorRT on GPU.

Each program format has its own quirks on paddle 3.3.1 (see shared/reference/EXPORT_FACTS.md):
  * a PIR `.json` program fails in `create_predictor` when memory optimisation is on, so
    memory optimisation is applied to `.pdmodel` programs only;
  * oneDNN is what makes CPU inference fast; ResNets need the `.pdmodel` export for it, which the
    exporter guarantees by choosing the format, so this module simply follows the metadata.

Thread safety: a Paddle predictor must not run in two threads at once, and on paddle 3.3.1
`clone()` itself corrupts the clone when another predictor of the same program is running
("Tensor holds no memory", "Filter tensor's layout should be ONEDNN"). So predictors are cloned
up front, before anything runs, and each becomes one runner of the pool. On CPU there is a single
runner whatever `instances` says: cloned oneDNN predictors fail intermittently on 3.3.1 ("could
not execute a primitive") even when their runs are serialised, because they share oneDNN's
primitive cache, and Paddle Inference holds the GIL while it runs, so clones would gain nothing
on CPU anyway (docs/speed.md, "Choosing threads and processes"). On GPU each of `instances` clones runs
on its own.
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
from serving.core.program_files import legacy_op_types

# Paddle 3.3.1's analysis pass that turns an inference dropout into a scale op: with bf16 or
# int8 enabled the (1 - p) factor of a `downscale_in_infer` dropout (PP-TSMv2's head, p = 0.2)
# is then lost and every logit comes out 1/(1 - p) = 1.25x too large (same top-1, wrong
# scores). Without the pass the dropout op itself runs, in fp32, at no measurable cost.
DROPOUT_TO_SCALE_PASS = "simplify_with_basic_ops_pass"


def _paddle_inference():
    """Imports Paddle lazily so that modules importing this one for its settings stay light."""
    import paddle.inference as paddle_inference

    return paddle_inference


def supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX)."""
    import paddle

    return bool(paddle.base.core.supports_bfloat16())


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
        # Paddle itself only logs "CPU does not support BFLOAT16 calculations" and runs fp32,
        # which would make a bf16 setting silently mean fp32; hence a hard error here.
        if not supports_bf16():
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


def build_config(model_dir: Path, meta: ModelMeta, settings: PredictorSettings):
    """The Paddle Inference `Config` for `settings` (a concrete engine and precision)."""
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


def _runner(predictor, input_name: str, output_name: str) -> Runner:
    def run(batch: np.ndarray) -> np.ndarray:
        feed = predictor.get_input_handle(input_name)
        feed.reshape(list(batch.shape))
        feed.copy_from_cpu(np.ascontiguousarray(batch))
        predictor.run()
        return predictor.get_output_handle(output_name).copy_to_cpu()

    return run


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
            f"`python -m serving.tools.quantize --model-dir {model_dir} ...` and serve that, "
            "or serve this folder with engine openvino after `make quantize ENGINE=openvino`")
    if quantized and settings.precision != "int8":
        raise PredictorError(
            f"{model_dir} holds an int8 (quantized) program; run it with precision int8")


def load(model_dir: Path, meta: ModelMeta, settings: PredictorSettings) -> LoadedProgram:
    """The program of `model_dir` in Paddle Inference, with its clones made up front."""
    _check_int8_agreement(model_dir, meta, settings)
    config = build_config(model_dir, meta, settings)
    try:
        template = _paddle_inference().create_predictor(config)
    except (ValueError, RuntimeError) as exc:
        raise PredictorError(
            f"Paddle Inference could not load {model_dir / meta.inference.model_file}: {exc}"
        ) from exc
    input_name: str = template.get_input_names()[0]
    # The output name differs between legacy programs (the last layer's variable) and PIR
    # programs (`fetch_name_0`); position 0 is stable. The exporter records the name.
    output_name: str = template.get_output_names()[0]
    clones = settings.instances - 1 if settings.device != "cpu" else 0
    predictors = [template] + [template.clone() for _ in range(clones)]
    return LoadedProgram(input_name, output_name,
                         tuple(_runner(p, input_name, output_name) for p in predictors))
