"""pipeline_config/config.gpu.yml: it parses, Paddle Serving accepts it, it asks for TensorRT
FP16, and its batch range covers every batch the model's requests can form. Where a GPU and a
CUDA build of Paddle are present, the predictor it configures runs and agrees with the CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline.pipeline_server import ServerYamlConfChecker  # noqa: E402

from serving.core.metadata import load_meta  # noqa: E402
from serving.core.predictor import Predictor, PredictorSettings  # noqa: E402
from serving.pipeline.service import load_service_config  # noqa: E402
from tests.service_client import tiny_model_dir  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "pipeline_config"
GPU_CONFIG = CONFIG_DIR / "config.gpu.yml"
# FP16 TensorRT against FP32 CPU on the tiny model's logits.
FP16_LOGIT_TOLERANCE = 5e-2


def _has_gpu() -> bool:
    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


def test_paddle_serving_accepts_the_gpu_config() -> None:
    conf = ServerYamlConfChecker.load_server_yaml_conf(
        yml_dict=yaml.safe_load(GPU_CONFIG.read_text()))
    assert conf["op"]["pptsm"]["local_service_conf"]["device_type"] == 2


def test_gpu_config_asks_for_tensorrt_fp16_sized_for_the_model(model_dir) -> None:
    meta = load_meta(model_dir)
    config = load_service_config(GPU_CONFIG, http_port=None, rpc_port=None, meta=meta)
    settings = config.predictor
    assert (settings.device, settings.use_tensorrt, settings.precision) == ("gpu", True, "fp16")
    # The engine cache is the folder the GPU compose service keeps on a volume.
    compose = yaml.safe_load((CONFIG_DIR.parent / "docker-compose.yml").read_text())
    volumes = compose["services"]["pptsm-gpu"]["volumes"]
    assert settings.tensorrt_cache_dir in [volume["target"] for volume in volumes]
    batch_size = config.serving["op"]["pptsm"]["batch_size"]
    dense_views = meta.preprocess.dense_clips * meta.preprocess.dense_crops
    # The engine's dynamic batch range is [1, max_batch_size]: a lone uniform request is 1 view,
    # a full batch of dense requests is batch_size x dense views.
    assert settings.max_batch_size == batch_size * dense_views
    assert config.serving["worker_num"] >= batch_size, "auto-batching could never fill a batch"
    assert config.limits == load_service_config(
        CONFIG_DIR / "config.yml", http_port=None, rpc_port=None, meta=meta).limits


@pytest.mark.skipif(not _has_gpu(), reason="needs a GPU and a CUDA build of Paddle")
def test_gpu_predictor_agrees_with_the_cpu(model_dir) -> None:
    meta = load_meta(model_dir)
    settings = load_service_config(GPU_CONFIG, http_port=None, rpc_port=None,
                                   meta=meta).predictor
    batch = np.random.RandomState(0).standard_normal(
        (3, *meta.inference.input_shape[1:])).astype(np.float32)
    on_gpu = Predictor(model_dir, meta, settings).predict(batch)
    on_cpu = Predictor(model_dir, meta, PredictorSettings()).predict(batch)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=FP16_LOGIT_TOLERANCE)
    assert (on_gpu.argmax(axis=1) == on_cpu.argmax(axis=1)).all()
