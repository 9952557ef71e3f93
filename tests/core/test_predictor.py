"""The Paddle Inference wrapper on real exports of a tiny PP-TSMv2, in both program formats."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import paddle
import pytest

from serving.core.metadata import load_meta
from serving.core.engines.paddle import build_config
from serving.core.predictor import Predictor, PredictorError, PredictorSettings
from serving.core.serving_conf import write_serving_confs
from tests.serving_helpers import TINY_LABELS, TINY_PREPROCESS, export_tiny_model

SAMPLE_SHAPE = (TINY_PREPROCESS.num_seg, 3, TINY_PREPROCESS.crop_size, TINY_PREPROCESS.crop_size)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, calibrate_bn) -> dict[str, Path]:
    dirs = {fmt: tmp_path_factory.getbasetemp() / f"tiny_{fmt}" for fmt in ("pdmodel", "json")}
    for fmt, path in dirs.items():
        export_tiny_model(path, fmt=fmt, calibrate_bn=calibrate_bn)
    return dirs


def _clips(count: int, seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((count, *SAMPLE_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def predictors(model_dirs) -> dict[str, Predictor]:
    return {fmt: Predictor.from_model_dir(path) for fmt, path in model_dirs.items()}


def test_both_formats_load_with_onednn_and_agree(predictors) -> None:
    clips = _clips(3)
    legacy = predictors["pdmodel"].predict(clips)
    pir = predictors["json"].predict(clips)
    assert legacy.shape == (3, len(TINY_LABELS)) and legacy.dtype == np.float32
    np.testing.assert_allclose(legacy, pir, atol=1e-4)
    assert np.std(legacy) > 1e-2, "logits should depend on the input (calibrated BN)"


def test_memory_optim_setting_is_safe_for_pir_programs(model_dirs) -> None:
    """Paddle 3.3.1 fails on PIR + enable_memory_optim; the wrapper must skip it for .json."""
    meta = load_meta(model_dirs["json"])
    assert meta.inference.format == "json"
    predictor = Predictor(model_dirs["json"], meta, PredictorSettings(memory_optim=True))
    assert predictor.predict(_clips(1)).shape == (1, len(TINY_LABELS))


@pytest.mark.parametrize("fmt", ["pdmodel", "json"])
def test_batched_rows_equal_single_clip_results(predictors, fmt: str) -> None:
    clips = _clips(4, seed=2)
    batched = predictors[fmt].predict(clips)
    singles = np.concatenate([predictors[fmt].predict(clips[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_plain_cpu_without_onednn_matches(model_dirs, predictors) -> None:
    plain = Predictor.from_model_dir(model_dirs["pdmodel"],
                                     PredictorSettings(use_onednn=False, ir_optim=False))
    clips = _clips(2, seed=3)
    np.testing.assert_allclose(plain.predict(clips), predictors["pdmodel"].predict(clips),
                               atol=1e-4)


@pytest.mark.parametrize("use_onednn", [True, False])
def test_the_onednn_setting_is_what_paddle_gets(model_dirs, use_onednn: bool) -> None:
    """Paddle 3.3 turns oneDNN on by default, so `use_onednn: false` must turn it off."""
    model_dir = model_dirs["pdmodel"]
    config = build_config(model_dir, load_meta(model_dir), PredictorSettings(use_onednn=use_onednn))
    assert config.mkldnn_enabled() is use_onednn


def test_one_predictor_is_safe_to_share_between_threads(model_dirs) -> None:
    """Four threads on one CPU predictor: they take turns, and no result mixes."""
    predictor = Predictor.from_model_dir(model_dirs["pdmodel"], PredictorSettings(instances=3))
    inputs = [_clips(2, seed=10 + i) for i in range(4)]
    expected = [predictor.predict(x) for x in inputs]
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        for _ in range(3):
            results[index] = predictor.predict(inputs[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(4):
        np.testing.assert_allclose(results[index], expected[index], atol=1e-6)


def test_names_come_from_the_program(predictors, model_dirs) -> None:
    predictor = predictors["pdmodel"]
    assert predictor.input_name == "data_batch_0"
    assert predictor.output_name == load_meta(model_dirs["pdmodel"]).inference.output_name


@pytest.mark.parametrize("batch, message", [
    (np.zeros((1, *SAMPLE_SHAPE), dtype=np.float64), "float32"),
    (np.zeros((1, 4, 3, 56, 56), dtype=np.float32), "expected float32"),
    (np.zeros((0, *SAMPLE_SHAPE), dtype=np.float32), "empty batch"),
])
def test_predict_rejects_wrong_input(predictors, batch: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predictors["pdmodel"].predict(batch)


def test_missing_program_file_is_named(model_dirs, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["pdmodel"], broken)
    meta = load_meta(broken)
    (broken / meta.inference.params_file).unlink()
    with pytest.raises(PredictorError, match=r"ppTSMv2\.pdiparams: model file missing"):
        Predictor.from_model_dir(broken)


@pytest.mark.parametrize("fmt", ["pdmodel", "json"])
def test_bf16_runs_or_fails_clearly(tmp_path_factory, calibrate_bn, fmt: str) -> None:
    """Where bf16 runs, it keeps the logits' scale. The model's inference dropout
    (`downscale_in_infer`, here p = 0.5) is what Paddle's bf16 passes got wrong: its (1 - p)
    factor was lost, doubling every logit (same top-1, wrong scores). The random tiny net
    amplifies rounding, so the check is on the scale, not on single logits."""
    model_dir = tmp_path_factory.getbasetemp() / f"tiny_dropout_half_{fmt}"
    export_tiny_model(model_dir, fmt=fmt, calibrate_bn=calibrate_bn, dropout=0.5)
    settings = PredictorSettings(precision="bf16")
    if not paddle.base.core.supports_bfloat16():
        with pytest.raises(PredictorError, match="no bfloat16 support"):
            Predictor.from_model_dir(model_dir, settings)
        return
    clips = _clips(8)
    bf16 = Predictor.from_model_dir(model_dir, settings).predict(clips)
    fp32 = Predictor.from_model_dir(model_dir).predict(clips)
    assert not np.array_equal(bf16, fp32)  # bfloat16 kernels really ran
    assert 0.8 < np.linalg.norm(bf16) / np.linalg.norm(fp32) < 1.25


def test_gpu_request_fails_clearly_on_a_cpu_build(model_dirs) -> None:
    if paddle.is_compiled_with_cuda():
        pytest.skip("this Paddle build has CUDA; the CPU-only guard is not reachable")
    with pytest.raises(PredictorError, match="no CUDA support"):
        Predictor.from_model_dir(model_dirs["pdmodel"], PredictorSettings(device="gpu"))


@pytest.mark.parametrize("settings, message", [
    (PredictorSettings(device="tpu"), "'cpu' or 'gpu'"),
    (PredictorSettings(precision="fp16"), "not available on CPU"),
    (PredictorSettings(device="gpu", precision="fp16"), "needs TensorRT"),
    (PredictorSettings(use_tensorrt=True), "TensorRT needs device 'gpu'"),
    (PredictorSettings(cpu_threads=0), ">= 1"),
    (PredictorSettings(instances=0), ">= 1"),
])
def test_invalid_settings_are_explained(settings: PredictorSettings, message: str) -> None:
    with pytest.raises(PredictorError, match=message):
        settings.validate()


def test_settings_from_paddle_serving_local_service_conf() -> None:
    cpu = PredictorSettings.from_local_service_conf(
        {"device_type": 0, "devices": "", "thread_num": 3, "use_mkldnn": True,
         "mkldnn_cache_capacity": 4, "precision": "FP32", "ir_optim": True, "mem_optim": False},
        max_batch_size=8, instances=2)
    assert cpu == PredictorSettings(device="cpu", cpu_threads=3, use_onednn=True,
                                    onednn_cache_capacity=4, precision="fp32", ir_optim=True,
                                    memory_optim=False, max_batch_size=8, instances=2)
    trt = PredictorSettings.from_local_service_conf(
        {"device_type": 2, "devices": "1,2", "precision": "fp16", "min_subgraph_size": 5},
        max_batch_size=4, instances=1)
    assert (trt.device, trt.gpu_id, trt.use_tensorrt, trt.precision,
            trt.tensorrt_min_subgraph_size) == ("gpu", 1, True, "fp16", 5)
    with pytest.raises(PredictorError, match="device_type"):
        PredictorSettings.from_local_service_conf({"device_type": 4}, max_batch_size=1,
                                                  instances=1)


def test_serving_confs_describe_the_program(model_dirs, tmp_path: Path) -> None:
    """The prototxt files parse with Paddle Serving's own message class and name the real
    input/output variables with shapes without the batch dimension."""
    from google.protobuf import text_format
    from paddle_serving_server.proto.general_model_config_pb2 import GeneralModelConfig

    meta = load_meta(model_dirs["pdmodel"])
    server, client = write_serving_confs(tmp_path, meta)
    assert server.read_text() == client.read_text()
    conf = text_format.Parse(server.read_text(), GeneralModelConfig())
    (feed,), (fetch,) = conf.feed_var, conf.fetch_var
    assert (feed.name, feed.alias_name, feed.feed_type, list(feed.shape)) == (
        "data_batch_0", "data_batch_0", 1, list(SAMPLE_SHAPE))
    assert (fetch.name, fetch.fetch_type, list(fetch.shape)) == (
        meta.inference.output_name, 1, [len(TINY_LABELS)])
    assert not feed.is_lod_tensor and not fetch.is_lod_tensor
