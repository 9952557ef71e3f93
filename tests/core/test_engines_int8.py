"""OpenVINO int8 (`serving.tools.quantize --engine openvino`, NNCF with accuracy control) on a real
tiny export and real clips: the int8 program lands in the model folder with its agreement
recorded, runs close to fp32, and `precision: auto` serves int8 only where the CPU runs it
natively and the folder records >= 99.5% top-1 agreement; below that, quantize refuses."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from serving.core.engines.choice import MIN_AGREEMENT, candidates
from serving.core.engines.openvino import INT8_IR_FILE
from serving.core.metadata import load_meta
from serving.core.predictor import Predictor, PredictorSettings
from serving.tools.precision_check import Agreement, labelled_inputs
from serving.tools.precision_check import main as precision_check_main
from serving.tools.quantize import QuantizeError, agreement_gate, quantize_openvino
from tests.service_client import tiny_model_dir
from tests.serving_helpers import write_clip_list

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CLIPS = 6
AUTO = PredictorSettings(engine="auto", precision="auto")
# What fast_precisions() says of a CPU with int8 instructions (AVX2 or better): int8 may then be
# a candidate.
INT8_CPU = frozenset({"fp32", "int8"})


@pytest.fixture(scope="module")
def clip_list(tmp_path_factory) -> Path:
    return write_clip_list(tmp_path_factory.mktemp("openvino_clips"), CLIPS)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, calibrate_bn, clip_list: Path) -> Path:
    """A copy of the tiny fp32 folder (the shared one stays fp32-only) with OpenVINO int8."""
    folder = tmp_path_factory.mktemp("openvino_int8") / "tiny"
    shutil.copytree(tiny_model_dir(tmp_path_factory, calibrate_bn), folder)
    quantize_openvino(folder, calibration_list=clip_list, check_list=clip_list, clips=4)
    return folder


def _without_agreement(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    meta = load_meta(out)
    dataclasses.replace(meta, agreement={}).save(out)
    return out


def test_quantize_records_agreement_and_int8_runs_close_to_fp32(quantized: Path,
                                                                clip_list: Path) -> None:
    assert (quantized / INT8_IR_FILE).is_file() and (quantized / INT8_IR_FILE).with_suffix(
        ".bin").is_file()
    record = load_meta(quantized).agreement["openvino/int8"]
    assert record["clips"] == CLIPS and record["top1_agreement"] >= MIN_AGREEMENT
    assert record["tool"] == "nncf.quantize_with_accuracy_control"
    fp32 = Predictor.from_model_dir(quantized, PredictorSettings(engine="openvino"))
    int8 = Predictor.from_model_dir(quantized, PredictorSettings(engine="openvino",
                                                                 precision="int8"))
    assert (int8.input_name, int8.output_name) == (fp32.input_name, fp32.output_name)
    for item in labelled_inputs(clip_list, fp32.meta.preprocess, count=2):
        reference = fp32.predict(item.views)
        got = int8.predict(item.views)
        assert got.shape == reference.shape
        assert np.argmax(got) == np.argmax(reference)
        assert float(np.abs(got - reference).max()) < 0.25 * float(np.abs(reference).max())


def test_auto_considers_int8_only_with_a_recorded_agreement(quantized: Path,
                                                            tmp_path: Path) -> None:
    found, _ = candidates(quantized, load_meta(quantized), AUTO, INT8_CPU)
    assert "openvino/int8" in {f"{s.engine}/{s.precision}" for s in found}

    unchecked = _without_agreement(quantized, tmp_path / "unchecked")
    found, left_out = candidates(unchecked, load_meta(unchecked), AUTO, INT8_CPU)
    assert {s.precision for s in found} == {"fp32"}
    assert any(t.name == "openvino/int8" and "no recorded top-1 agreement" in t.left_out
               for t in left_out)
    # And what really runs on this machine, whatever its CPU:
    assert Predictor.from_model_dir(unchecked, AUTO).settings.precision == "fp32"

    low = load_meta(quantized)
    record = {**low.agreement["openvino/int8"], "top1_agreement": 0.99}
    found, left_out = candidates(quantized, dataclasses.replace(
        low, agreement={"openvino/int8": record}), AUTO, INT8_CPU)
    assert {s.precision for s in found} == {"fp32"}
    assert any("99.0% < 99.5%" in t.left_out for t in left_out)


def test_auto_leaves_int8_out_on_a_cpu_without_vnni(quantized: Path) -> None:
    found, left_out = candidates(quantized, load_meta(quantized), AUTO, frozenset({"fp32"}))
    assert {s.precision for s in found} == {"fp32"}
    assert any(t.name == "openvino/int8" and "native" in t.left_out for t in left_out)


def test_quantize_refuses_to_publish_below_the_agreement_threshold() -> None:
    below = Agreement(clips=200, top1_agreement=0.99, max_abs_diff=0.5, reference_accuracy=0.9,
                      candidate_accuracy=0.89, reference_ms=10.0, candidate_ms=8.0,
                      reference_classes=5)
    with pytest.raises(QuantizeError, match=r"99\.0% of 200 validation clips, below the 99\.5%"):
        agreement_gate(below)
    agreement_gate(dataclasses.replace(below, top1_agreement=0.995))


def test_precision_check_compares_openvino_int8_and_records_it(quantized: Path, clip_list: Path,
                                                               tmp_path: Path, capsys) -> None:
    folder = _without_agreement(quantized, tmp_path / "to_record")
    assert precision_check_main(["--model-dir", str(folder), "--precision", "int8", "--engine",
                                 "openvino", "--list", str(clip_list), "--clips", str(CLIPS),
                                 "--record"]) == 0
    assert "int8 vs fp32 on 6 clips" in capsys.readouterr().out
    record = load_meta(folder).agreement["openvino/int8"]
    assert record["tool"] == "serving.tools.precision_check" and record["clips"] == CLIPS
    assert (folder / INT8_IR_FILE).is_file()  # the rewritten folder keeps its programs
