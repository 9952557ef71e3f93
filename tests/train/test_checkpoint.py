"""Checkpoint reading and by-name loading, with real files written by paddle.save and by pickle."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import paddle
import pytest

from train.engine.freeze_bn import freeze_batch_norms
from train.engine.layer_modes import batch_norms, keep_in_eval_mode
from train.engine.trainer import _BackboneFreeze
from train.models import build_model
from train.models.checkpoint import (
    PARAM_NAME_TABLE_KEY,
    CheckpointError,
    classifier_keys,
    load_for_finetuning,
    load_pdparams,
    load_state_dict_by_name,
)
from train.models.layers import fuse_reparam_

SMALL = {"num_classes": 4, "num_seg": 8, "width_mult": 0.25}
PLACEHOLDERS = [f"backbone.stages.{stage}.{block}.dw_conv.{name}"
                for stage, blocks in ((2, 6), (3, 2)) for block in range(blocks)
                for name in ("weight", "bias")]


def small_model(seed: int) -> paddle.nn.Layer:
    paddle.seed(seed)
    return build_model("pptsm_v2_lcnet", **SMALL)


def randomised_state(model: paddle.nn.Layer, seed: int) -> dict[str, np.ndarray]:
    """A checkpoint whose every tensor differs from the model's (BN variances stay positive)."""
    rng = np.random.RandomState(seed)
    return {key: (rng.uniform(0.5, 1.5, tensor.shape) if key.endswith("_variance")
                  else rng.standard_normal(tensor.shape) * 0.1).astype("float32")
            for key, tensor in model.state_dict().items()}


