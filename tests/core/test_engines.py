"""The OpenVINO engine against Paddle Inference on real exports: the same logits (within 1e-4) for
every model family with random weights and for the reference oracle's PaddleVideo logits, the
same batching, and `engine: auto` falling back to Paddle Inference where OpenVINO cannot serve
(a PIR .json program, or OpenVINO not installed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import paddle
import pytest

from serving.core.metadata import PreprocessSpec
from serving.core.predictor import Predictor, PredictorError, PredictorSettings
from tests.serving_helpers import TINY_LABELS, export_tiny_model
from train.export import export_model, parity_bound
from train.models import build_model
from train.models.checkpoint import load_state_dict_by_name
from train.models.variants import get_variant, list_variants

pytest.importorskip("openvino")

REPO_ROOT = Path(__file__).resolve().parents[2]
LOGITS_ATOL = 1e-4
SMALL = PreprocessSpec(num_seg=8, scale_size=36, crop_size=32)
# Every network family, at 32x32 to stay cheap: ResNet-101 is ResNet-50's blocks, deeper; PP-TSMv2
# is tested with its temporal attention (the LTA), the plain one is in the references below. Mobile nets get their BN statistics calibrated (their
# signal fades otherwise); ResNets keep theirs, which calibration would blow up.
FAMILIES = {
    "pptsm_resnet50": {},
    "pptsm_mobilenet_v2": {},
    "pptsm_mobilenet_v3_large": {},
    "pptsm_v2_lcnet_lta": {"use_temporal_att": True, "width_mult": 0.5},
}
# The oracle's models that come with PaddleVideo's logits (shared/reference/logits), but
# pptsm_r50_uniform_8f: exporting ResNet-50 at 8x224x224 costs more than this file's budget, and
# OpenVINO = Paddle Inference on ResNet-50 (above) with Paddle Inference = PaddleVideo on it
# (tests/train/test_recipes.py) closes that loop.
REFERENCE_IDS = ("pptsm_mv2_8f", "pptsmv2_lcnet_16f", "pptsmv2_lcnet_16f_lta_dml_student")
OPENVINO = PredictorSettings(engine="openvino")


def _clips(shape: tuple[int, ...], count: int, seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((count, *shape)).astype(np.float32)


def _export_family(family: str, out: Path, calibrate_bn: Callable) -> Path:
    paddle.seed(0)
    builder = family.removesuffix("_lta")
    model = build_model(builder, num_classes=len(TINY_LABELS), num_seg=SMALL.num_seg,
                        **FAMILIES[family])
    model.eval()
    if "resnet" not in builder:
        calibrate_bn(model, paddle.to_tensor(_clips((SMALL.num_seg, 3, 32, 32), 2, seed=0)))
    export_model(model, out, name=family, version="test-1", labels=list(TINY_LABELS),
                 preprocess=SMALL, architecture=builder, fmt="pdmodel")
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_openvino_logits_equal_paddle_inference_for_every_family(
        family: str, tmp_path: Path, calibrate_bn: Callable) -> None:
    model_dir = _export_family(family, tmp_path / family, calibrate_bn)
    paddle_predictor = Predictor.from_model_dir(model_dir)
    openvino = Predictor.from_model_dir(model_dir, OPENVINO)
    assert (openvino.settings.engine, openvino.settings.precision) == ("openvino", "fp32")
    assert (openvino.input_name, openvino.output_name) == \
        (paddle_predictor.input_name, paddle_predictor.output_name)
    clips = _clips((SMALL.num_seg, 3, 32, 32), 3)
    expected = paddle_predictor.predict(clips)
    got = openvino.predict(clips)
    assert got.shape == expected.shape == (3, len(TINY_LABELS)) and got.dtype == np.float32
    assert np.std(expected) > 1e-2, "logits should depend on the input (calibrated BN)"
    # 1e-4, plus float32's slack on large logits (calibrated random MobileNetV3 reaches ~17).
    assert float(np.abs(got - expected).max()) < parity_bound(expected)
    # The batch dimension stays dynamic: one clip at a time gives the same rows.
    singles = np.concatenate([openvino.predict(clips[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(singles, got, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_id", REFERENCE_IDS)
def test_openvino_reproduces_paddlevideo_reference_logits(
        model_id: str, tmp_path: Path, det_weights: ModuleType, load_manifest: Callable,
        reference_dir: Path) -> None:
    manifest = load_manifest(model_id)
    variant = next(get_variant(name) for name in list_variants()
                   if get_variant(name).manifest == model_id)
    model = variant.build(num_classes=manifest["output_shape"][1])
    assert load_state_dict_by_name(model, det_weights.det_state_dict(manifest),
                                   strict=True).complete
    model.eval()
    labels = [str(index) for index in range(manifest["output_shape"][1])]
    export_model(model, tmp_path / model_id, name=model_id, version="test-1", labels=labels,
                 preprocess=variant.preprocess, architecture=variant.builder, fmt="pdmodel")
    logits = Predictor.from_model_dir(tmp_path / model_id, OPENVINO).predict(
        det_weights.det_input(tuple(manifest["input_shape"])))
    reference = np.load(reference_dir / "logits" / f"{model_id}.npy")
    assert logits.shape == reference.shape == (1, 400)
    assert float(np.abs(logits - reference).max()) < LOGITS_ATOL


@pytest.fixture(scope="module")
def json_model(tmp_path_factory, calibrate_bn) -> Path:
    path = tmp_path_factory.getbasetemp() / "tiny_json"
    export_tiny_model(path, fmt="json", calibrate_bn=calibrate_bn)
    return path


def test_explicit_openvino_refuses_a_pir_program_naming_the_fix(json_model: Path) -> None:
    with pytest.raises(PredictorError, match=r"PIR \.json.*FORMAT=pdmodel"):
        Predictor.from_model_dir(json_model, OPENVINO)


def test_auto_serves_a_pir_program_with_paddle_and_says_why(json_model: Path) -> None:
    predictor = Predictor.from_model_dir(json_model, PredictorSettings(engine="auto",
                                                                       precision="auto"))
    assert (predictor.settings.engine, predictor.settings.precision) == ("paddle", "fp32")
    assert "openvino/fp32: " in predictor.selection.summary()
    assert "PIR .json" in predictor.selection.summary()


def test_auto_times_both_engines_and_keeps_one(tmp_path_factory, calibrate_bn) -> None:
    model_dir = tmp_path_factory.getbasetemp() / "tiny_pdmodel"
    export_tiny_model(model_dir, fmt="pdmodel", calibrate_bn=calibrate_bn)
    predictor = Predictor.from_model_dir(model_dir, PredictorSettings(engine="auto"))
    timed = {trial.name: trial.ms for trial in predictor.selection.trials if trial.ms is not None}
    assert set(timed) == {"paddle/fp32", "openvino/fp32"}
    chosen = f"{predictor.settings.engine}/{predictor.settings.precision}"
    assert timed[chosen] == min(timed.values())
    assert chosen in predictor.selection.summary()
    shape = tuple(predictor.meta.inference.input_shape[1:])
    assert predictor.predict(_clips(shape, 2)).shape == (2, len(TINY_LABELS))


# Run in a child interpreter whose sitecustomize makes `import openvino` fail, as on a machine
# (the GPU image) without it.
_BLOCK_OPENVINO = '''
import importlib.abc, sys
class _NoOpenVINO(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino' (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoOpenVINO())
'''
_SERVE_AUTO = '''
import json, sys
from serving.core.predictor import Predictor, PredictorError, PredictorSettings
auto = Predictor.from_model_dir(sys.argv[1], PredictorSettings(engine="auto", precision="auto"))
try:
    Predictor.from_model_dir(sys.argv[1], PredictorSettings(engine="openvino"))
    refused = ""
except PredictorError as exc:
    refused = str(exc)
print(json.dumps({"engine": auto.settings.engine, "precision": auto.settings.precision,
                  "summary": auto.selection.summary(), "refused": refused}))
'''


def test_auto_falls_back_to_paddle_where_openvino_is_not_installed(
        tmp_path: Path, tmp_path_factory, calibrate_bn) -> None:
    model_dir = tmp_path_factory.getbasetemp() / "tiny_pdmodel"
    export_tiny_model(model_dir, fmt="pdmodel", calibrate_bn=calibrate_bn)
    (tmp_path / "sitecustomize.py").write_text(_BLOCK_OPENVINO)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    done = subprocess.run([sys.executable, "-c", _SERVE_AUTO, str(model_dir)], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["engine"], result["precision"]) == ("paddle", "fp32")
    assert "OpenVINO is not installed" in result["summary"]
    assert "engine openvino: OpenVINO is not installed" in result["refused"]
