"""PP-TSMv2: PaddleVideo compatibility (keys, logits, activations), re-parameterisation, export.

The full-size reference runs are heavy on 2 cores, so each reference model runs exactly one forward
pass (module-scoped fixture) whose output serves both the logits and the probe comparisons.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.inference as paddle_infer
import pytest

from train.models import build_model, list_models
from train.models.checkpoint import load_state_dict_by_name
from train.models.layers import (
    TemporalShift,
    TemporalShiftError,
    fuse_reparam_,
    multiply,
    sigmoid,
    unfused_parameter_names,
)
from train.models.pptsm_v2 import RepDepthwiseSeparable, scale_channels
from train.models.recognizer import Recognizer2D

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "pptsm_v2_lcnet"


@dataclass(frozen=True)
class ReferenceModel:
    builder_kwargs: dict[str, Any]
    fuse: bool  # run the fused (export) graph or the multi-branch training graph


REFERENCE_MODELS = {
    "pptsmv2_lcnet_8f": ReferenceModel({"num_seg": 8}, fuse=True),
    "pptsmv2_lcnet_16f": ReferenceModel({"num_seg": 16}, fuse=True),
    "pptsmv2_lcnet_16f_lta_dml_student": ReferenceModel(
        {"num_seg": 16, "use_temporal_att": True}, fuse=False),
}
DML_STUDENT_PREFIX = "0."  # nn.Sequential(backbone, head)[0] in PaddleVideo's student checkpoint
# PaddleVideo's MoViNetHead is the identity; our Recognizer2D has no head, so its output stands in.
PROBES_ON_MODEL_OUTPUT = {"head"}

SMALL_KWARGS = {"num_classes": 5, "num_seg": 8, "width_mult": 0.25, "use_temporal_att": True}
SMALL_INPUT_SHAPE = (2, 8, 3, 64, 64)


def close_enough(got: float, want: float) -> bool:
    return abs(got - want) <= 1e-4 * max(1.0, abs(want))


def model_side_layout(manifest: dict[str, Any]) -> list[tuple[str, list[int], str]]:
    """The manifest's state_dict entries with DML-student keys renamed to `backbone.`."""
    def rename(key: str) -> str:
        if key.startswith(DML_STUDENT_PREFIX):
            return "backbone." + key[len(DML_STUDENT_PREFIX):]
        return key
    return [(rename(key), list(shape), dtype) for key, shape, dtype in manifest["state_dict"]]


def det_model_weights(model: paddle.nn.Layer, det_weights: Any) -> dict[str, np.ndarray]:
    """The oracle's deterministic rule applied to this model's own keys (any width)."""
    return {key: det_weights.det_value(key, tensor.shape)
            for key, tensor in model.state_dict().items()}


def small_calibrated_model(det_weights: Any, calibrate_bn: Any) -> Recognizer2D:
    model = build_model(MODEL_NAME, **SMALL_KWARGS)
    load_state_dict_by_name(model, det_model_weights(model, det_weights))
    calibrate_bn(model, paddle.to_tensor(det_weights.det_input(SMALL_INPUT_SHAPE, seed=3)))
    model.eval()
    return model


# --- builder and state_dict layout ----------------------------------------------------------------

def test_builder_is_registered_and_names_the_export() -> None:
    assert MODEL_NAME in list_models()
    model = build_model(MODEL_NAME, num_classes=3)
    assert isinstance(model, Recognizer2D)
    assert model.head is None
    assert model.export_name == "ppTSMv2"


@pytest.mark.parametrize("model_id", REFERENCE_MODELS)
def test_state_dict_matches_paddlevideo_manifest(model_id: str, load_manifest: Any,
                                                 det_weights: Any) -> None:
    manifest = load_manifest(model_id)
    model = build_model(MODEL_NAME, **REFERENCE_MODELS[model_id].builder_kwargs)
    got = [(key, list(tensor.shape), str(tensor.dtype).replace("paddle.", ""))
           for key, tensor in model.state_dict().items()]
    assert got == model_side_layout(manifest)
    assert sum(int(np.prod(shape)) for _, shape, _ in got) == manifest["n_params"]
    report = load_state_dict_by_name(model, det_weights.det_state_dict(manifest), strict=True)
    assert len(report.loaded) == manifest["n_tensors"]


# --- reference parity: one forward per reference model -------------------------------------------

@dataclass
class ReferenceRun:
    model_id: str
    logits: np.ndarray
    probes: dict[str, dict[str, Any]]


def summarise(activation: np.ndarray, sample_index: list[int]) -> dict[str, Any]:
    values = activation.astype(np.float64)
    return {"shape": list(values.shape), "mean": values.mean(), "std": values.std(),
            "sum": values.sum(), "samples": values.reshape(-1)[sample_index]}