def model_arrays(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {key: tensor.numpy() for key, tensor in model.state_dict().items()}


def write_pickle(path: Path, state: dict, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(state, protocol=protocol))
    return path


def assert_loaded(model: paddle.nn.Layer, state: dict[str, np.ndarray], prefix_from: str = "",
                  prefix_to: str = "") -> None:
    arrays = model_arrays(model)
    for key, value in state.items():
        if key.startswith(prefix_from):
            np.testing.assert_array_equal(arrays[prefix_to + key[len(prefix_from):]], value)


# --- reading files --------------------------------------------------------------------------------

def test_reads_file_written_by_paddle_save(tmp_path: Path) -> None:
    model = small_model(0)
    path = tmp_path / "model.pdparams"
    paddle.save(model.state_dict(), str(path))
    state = load_pdparams(path)
    assert list(state) == list(model.state_dict())  # bookkeeping entry dropped, order kept
    for key, value in model_arrays(model).items():
        np.testing.assert_array_equal(state[key], value)


def test_reads_plain_pickle_with_name_table(tmp_path: Path) -> None:
    state = {"backbone.fc.bias": np.arange(3, dtype="float32"),
             PARAM_NAME_TABLE_KEY: {"backbone.fc.bias": "linear_0.b_0"}}
    loaded = load_pdparams(write_pickle(tmp_path / "release.pdparams", state))
    assert list(loaded) == ["backbone.fc.bias"]
    np.testing.assert_array_equal(loaded["backbone.fc.bias"], [0, 1, 2])


def test_reads_numpy1_era_protocol2_pickle(tmp_path: Path) -> None:
    # Older releases were pickled with numpy 1, whose array module was numpy.core.multiarray.
    blob = pickle.dumps({"backbone.fc.bias": np.ones(2, "float32")}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in blob
    path = tmp_path / "old.pdparams"
    path.write_bytes(blob)
    np.testing.assert_array_equal(load_pdparams(path)["backbone.fc.bias"], [1, 1])


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_refuses_pickles_that_would_run_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_pickle(tmp_path / "evil.pdparams", {"backbone.fc.bias": _RunsCode()})
    with pytest.raises(CheckpointError, match="refusing to unpickle builtins.print"):
        load_pdparams(path)
    assert "must never run" not in capsys.readouterr().out


def test_refuses_non_array_entries(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "opt.pdparams", {"LR_Scheduler": {"last_epoch": 3}})
    with pytest.raises(CheckpointError, match="'LR_Scheduler' is a dict"):
        load_pdparams(path)


def test_missing_and_garbage_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_pdparams(tmp_path / "absent.pdparams")
    garbage = tmp_path / "garbage.pdparams"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="garbage.pdparams"):
        load_pdparams(garbage)


# --- loading by name ------------------------------------------------------------------------------

def test_plain_layout_round_trips_through_paddle_save(tmp_path: Path) -> None:
    source, target = small_model(1), small_model(2)
    path = tmp_path / "plain.pdparams"
    paddle.save(source.state_dict(), str(path))
    report = load_state_dict_by_name(target, path)
    assert report.layout == "plain" and report.complete
    assert len(report.loaded) == len(source.state_dict())
    assert_loaded(target, model_arrays(source))


def test_accepts_paddle_tensors() -> None:
    source, target = small_model(1), small_model(2)
    load_state_dict_by_name(target, source.state_dict())
    assert_loaded(target, model_arrays(source))


def test_dml_student_layout_maps_to_backbone(tmp_path: Path) -> None:
    model = small_model(0)
    state = {"0." + key[len("backbone."):]: value
             for key, value in randomised_state(model, 3).items()}
    path = write_pickle(tmp_path / "student.pdparams", state)
    report = load_state_dict_by_name(model, load_pdparams(path))
    assert report.layout == "dml_student" and report.complete and not report.ignored
    assert_loaded(model, state, "0.", "backbone.")


def test_full_dml_layout_loads_the_student_and_ignores_the_teacher(tmp_path: Path) -> None:
    model = small_model(0)
    state = {"Student.0." + key[len("backbone."):]: value
             for key, value in randomised_state(model, 4).items()}
    teacher = {"Teacher.0.conv1_1._conv.weight": np.ones((32, 3, 3, 3), "float32"),
               "Teacher.1.fc.weight": np.ones((2048, 400), "float32")}
    path = write_pickle(tmp_path / "dml.pdparams", {**teacher, **state})
    report = load_state_dict_by_name(model, path)
    assert report.layout == "dml_full" and report.complete
    assert sorted(report.ignored) == sorted(teacher)
    assert_loaded(model, state, "Student.0.", "backbone.")


def test_custom_key_map_replaces_detection() -> None:
    model = small_model(0)
    state = {"net." + key[len("backbone."):]: value
             for key, value in randomised_state(model, 5).items()}
    report = load_state_dict_by_name(model, state, key_map={"net.": "backbone."})
    assert report.layout == "custom" and report.complete
    assert_loaded(model, state, "net.", "backbone.")


def test_shape_mismatch_names_both_shapes_and_changes_nothing() -> None:
    model = small_model(0)
    before = model_arrays(model)
    state = randomised_state(model, 6)
    state["backbone.fc.weight"] = np.zeros((1280, 9), "float32")
    with pytest.raises(CheckpointError,
                       match=r"backbone\.fc\.weight: checkpoint shape \[1280, 9\] != model shape "
                             r"\[1280, 4\]"):
        load_state_dict_by_name(model, state, strict=False)
    for key, value in model_arrays(model).items():
        np.testing.assert_array_equal(value, before[key])


def test_missing_and_unexpected_keys_raise_when_strict() -> None:
    model = small_model(0)
    state = randomised_state(model, 7)
    del state["backbone.last_conv.weight"]
    state["backbone.extra.weight"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_by_name(model, state)
    message = str(caught.value)
    assert "1 missing: backbone.last_conv.weight" in message
    assert "1 unexpected: backbone.extra.weight" in message


def test_lenient_load_reports_and_loads_the_rest() -> None:
    model = small_model(0)
    state = randomised_state(model, 7)
    del state["backbone.last_conv.weight"]
    state["backbone.extra.weight"] = np.zeros(3, "float32")
    report = load_state_dict_by_name(model, state, strict=False)
    assert report.missing == ["backbone.last_conv.weight"]
    assert report.unexpected == ["backbone.extra.weight"]
    assert not report.complete
    np.testing.assert_array_equal(model.backbone.fc.weight.numpy(), state["backbone.fc.weight"])


def test_unfused_placeholders_are_not_required() -> None:
    model = small_model(0)
    state = {key: value for key, value in randomised_state(model, 8).items()
             if key not in PLACEHOLDERS}
    report = load_state_dict_by_name(model, state, strict=True)
    assert sorted(report.placeholders_absent) == sorted(PLACEHOLDERS)
    assert report.complete


def test_fused_model_recomputes_its_conv_from_loaded_branches() -> None:
    state = randomised_state(small_model(0), 9)  # its dw_conv.* values are placeholders
    clip = paddle.randn([1, 8, 3, 64, 64])

    loaded_then_fused = small_model(1)
    load_state_dict_by_name(loaded_then_fused, state)
    loaded_then_fused.eval()
    fuse_reparam_(loaded_then_fused)

    fused_then_loaded = small_model(2)
    fused_then_loaded.eval()
    fuse_reparam_(fused_then_loaded)
    load_state_dict_by_name(fused_then_loaded, state)

    fused_weight = fused_then_loaded.backbone.stages[2][0].dw_conv.weight.numpy()
    assert not np.allclose(fused_weight, state["backbone.stages.2.0.dw_conv.weight"])
    with paddle.no_grad():
        np.testing.assert_allclose(fused_then_loaded(clip).numpy(),
                                   loaded_then_fused(clip).numpy(), rtol=1e-6, atol=1e-6)


# --- fine-tuning to other classes -----------------------------------------------------------------

def _other_classes(seed: int, num_classes: int, **options) -> paddle.nn.Layer:
    paddle.seed(seed)
    return build_model("pptsm_v2_lcnet", **{**SMALL, "num_classes": num_classes, **options})


@pytest.mark.parametrize("num_classes", [3, 4])
def test_fine_tuning_loads_all_but_the_classifier(tmp_path: Path, num_classes: int) -> None:
    """From a 4-class checkpoint to 3 classes (the classifier's shape differs) or to 4 other
    classes (it fits, and is re-initialised all the same)."""
    source = small_model(0)
    state = randomised_state(source, 1)
    path = tmp_path / "trained.pdparams"
    paddle.save({key: paddle.to_tensor(value) for key, value in state.items()}, str(path))
    model = _other_classes(2, num_classes)
    before = model_arrays(model)
    report = load_for_finetuning(model, path)
    head = ["backbone.fc.weight", "backbone.fc.bias"]
    assert report.layout == "plain" and report.reinitialised == head
    assert sorted(report.loaded) == sorted(set(state) - set(head))
    assert set(report.skipped) == set(head)
    assert report.skipped["backbone.fc.weight"] == \
        "classifier (re-initialised for the new classes)"
    after = model_arrays(model)
    for key in head:
        np.testing.assert_array_equal(after[key], before[key])
    assert_loaded(model, {key: value for key, value in state.items() if key not in head})
    assert (f"loaded {len(state) - 2} tensors, re-initialised 2 (backbone.fc.weight, "
            "backbone.fc.bias)") in report.describe()


def test_fine_tuning_reads_dml_files_and_reports_what_it_skips(tmp_path: Path) -> None:
    source = small_model(0)
    state = randomised_state(source, 1)
    full = {**{f"Student.{'0' if k.startswith('backbone.') else '1'}."
               f"{k.split('.', 1)[1]}": v for k, v in state.items()},
            "Teacher.conv.weight": np.zeros((2, 2), "float32")}
    model = _other_classes(2, 6, use_temporal_att=True)
    report = load_for_finetuning(model, write_pickle(tmp_path / "dml.pdparams", full))
    assert report.layout == "dml_full"
    assert report.skipped["Teacher.conv.weight"] == "another model's tensor (DML teacher)"
    attention = [key for key in report.reinitialised if "global_attention" in key]
    assert attention and set(report.reinitialised) == {*attention, "backbone.fc.weight",
                                                       "backbone.fc.bias"}
    assert "skipped Teacher.conv.weight: another model's tensor (DML teacher)" in \
        report.describe()


def test_fine_tuning_refuses_a_checkpoint_of_another_network(tmp_path: Path) -> None:
    paddle.seed(0)
    wide = build_model("pptsm_v2_lcnet", **{**SMALL, "width_mult": 0.5})
    path = tmp_path / "wide.pdparams"
    paddle.save(wide.state_dict(), str(path))
    model = _other_classes(1, 3)
    before = model_arrays(model)
    with pytest.raises(CheckpointError, match="none of its tensors fits the model"):
        load_for_finetuning(model, path)
    for key, value in model_arrays(model).items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("name,head", [("pptsm_resnet50", "head.fc"),
                                       ("pptsm_mobilenet_v2", "backbone.out"),
                                       ("pptsm_mobilenet_v3_large", "backbone.fc"),
                                       ("pptsm_v2_lcnet", "backbone.fc")])
def test_every_family_names_its_classifier(name: str, head: str) -> None:
    model = build_model(name, num_classes=5, num_seg=8)
    assert classifier_keys(model) == [f"{head}.weight", f"{head}.bias"]


def trainable(model: paddle.nn.Layer) -> set[str]:
    return {key for key, param in model.named_parameters() if not param.stop_gradient}


def test_a_frozen_backbone_leaves_every_tensor_but_the_classifier_alone() -> None:
    """train.freeze_backbone_epochs: an optimiser step changes only the classifier; thawed,
    the BN layers frozen by train.freeze_bn stay frozen."""
    model = _other_classes(0, 3)
    bn_frozen = freeze_batch_norms(model, "partial")
    optimizer = paddle.optimizer.AdamW(learning_rate=0.1, parameters=[
        p for p in model.parameters() if not p.stop_gradient])
    trained_before = trainable(model)
    freeze = _BackboneFreeze(model, bn_frozen)
    assert freeze.set_frozen(True) == batch_norms(model)
    assert trainable(model) == {"backbone.fc.weight", "backbone.fc.bias"}
    before = model_arrays(model)
    model.train()
    keep_in_eval_mode(batch_norms(model))
    clips = paddle.to_tensor(np.random.RandomState(0).standard_normal(
        (2, 8, 3, 32, 32)).astype("float32"))
    model(clips).sum().backward()
    optimizer.step()
    changed = {key for key, value in model_arrays(model).items()
               if not np.array_equal(value, before[key])}
    assert changed == {"backbone.fc.weight", "backbone.fc.bias"}
    assert freeze.set_frozen(False) == bn_frozen
    assert trainable(model) == trained_before
