"""PP-TSM model zoo (ResNet50/101-vd, MobileNetV2, MobileNetV3-large) against PaddleVideo.

Checks per released variant of the registry (train/models/variants.py, PP-TSMv2 included): exact
checkpoint layout (keys, order, shapes, dtypes, parameter count) from its reference manifest. Per
PP-TSM network, with the oracle's deterministic weights loaded by name, the logits and the
intermediate activations ("probes") where the oracle has them; otherwise finite outputs and
self-consistency. Also: legacy `.pdmodel` export + oneDNN inference, and several models in one
process (PaddleVideo's fixed parameter names made that impossible).

Cost: every full-size (8x224x224) forward runs once per model; the rest uses 64x64 clips.
Run as a script (`python tests/train/test_models_zoo.py ...`), this file is the export subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import paddle
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # also when run as the export subprocess
    sys.path.insert(0, str(REPO_ROOT))

from tests.train.test_models_pptsmv2 import model_side_layout  # noqa: E402
from train.models import build_model, list_models  # noqa: E402
from train.models.checkpoint import load_state_dict_by_name  # noqa: E402
from train.models.layers import SqueezeExcite  # noqa: E402
from train.models.pptsm_mobilenet_v3 import se_hardsigmoid  # noqa: E402
from train.models.variants import Variant, get_variant, list_variants  # noqa: E402

LOGITS_ATOL = 1e-4
PROBE_RTOL = 1e-4  # relative to the activation's magnitude (max of std and mean |x|)
SMALL_SIZE = 64
NUM_FRAMES = 8

VARIANTS = list_variants()
BUILDERS = sorted({get_variant(name).builder for name in VARIANTS})
# PaddleVideo layer names (probe files) of parameterless layers that we name differently.
# "" is the whole recognizer: the MobileNet models have no head layer, PaddleVideo's is identity.
PROBE_ALIASES = {
    "backbone.pool2D_max": "backbone.max_pool",
    "backbone.pool2d_avg": "backbone.avg_pool",
    "head.avgpool2d": "head.avg_pool",
}
HEADLESS_PROBE_ALIASES = {"head": ""}


# --- helpers --------------------------------------------------------------------------------------

def state_layout(model: paddle.nn.Layer) -> list[list[Any]]:
    """[[key, shape, dtype], ...] in state_dict order, in the manifests' notation."""
    return [[key, list(value.shape), str(value.dtype).replace("paddle.", "")]
            for key, value in model.state_dict().items()]


def variant_of_manifest(model_id: str) -> Variant:
    """The first released variant whose checkpoint layout is the manifest `model_id`."""
    return next(get_variant(name) for name in VARIANTS if get_variant(name).manifest == model_id)


def load_det_model(model_id: str, manifest: dict[str, Any],
                   det_weights: ModuleType) -> paddle.nn.Layer:
    """Builds the manifest's variant, loads the oracle's deterministic weights by name (strict),
    eval mode."""
    model = variant_of_manifest(model_id).build(num_classes=manifest["output_shape"][1])
    report = load_state_dict_by_name(model, det_weights.det_state_dict(manifest), strict=True)
    assert report.complete and len(report.loaded) == manifest["n_tensors"]
    model.eval()
    return model


def run_with_activations(model: paddle.nn.Layer, clip: np.ndarray,
                         names: list[str]) -> dict[str, np.ndarray]:
    """One inference forward; returns the outputs of the named sub-layers ("" = the model)."""
    layers = dict(model.named_sublayers(include_self=True))
    missing = [name for name in names if name not in layers]
    assert not missing, f"model has no sub-layers named {missing}"
    captured: dict[str, np.ndarray] = {}
    hooks = [layers[name].register_forward_post_hook(
        lambda layer, inputs, output, name=name: captured.__setitem__(name, output.numpy()))
        for name in names]
    try:
        with paddle.no_grad():
            captured[""] = model(paddle.to_tensor(clip)).numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def probe_errors(probe: dict[str, Any], value: np.ndarray) -> dict[str, float]:
    """Deviations of `value` from a probe's statistics, each divided by the probe's magnitude."""
    scale = max(probe["std"], probe["abs_mean"])
    flat = value.astype(np.float64).ravel()
    samples = flat[probe["sample_flat_index"]]
    return {
        "mean": abs(flat.mean() - probe["mean"]) / scale,
        "std": abs(flat.std() - probe["std"]) / scale,
        "sum": abs(flat.sum() - probe["sum"]) / (scale * flat.size),
        "samples": float(np.abs(samples - np.asarray(probe["sample_values"])).max()) / scale,
    }