@pytest.fixture(scope="module", params=[m for m in REFERENCE_MODELS if m != "pptsmv2_lcnet_8f"])
def reference_run(request: pytest.FixtureRequest, reference_dir: Path, load_manifest: Any,
                  det_weights: Any) -> ReferenceRun:
    model_id = request.param
    spec = REFERENCE_MODELS[model_id]
    manifest = load_manifest(model_id)
    probe_file = reference_dir / "probes" / f"{model_id}.json"
    wanted = json.loads(probe_file.read_text())["probes"] if probe_file.is_file() else []

    model = build_model(MODEL_NAME, **spec.builder_kwargs)
    load_state_dict_by_name(model, det_weights.det_state_dict(manifest))  # layout auto-detected
    model.eval()
    if spec.fuse:
        fuse_reparam_(model)

    captured: dict[str, dict[str, Any]] = {}
    sublayers = dict(model.named_sublayers())
    handles = []
    for probe in wanted:
        if probe["name"] in PROBES_ON_MODEL_OUTPUT:
            continue

        def hook(layer: Any, inputs: Any, output: paddle.Tensor, probe: dict = probe) -> None:
            assert probe["name"] not in captured, f"{probe['name']} ran twice"
            captured[probe["name"]] = summarise(output.numpy(), probe["sample_flat_index"])
        handles.append(sublayers[probe["name"]].register_forward_post_hook(hook))
    clip = det_weights.det_input(tuple(manifest["input_shape"]))
    with paddle.no_grad():
        logits = model(paddle.to_tensor(clip)).numpy()
    for handle in handles:
        handle.remove()
    for probe in wanted:
        if probe["name"] in PROBES_ON_MODEL_OUTPUT:
            captured[probe["name"]] = summarise(logits, probe["sample_flat_index"])
    return ReferenceRun(model_id, logits, captured)


def test_logits_match_paddlevideo(reference_run: ReferenceRun, reference_dir: Path) -> None:
    reference_file = reference_dir / "logits" / f"{reference_run.model_id}.npy"
    if not reference_file.is_file():
        pytest.skip(f"no reference logits for {reference_run.model_id}")
    reference = np.load(reference_file)
    diff = float(np.abs(reference_run.logits - reference).max())
    print(f"{reference_run.model_id}: max abs logit diff vs PaddleVideo {diff:.2e}")
    assert reference_run.logits.shape == reference.shape
    assert diff < 1e-4


def test_activations_match_paddlevideo_probes(reference_run: ReferenceRun,
                                              reference_dir: Path) -> None:
    probe_file = reference_dir / "probes" / f"{reference_run.model_id}.json"
    if not probe_file.is_file():
        pytest.skip(f"no reference probes for {reference_run.model_id}")
    failures = []
    for probe in json.loads(probe_file.read_text())["probes"]:
        got = reference_run.probes[probe["name"]]
        if got["shape"] != probe["shape"]:
            failures.append(f"{probe['name']}: shape {got['shape']} != {probe['shape']}")
            continue
        for stat in ("mean", "std", "sum"):
            if not close_enough(got[stat], probe[stat]):
                failures.append(f"{probe['name']}.{stat}: {got[stat]:.6g} != {probe[stat]:.6g}")
        for index, value, want in zip(probe["sample_flat_index"], got["samples"],
                                      probe["sample_values"]):
            if not close_enough(value, want):
                failures.append(f"{probe['name']}[{index}]: {value:.6g} != {want:.6g}")
    assert not failures, "\n".join(failures)


# --- narrow and small variants --------------------------------------------------------------------

def test_width_mult_one_keeps_official_widths() -> None:
    assert [scale_channels(c, 1.0) for c in (32, 64, 128, 256, 512, 1024)] == [
        32, 64, 128, 256, 512, 1024]


@pytest.mark.parametrize("size", [64, 96])
def test_half_width_net_runs_on_small_clips(size: int) -> None:
    model = build_model(MODEL_NAME, num_classes=7, num_seg=8, width_mult=0.5)
    backbone = model.backbone
    assert backbone.stem[0].conv.weight.shape[0] == 16
    assert backbone.stages[3][1].pw_conv.conv.weight.shape[0] == 512
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.randn([2, 8, 3, size, size]))
    assert logits.shape == [2, 7]
    assert np.isfinite(logits.numpy()).all()


