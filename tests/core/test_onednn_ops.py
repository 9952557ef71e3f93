"""Ops kept off oneDNN (serving.core.predictor.ONEDNN_SLOW_OPS) run on Paddle's plain kernels: the
answer must not change, only the speed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.core.metadata import load_meta
from serving.core.predictor import ONEDNN_SLOW_OPS, Predictor, PredictorSettings
from serving.core.program_files import legacy_op_types
from tests.service_client import tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


def test_legacy_op_types_lists_the_networks_ops(model_dir: Path) -> None:
    ops = legacy_op_types(model_dir / load_meta(model_dir).inference.model_file)
    assert {"conv2d", "depthwise_conv2d", "elementwise_mul"} <= ops  # PP-LCNetV2's SE gates
    assert not {"feed", "fetch"} & ops


def test_excluding_slow_ops_from_onednn_keeps_the_answer(model_dir: Path) -> None:
    shape = load_meta(model_dir).inference.input_shape[1:]
    probe = np.random.RandomState(0).standard_normal((2, *shape)).astype("float32")
    default = Predictor.from_model_dir(model_dir)
    assert set(default.settings.onednn_excluded_ops) == set(ONEDNN_SLOW_OPS)
    every_op = Predictor.from_model_dir(model_dir, PredictorSettings(onednn_excluded_ops=()))
    np.testing.assert_allclose(default.predict(probe), every_op.predict(probe), atol=1e-4)
