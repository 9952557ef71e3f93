"""int8 on CPU: models made by serving.tools.quantize run as int8 (not silently as fp32) and agree
with the fp32 model; precision and program must match. The comparison's command line
(`python -m serving.tools.precision_check`) for int8 and bf16. (bf16 itself is covered in
test_predictor.py: it runs close to fp32 or is refused with the reason.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest

from serving.core.metadata import load_meta
from serving.tools.offline import OfflinePredictor
from serving.tools.precision_check import compare, labelled_inputs, main, spread_pick
from serving.core.predictor import INT8_SOURCE_KEY, Predictor, PredictorError, PredictorSettings
from serving.tools.quantize import QuantizeError, quantize_model
from tests.service_client import tiny_model_dir
from tests.serving_helpers import TINY_LABELS, export_tiny_model, write_clip_list

CLIPS = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def clip_list(tmp_path_factory) -> Path:
    return write_clip_list(tmp_path_factory.mktemp("precision_clips"), CLIPS)


@pytest.fixture(scope="module")
def int8_dir(model_dir: Path, clip_list: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    quantize_model(model_dir, out, calibration_list=clip_list, clips=4, check_list=clip_list,
                   check_clips=CLIPS)
    return out


def _probe(model_dir: Path) -> np.ndarray:
    shape = load_meta(model_dir).inference.input_shape[1:]
    return np.random.RandomState(0).standard_normal((2, *shape)).astype("float32")


def test_int8_precision_needs_a_quantized_model(model_dir: Path) -> None:
    with pytest.raises(PredictorError, match="holds an fp32 program.*serving.tools.quantize"):
        Predictor.from_model_dir(model_dir, PredictorSettings(precision="int8"))


def test_quantized_model_is_a_complete_model_folder(int8_dir: Path, model_dir: Path,
                                                    clip_list: Path) -> None:
    meta = load_meta(int8_dir)
    assert meta.name == "tiny-int8" and meta.labels == TINY_LABELS
    assert meta.source[INT8_SOURCE_KEY]["calibration_clips"] == 4
    assert meta.evaluation["int8_vs_fp32"]["clips"] == CLIPS
    assert (int8_dir / "label_list.txt").read_text() == (model_dir / "label_list.txt").read_text()
    assert (int8_dir / "serving_server" / "serving_server_conf.prototxt").is_file()
    assert not (int8_dir.parent / f".{int8_dir.name}.quantize-tmp").exists()
    with pytest.raises(QuantizeError, match="already quantised"):
        quantize_model(int8_dir, int8_dir.parent / "again", calibration_list=clip_list)


def test_int8_runs_int8_kernels_and_agrees_with_fp32(int8_dir: Path, model_dir: Path,
                                                      clip_list: Path) -> None:
    fp32 = Predictor.from_model_dir(model_dir)
    int8 = Predictor.from_model_dir(int8_dir, PredictorSettings(precision="int8"))
    probe = _probe(model_dir)
    fp32_out, int8_out = fp32.predict(probe), int8.predict(probe)
    assert np.isfinite(int8_out).all() and int8_out.shape == fp32_out.shape
    assert not np.allclose(int8_out, fp32_out, atol=1e-4)  # quantised arithmetic really ran
    inputs = list(labelled_inputs(clip_list, load_meta(model_dir).preprocess, count=CLIPS))
    agreement = compare(fp32, int8, inputs)
    assert agreement.clips == CLIPS
    assert agreement.top1_agreement == 1.0
    assert agreement.max_abs_diff > 0
    assert agreement.reference_ms > 0 and agreement.candidate_ms > 0
    assert agreement.speedup == pytest.approx(agreement.reference_ms / agreement.candidate_ms)


def test_int8_keeps_the_inference_dropout_scale(tmp_path_factory, calibrate_bn,
                                                 clip_list: Path) -> None:
    """Paddle's int8 passes lost the (1 - p) factor of an inference dropout
    (`downscale_in_infer`, here p = 0.5) as its bf16 passes did: every logit doubled."""
    fp32_dir = tmp_path_factory.getbasetemp() / "tiny_dropout_half_pdmodel"
    export_tiny_model(fp32_dir, fmt="pdmodel", calibrate_bn=calibrate_bn, dropout=0.5)
    int8_dir = tmp_path_factory.mktemp("int8_dropout") / "tiny-int8"
    quantize_model(fp32_dir, int8_dir, calibration_list=clip_list, clips=4)
    probe = _probe(fp32_dir)
    fp32_out = Predictor.from_model_dir(fp32_dir).predict(probe)
    int8_out = Predictor.from_model_dir(int8_dir, PredictorSettings(precision="int8")).predict(probe)
    assert 0.7 < np.linalg.norm(int8_out) / np.linalg.norm(fp32_out) < 1.4


def test_precision_check_command_compares_int8(int8_dir: Path, model_dir: Path,
                                               clip_list: Path, capsys) -> None:
    code = main(["--model-dir", str(model_dir), "--precision", "int8", "--candidate-dir",
                 str(int8_dir), "--list", str(clip_list), "--clips", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "int8 vs fp32 on 3 clips: top-1 agreement 100.0%" in out
    assert "per clip (median)" in out


def test_precision_check_command_for_bf16_runs_or_names_the_missing_cpu_support(
        model_dir: Path, clip_list: Path, capsys) -> None:
    code = main(["--model-dir", str(model_dir), "--precision", "bf16", "--list",
                 str(clip_list), "--clips", "2"])
    captured = capsys.readouterr()
    if paddle.base.core.supports_bfloat16():
        assert code == 0 and "bf16 vs fp32 on 2 clips: top-1 agreement" in captured.out
    else:
        assert code == 1 and "no bfloat16 support" in captured.err


def test_precision_check_command_reports_bad_input_without_a_traceback(
        model_dir: Path, int8_dir: Path, clip_list: Path, tmp_path: Path, capsys) -> None:
    # int8 without a quantised copy next to the model
    assert main(["--model-dir", str(model_dir), "--precision", "int8",
                 "--list", str(clip_list)]) == 1
    assert f"{model_dir.name}-int8" in capsys.readouterr().err
    # a clip in the list that is not a video: the error names it
    (tmp_path / "notes.mp4").write_text("not a video\n" * 100)
    bad_list = tmp_path / "bad.list"
    bad_list.write_text("notes.mp4 0\n")
    assert main(["--model-dir", str(model_dir), "--precision", "int8", "--candidate-dir",
                 str(int8_dir), "--list", str(bad_list)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "notes.mp4" in err and "Traceback" not in err


def test_int8_model_refuses_fp32_and_serves_offline(int8_dir: Path, clip_list: Path) -> None:
    with pytest.raises(PredictorError, match="int8 \\(quantized\\) program"):
        Predictor.from_model_dir(int8_dir)
    offline = OfflinePredictor(int8_dir, PredictorSettings(precision="int8"))
    prediction = offline.classify((clip_list.parent / "clip0.mp4").read_bytes(), topk=2)
    assert [c.label for c in prediction.ranked][0] in TINY_LABELS


def test_spread_pick_covers_the_whole_list() -> None:
    assert spread_pick(list(range(10)), 4) == [0, 2, 5, 7]
    assert spread_pick([1, 2], 5) == [1, 2]