def test_shallow_net_keeps_the_first_blocks_under_their_official_names() -> None:
    full = build_model(MODEL_NAME, num_classes=5, num_seg=8, width_mult=0.25)
    shallow = build_model(MODEL_NAME, num_classes=5, num_seg=8, width_mult=0.25,
                          stage_blocks=[1, 1, 2, 1])
    assert [len(stage) for stage in shallow.backbone.stages] == [1, 1, 2, 1]
    full_shapes = {name: value.shape for name, value in full.state_dict().items()}
    shallow_shapes = {name: value.shape for name, value in shallow.state_dict().items()}
    assert shallow_shapes.items() <= full_shapes.items()
    dropped = set(full_shapes) - set(shallow_shapes)
    assert dropped and all(name.startswith(("backbone.stages.0.1.", "backbone.stages.1.1.",
                                            "backbone.stages.2.2.", "backbone.stages.2.3.",
                                            "backbone.stages.2.4.", "backbone.stages.2.5.",
                                            "backbone.stages.3.1.")) for name in dropped)
    shallow.eval()
    with paddle.no_grad():
        logits = shallow(paddle.randn([2, 8, 3, 48, 48]))
    assert logits.shape == [2, 5] and np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("blocks", [[1, 1, 1], [0, 1, 1, 1], [1, 1, 7, 1], [1, 1.5, 1, 1],
                                    [True, 1, 1, 1]])
def test_stage_blocks_outside_the_official_counts_are_refused(blocks: list) -> None:
    with pytest.raises(ValueError, match=r"stage_blocks must be 4 integers.*\[2, 2, 6, 2\]"):
        build_model(MODEL_NAME, num_classes=5, width_mult=0.25, stage_blocks=blocks)


def test_too_narrow_net_for_the_shift_is_refused() -> None:
    # stages.2 gets 8 channels; 8 * 1/16 rounds down to no shifted channel at all
    with pytest.raises(TemporalShiftError, match="moves no channel"):
        build_model(MODEL_NAME, num_seg=16, width_mult=0.03)


def test_temporal_shift_moves_one_eighth_each_way() -> None:
    clip = np.arange(2 * 8 * 16, dtype=np.float32).reshape(2 * 8, 16, 1, 1) + 1
    shifted = TemporalShift(8, 1 / 8)(paddle.to_tensor(clip)).numpy().reshape(2, 8, 16)
    frames = clip.reshape(2, 8, 16)
    np.testing.assert_array_equal(shifted[:, 1:, :2], frames[:, :-1, :2])  # from the past
    np.testing.assert_array_equal(shifted[:, 0, :2], 0)
    np.testing.assert_array_equal(shifted[:, :-1, 2:4], frames[:, 1:, 2:4])  # from the future
    np.testing.assert_array_equal(shifted[:, -1, 2:4], 0)
    np.testing.assert_array_equal(shifted[:, :, 4:], frames[:, :, 4:])


def test_dropout_scales_by_keep_probability_at_inference() -> None:
    model = build_model(MODEL_NAME, num_classes=3, width_mult=0.25, dropout=0.2)
    model.eval()
    features = paddle.ones([4, 1280, 1, 1])
    np.testing.assert_allclose(model.backbone.dropout(features).numpy(), 0.8, rtol=1e-7)


def test_graph_helpers_match_numpy_in_dygraph() -> None:
    x = np.linspace(-4, 4, 12, dtype=np.float32).reshape(3, 4)
    y = np.linspace(1, 2, 4, dtype=np.float32)
    np.testing.assert_allclose(sigmoid(paddle.to_tensor(x)).numpy(), 1 / (1 + np.exp(-x)),
                               rtol=1e-6)
    np.testing.assert_allclose(multiply(paddle.to_tensor(x), paddle.to_tensor(y)).numpy(), x * y)


# --- re-parameterisation --------------------------------------------------------------------------

def test_fused_model_matches_branch_model(det_weights: Any, calibrate_bn: Any) -> None:
    model = small_calibrated_model(det_weights, calibrate_bn)
    clip = paddle.to_tensor(det_weights.det_input(SMALL_INPUT_SHAPE, seed=5))
    other = paddle.to_tensor(det_weights.det_input(SMALL_INPUT_SHAPE, seed=6))
    with paddle.no_grad():
        branches = model(clip).numpy()
        assert np.abs(branches - model(other).numpy()).max() > 1e-2  # logits depend on the input
        assert fuse_reparam_(model) == 8
        fused = model(clip).numpy()
    rep_blocks = [layer for layer in model.sublayers() if isinstance(layer, RepDepthwiseSeparable)]
    assert len(rep_blocks) == 8 and all(block.is_fused for block in rep_blocks)
    assert fuse_reparam_(model) == 0
    diff = float(np.abs(fused - branches).max())
    print(f"fused vs branch logits: max abs diff {diff:.2e}")
    assert diff < 1e-5


def test_fused_conv_ignores_its_previous_values(det_weights: Any, calibrate_bn: Any) -> None:
    model = small_calibrated_model(det_weights, calibrate_bn)
    clip = paddle.to_tensor(det_weights.det_input(SMALL_INPUT_SHAPE, seed=5))
    with paddle.no_grad():
        branches = model(clip).numpy()
        for block in model.sublayers():
            if isinstance(block, RepDepthwiseSeparable):
                block.dw_conv.weight.set_value(np.full(block.dw_conv.weight.shape, 9, "float32"))
        fuse_reparam_(model)
        np.testing.assert_allclose(model(clip).numpy(), branches, atol=1e-5)