def small_clips(batch: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(
        (batch, NUM_FRAMES, 3, SMALL_SIZE, SMALL_SIZE)).astype(np.float32)


def calibrated_small_model(builder: str, calibrate_bn: Callable, **kwargs: Any) -> paddle.nn.Layer:
    """Seeded 5-class model whose BN statistics come from a 64x64 clip, in eval mode.

    Calibration keeps activations at unit scale through the whole network, so the output really
    depends on the input (with raw random weights the mobile nets' signal fades away).
    """
    paddle.seed(7)
    model = build_model(builder, num_classes=5, **kwargs)
    calibrate_bn(model, paddle.to_tensor(small_clips(2, seed=1)))
    model.eval()
    return model


def forward(model: paddle.nn.Layer, clip: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(clip)).numpy()


# --- registry and checkpoint layout ---------------------------------------------------------------

def test_every_released_variant_and_its_architecture_is_registered() -> None:
    assert list_models(released=True) == sorted(VARIANTS)
    assert set(BUILDERS) <= set(list_models()) - set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_paddlevideo_checkpoint_layout(name: str, load_manifest) -> None:
    """The variant's network, as a name alone builds it, loads its checkpoint's layout."""
    variant = get_variant(name)
    manifest = load_manifest(variant.manifest)
    model = build_model(name)
    layout = state_layout(model)
    assert [tuple(entry) for entry in layout] == model_side_layout(manifest)
    assert sum(int(np.prod(shape)) for _, shape, _ in layout) == manifest["n_params"]
    assert model.export_name == manifest["model_name"]
    assert [variant.num_seg, variant.num_classes] == [manifest["num_seg"],
                                                      manifest["output_shape"][1]]


@pytest.mark.parametrize("builder", BUILDERS)
def test_num_classes_sets_the_classifier_width(builder: str) -> None:
    model = build_model(builder, num_classes=7)
    classifier_bias = list(model.state_dict().items())[-1]
    assert classifier_bias[0].endswith(".bias") and classifier_bias[1].shape == [7]


# --- numbers against PaddleVideo ------------------------------------------------------------------

@pytest.mark.parametrize("model_id", ["pptsm_r50_uniform_8f", "pptsm_mv2_8f"])
def test_det_logits_and_activations_match_paddlevideo(model_id: str, reference_dir: Path,
                                                      load_manifest, det_weights) -> None:
    manifest = load_manifest(model_id)
    probes = json.loads((reference_dir / "probes" / f"{model_id}.json").read_text())["probes"]
    model = load_det_model(model_id, manifest, det_weights)
    aliases = dict(PROBE_ALIASES, **(HEADLESS_PROBE_ALIASES if model.head is None else {}))
    names = [aliases.get(probe["name"], probe["name"]) for probe in probes]

    activations = run_with_activations(
        model, det_weights.det_input(tuple(manifest["input_shape"])), [n for n in names if n])

    logits = activations[""]
    reference = np.load(reference_dir / "logits" / f"{model_id}.npy")
    max_diff = float(np.abs(logits - reference).max())
    print(f"{model_id}: max |logits - PaddleVideo| = {max_diff:.3g}")
    assert logits.shape == reference.shape and max_diff < LOGITS_ATOL
    worst: dict[str, float] = {}
    for probe, name in zip(probes, names):
        value = activations[name]
        assert list(value.shape) == probe["shape"], probe["name"]
        errors = probe_errors(probe, value)
        worst[probe["name"]] = max(errors.values())
        assert max(errors.values()) < PROBE_RTOL, (probe["name"], errors)
    print(f"{model_id}: worst relative probe error {max(worst.values()):.3g} "
          f"({max(worst, key=worst.get)}) over {len(worst)} probes")


@pytest.mark.parametrize("model_id", ["pptsm_r101_dense_8f", "pptsm_mv3_8f"])
def test_det_forward_without_reference_logits_is_finite(model_id: str, load_manifest,
                                                        det_weights) -> None:
    manifest = load_manifest(model_id)
    model = load_det_model(model_id, manifest, det_weights)
    logits = forward(model, det_weights.det_input(tuple(manifest["input_shape"])))
    assert list(logits.shape) == manifest["output_shape"]
    assert np.isfinite(logits).all() and logits.std() > 0


@pytest.mark.parametrize("builder", BUILDERS)
def test_clips_in_a_batch_are_classified_independently(builder: str, calibrate_bn) -> None:
    model = calibrated_small_model(builder, calibrate_bn)
    clips = small_clips(2, seed=2)
    batch = forward(model, clips)
    first_alone = forward(model, clips[:1])
    again = forward(model, clips[:1])
    np.testing.assert_array_equal(first_alone, again)
    np.testing.assert_allclose(batch[:1], first_alone, rtol=0, atol=1e-5)
    assert np.abs(batch[0] - batch[1]).max() > 1e-3  # the second clip is really a different input


# --- MobileNetV3 facts the oracle has no numbers for ----------------------------------------------

def test_mv3_se_gate_is_paddle_hardsigmoid() -> None:
    paddle.seed(3)
    se = SqueezeExcite(8, se_hardsigmoid)
    x = paddle.randn([2, 8, 5, 5])
    with paddle.no_grad():
        pooled = x.mean(axis=[2, 3], keepdim=True)
        pre_gate = se.conv2(paddle.nn.functional.relu(se.conv1(pooled))).numpy()
        out = se(x).numpy()
    gate = np.clip(0.2 * pre_gate + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(out, x.numpy() * gate, rtol=1e-6, atol=1e-6)


def test_mv3_dropout_scales_clip_features_by_keep_probability(calibrate_bn) -> None:
    with_dropout = calibrated_small_model("pptsm_mobilenet_v3_large", calibrate_bn, dropout=0.2)
    without = build_model("pptsm_mobilenet_v3_large", num_classes=5, dropout=0.0)
    without.set_state_dict(with_dropout.state_dict())
    without.eval()
    clip = small_clips(1, seed=4)
    bias = with_dropout.backbone.fc.bias.numpy()
    np.testing.assert_allclose(forward(with_dropout, clip) - bias,
                               0.8 * (forward(without, clip) - bias), rtol=1e-5, atol=1e-6)


def test_mv3_shifts_exactly_the_units_that_keep_shape() -> None:
    backbone = build_model("pptsm_mobilenet_v3_large").backbone
    shifting = [index for index, unit in enumerate(backbone.blocks) if unit.shift is not None]
    assert shifting == [0, 2, 4, 5, 7, 8, 9, 11, 13, 14]


# --- several models per process -------------------------------------------------------------------

@pytest.mark.parametrize("builder", ["pptsm_resnet50", "pptsm_mobilenet_v2"])
def test_two_models_in_one_process_have_independent_parameters(builder: str) -> None:
    first = build_model(builder, num_classes=3)
    second = build_model(builder, num_classes=3)
    names = [p.name for p in first.parameters()] + [p.name for p in second.parameters()]
    assert len(set(names)) == len(names)
    key, tensor = next(iter(first.state_dict().items()))
    before = second.state_dict()[key].numpy().copy()
    tensor.set_value(np.full(tensor.shape, 3.0, dtype="float32"))
    np.testing.assert_array_equal(second.state_dict()[key].numpy(), before)
    assert (first.state_dict()[key].numpy() == 3.0).all()


# --- legacy .pdmodel export + oneDNN inference ----------------------------------------------------

@pytest.mark.parametrize("builder", ["pptsm_mobilenet_v3_large", "pptsm_resnet50"])
def test_legacy_pdmodel_export_runs_with_onednn(builder: str, tmp_path: Path,
                                                calibrate_bn) -> None:
    """Serving 0.9 needs `.pdmodel`; MV3's SE multiply broke PaddleVideo's legacy export."""
    model = calibrated_small_model(builder, calibrate_bn)
    weights = tmp_path / "weights.pdparams"
    paddle.save(model.state_dict(), str(weights))
    clips = small_clips(2, seed=5)
    np.save(tmp_path / "clips.npy", clips)
    expected = forward(model, clips)
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # a comparison that can fail

    env = dict(os.environ, FLAGS_enable_pir_api="0", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, __file__, builder, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    assert (tmp_path / "export" / "ppTSM.pdmodel").is_file()
    assert not (tmp_path / "export" / "ppTSM.json").exists()
    predicted = np.load(tmp_path / "predicted.npy")
    max_diff = float(np.abs(predicted - expected).max())
    print(f"{builder}: legacy export + oneDNN vs dygraph max abs diff {max_diff:.3g}")
    assert predicted.shape == expected.shape and max_diff < LOGITS_ATOL


def export_and_predict(builder: str, workdir: Path) -> None:
    """Subprocess side (FLAGS_enable_pir_api=0 set before paddle was imported).

    Rebuilds the model, loads the weights, exports `ppTSM.pdmodel` and runs `clips.npy` through
    paddle.inference with oneDNN; writes `predicted.npy`.
    """
    from paddle import inference

    model = build_model(builder, num_classes=5)
    model.set_state_dict(paddle.load(str(workdir / "weights.pdparams")))
    model.eval()
    spec = paddle.static.InputSpec([None, NUM_FRAMES, 3, SMALL_SIZE, SMALL_SIZE], "float32",
                                   name="data_batch_0")
    prefix = workdir / "export" / model.export_name
    paddle.jit.save(paddle.jit.to_static(model, input_spec=[spec], full_graph=True), str(prefix))

    config = inference.Config(f"{prefix}.pdmodel", f"{prefix}.pdiparams")
    config.disable_gpu()
    config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(2)
    config.enable_memory_optim()
    predictor = inference.create_predictor(config)
    input_name = predictor.get_input_names()[0]
    assert input_name == "data_batch_0", input_name
    predictor.get_input_handle(input_name).copy_from_cpu(np.load(workdir / "clips.npy"))
    predictor.run()
    output = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.save(workdir / "predicted.npy", output)


if __name__ == "__main__":
    export_and_predict(sys.argv[1], Path(sys.argv[2]))
