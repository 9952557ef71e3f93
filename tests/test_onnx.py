"""ONNX export (train/onnx_export.py): every model family's `model.onnx` must match Paddle
Inference in ONNX Runtime, and the ONNX tools must coexist with Paddle Serving's protobuf 3.20.

The ONNX tools are optional: without them these tests skip (run them with an environment that
has `requirements/onnx.txt` installed, e.g. `.venv-onnx/bin/python -m pytest tests/test_onnx.py`),
and one test checks instead that the exporter says how to install them.

Small inputs (8 x 64 x 64, 4 classes) with calibrated BatchNorm statistics, so every layer's
output is at unit scale and the comparison means something. Cost: ~60 s on 2 cores.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest

from serving.metadata import PreprocessSpec, load_meta
from serving.predictor import Predictor, PredictorSettings
from train.export import export_model
from train.models import build_model
from train.onnx_export import (
    ONNX_FILENAME,
    OnnxExportError,
    export_onnx,
    onnx_session,
    program_leaky_relu_slopes,
)

ONNX_TOOLS = ("paddle2onnx", "onnx", "onnxruntime")
HAVE_ONNX_TOOLS = all(importlib.util.find_spec(name) for name in ONNX_TOOLS)
needs_onnx_tools = pytest.mark.skipif(
    not HAVE_ONNX_TOOLS, reason="ONNX tools not installed: pip install -r requirements/onnx.txt "
                                "(or run these tests with .venv-onnx/bin/python)")
TOLERANCE = 1e-4
SPEC = PreprocessSpec(num_seg=8, scale_size=73, crop_size=64)
SAMPLE_SHAPE = (8, 3, 64, 64)
# family -> (builder, extra builder arguments, export format)
FAMILIES = {
    "resnet": ("pptsm_resnet50", {}, "auto"),  # 51 leaky_relu ops
    "mobilenet_v2": ("pptsm_mobilenet_v2", {}, "auto"),
    "mobilenet_v3": ("pptsm_mobilenet_v3_large", {}, "auto"),
    "pptsmv2_lta": ("pptsm_v2_lcnet", {"width_mult": 0.25, "use_temporal_att": True}, "auto"),
    "pptsmv2_lta_pir_json": ("pptsm_v2_lcnet", {"width_mult": 0.25, "use_temporal_att": True},
                             "json"),
}


def exported_family(family: str, folder: Path, calibrate_bn: Callable) -> Path:
    builder, kwargs, fmt = FAMILIES[family]
    paddle.seed(0)
    model = build_model(builder, num_classes=4, num_seg=8, **kwargs)
    clips = np.random.RandomState(1).standard_normal((2, *SAMPLE_SHAPE)).astype("float32")
    calibrate_bn(model, paddle.to_tensor(clips))
    model.eval()
    export_model(model, folder, name=family, version="test", labels=list("abcd"), preprocess=SPEC,
                 architecture=builder, fmt=fmt)
    return folder


def onnx_leaky_relu_slopes(path: Path) -> list[float]:
    import onnx

    return [attr.f for node in onnx.load(str(path)).graph.node if node.op_type == "LeakyRelu"
            for attr in node.attribute if attr.name == "alpha"]


@needs_onnx_tools
def test_onnx_tools_share_paddle_servings_protobuf() -> None:
    """One process: Paddle Serving's generated protobuf module and the ONNX tools, protobuf 3.20."""
    import google.protobuf
    import onnx
    import onnxruntime  # noqa: F401
    import paddle2onnx  # noqa: F401
    from paddle_serving_server.proto.general_model_config_pb2 import GeneralModelConfig

    assert google.protobuf.__version__.startswith("3.20.")
    config = GeneralModelConfig()
    config.feed_var.add().name = "data_batch_0"
    assert GeneralModelConfig.FromString(config.SerializeToString()).feed_var[0].name == \
        "data_batch_0"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.checker.check_model(onnx.helper.make_model(graph))


@needs_onnx_tools
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_model_matches_paddle_inference(family: str, tmp_path: Path,
                                             calibrate_bn: Callable) -> None:
    model_dir = exported_family(family, tmp_path / family, calibrate_bn)

    meta = export_onnx(model_dir)

    assert paddle.in_dynamic_mode()  # the converter must not leave the process in static mode
    assert meta.evaluation["onnx_parity_max_abs_diff"] < TOLERANCE
    assert load_meta(model_dir).evaluation["onnx_file"] == ONNX_FILENAME
    clips = np.random.RandomState(5).standard_normal((2, *SAMPLE_SHAPE)).astype("float32")
    expected = Predictor.from_model_dir(model_dir, PredictorSettings()).predict(clips)
    session = onnx_session(model_dir / ONNX_FILENAME)
    got = session.run(None, {session.get_inputs()[0].name: clips})[0]
    # The two clips get clearly different logits: the input reaches the output, so agreeing
    # to 1e-4 is a real test of every layer, not of a constant bias.
    assert float(np.abs(expected[0] - expected[1]).max()) > 1e-2
    # paddle2onnx 2.1.0 writes garbage LeakyRelu slopes for Paddle 3.3 programs; ours are repaired.
    assert onnx_leaky_relu_slopes(model_dir / ONNX_FILENAME) == program_leaky_relu_slopes(
        model_dir / meta.inference.model_file, meta.inference.format)
    assert float(np.abs(got - expected).max()) < TOLERANCE


@pytest.mark.skipif(HAVE_ONNX_TOOLS, reason="checks the message shown when the tools are absent")
def test_missing_onnx_tools_are_named_with_the_install_command(tmp_path: Path,
                                                                calibrate_bn: Callable) -> None:
    model_dir = exported_family("mobilenet_v2", tmp_path / "mv2", calibrate_bn)
    with pytest.raises(OnnxExportError, match=r"pip install -r requirements/onnx\.txt"):
        export_onnx(model_dir)
    assert not (model_dir / ONNX_FILENAME).exists()