def test_training_graph_never_uses_the_fused_conv() -> None:
    model = build_model(MODEL_NAME, num_classes=3, num_seg=8, width_mult=0.25)
    model.train()
    model(paddle.randn([1, 8, 3, 64, 64])).sum().backward()
    block = model.backbone.stages[2][1]
    assert block.dw_conv.weight.grad is None
    assert all(branch.conv.weight.grad is not None for branch in block.dw_conv_list)
    placeholders = unfused_parameter_names(model)
    assert len(placeholders) == 16
    assert "backbone.stages.2.1.dw_conv.weight" in placeholders
    fuse_reparam_(model)
    assert unfused_parameter_names(model) == set()


# --- static export (legacy .pdmodel and PIR .json) + paddle.inference -----------------------------

EXPORT_SCRIPT = """
import json, sys
import paddle
from paddle.static import InputSpec
from train.models import build_model
from train.models.checkpoint import load_state_dict_by_name
from train.models.layers import fuse_reparam_

checkpoint, out_prefix, kwargs, frames, size = sys.argv[1:6]
model = build_model("pptsm_v2_lcnet", **json.loads(kwargs))
load_state_dict_by_name(model, checkpoint)
model.eval()
fuse_reparam_(model)
spec = InputSpec([None, int(frames), 3, int(size), int(size)], "float32", name="data_batch_0")
paddle.jit.save(paddle.jit.to_static(model, input_spec=[spec], full_graph=True), out_prefix)
"""


@dataclass
class SmallExport:
    directory: dict[str, Path]  # format -> folder holding ppTSMv2.<format> + .pdiparams
    clip: np.ndarray
    expected: np.ndarray


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory, det_weights: Any,
                 calibrate_bn: Any) -> SmallExport:
    """Exports one small calibrated PP-TSMv2 (SE + LTA + shift) in both program formats."""
    root = tmp_path_factory.mktemp("pptsmv2_export")
    model = small_calibrated_model(det_weights, calibrate_bn)
    checkpoint = root / "small.pdparams"
    paddle.save(model.state_dict(), str(checkpoint))
    clip = det_weights.det_input(SMALL_INPUT_SHAPE, seed=11)
    fuse_reparam_(model)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(clip)).numpy()

    # The PIR flag must be set before paddle is imported, hence one exporting process per format
    # (run side by side to halve the wait).
    directory = {fmt: root / fmt for fmt in ("pdmodel", "json")}
    _, frames, _, size, _ = SMALL_INPUT_SHAPE
    exporters = {
        fmt: subprocess.Popen(
            [sys.executable, "-c", EXPORT_SCRIPT, str(checkpoint), str(directory[fmt] / "ppTSMv2"),
             json.dumps(SMALL_KWARGS), str(frames), str(size)],
            env={**os.environ, "FLAGS_enable_pir_api": "0" if fmt == "pdmodel" else "1",
                 "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for fmt in directory}
    for fmt, process in exporters.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{fmt} export failed:\n{stderr[-3000:]}"
    return SmallExport(directory, clip, expected)


@pytest.mark.parametrize("fmt", ["pdmodel", "json"])
@pytest.mark.parametrize("use_mkldnn", [False, True], ids=["plain", "onednn"])
def test_exported_program_matches_dygraph(small_export: SmallExport, fmt: str,
                                          use_mkldnn: bool) -> None:
    folder = small_export.directory[fmt]
    assert sorted(p.suffix for p in folder.glob("ppTSMv2.*") if p.suffix in (".pdmodel", ".json")) \
        == [f".{fmt}"]
    config = paddle_infer.Config(str(folder / f"ppTSMv2.{fmt}"), str(folder / "ppTSMv2.pdiparams"))
    config.disable_gpu()
    config.disable_glog_info()
    if fmt == "pdmodel":
        config.enable_memory_optim()  # breaks PIR .json loading in Paddle 3.3.1 (EXPORT_FACTS.md)
    if use_mkldnn:
        config.enable_mkldnn()
    predictor = paddle_infer.create_predictor(config)
    assert predictor.get_input_names() == ["data_batch_0"]
    feed = predictor.get_input_handle("data_batch_0")
    feed.reshape(list(small_export.clip.shape))
    feed.copy_from_cpu(small_export.clip)
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    diff = float(np.abs(got - small_export.expected).max())
    print(f"{fmt} ({'oneDNN' if use_mkldnn else 'plain CPU'}): max abs diff vs dygraph {diff:.2e}")
    assert got.shape == (2, SMALL_KWARGS["num_classes"])
    assert diff < 1e-4
