"""The official recipes under train/configs/pptsm/ and the export of official checkpoints.

Every reference manifest names the PaddleVideo config it was made from; the recipe with the same
path under train/configs/ must build exactly that checkpoint layout and preprocess with the same
frame count. Official checkpoints are simulated by pickles in PaddleVideo's `.pdparams` layout
(including the `StructuredToParameterName@@` entry) holding the oracle's deterministic weights;
exported with `python -m train.export`, Paddle Inference must reproduce the reference logits.

Cost: building the eight full-size models (~10 s), two PP-TSMv2 16f exports (~15 s each) and one
ResNet50 export (~20 s) on 2 cores.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from serving.core.metadata import load_meta
from serving.core.predictor import Predictor, PredictorSettings
from tests.train.test_models_pptsmv2 import model_side_layout
from tests.train.test_models_zoo import state_layout
from train import export
from serving.core.metadata import PreprocessSpec
from train.config import (
    AmpSettings,
    ConfigError,
    DataConfig,
    ExportConfig,
    ModelConfig,
    OptimizerConfig,
    Recipe,
    TrainConfig,
    load_config,
)
from train.data.train_transforms import TrainAugment
from serving.core.list_file import read_label_list
from train.models.checkpoint import PARAM_NAME_TABLE_KEY
from train.recipe import build_model_from_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = REPO_ROOT / "train" / "configs"
PADDLEVIDEO_CONFIG_PREFIX = "configs/recognition/"
SHIPPED_LABELS = REPO_ROOT / "train" / "labels" / "kinetics400_label_list.txt"
LOGITS_ATOL = 1e-4
MANIFEST_IDS = ("pptsm_r50_uniform_8f", "pptsm_r101_dense_8f", "pptsm_mv2_8f", "pptsm_mv3_8f",
                "pptsmv2_lcnet_8f", "pptsmv2_lcnet_16f", "pptsmv2_lcnet_16f_lta_dml_student")
# Recipes without a manifest of their own, and the manifest of the same network.
SAME_NETWORK_AS = {"pptsm/pptsm_k400_frames_dense.yaml": "pptsm_r50_uniform_8f",
                   "pptsm/pptsm_k400_frames_uniform_kd.yaml": "pptsm_r50_uniform_8f",
                   "pptsm/pptsm_k400_videos_uniform.yaml": "pptsm_r50_uniform_8f",
                   "pptsm/v2/pptsm_lcnet_k400_8frames_uniform_dml_distillation.yaml":
                       "pptsmv2_lcnet_8f"}


def recipe_for(manifest: dict[str, Any]) -> Path:
    """train/configs/<path of the manifest's PaddleVideo config below configs/recognition/>."""
    config = manifest["config"]
    assert config.startswith(PADDLEVIDEO_CONFIG_PREFIX), config
    return CONFIG_ROOT / config[len(PADDLEVIDEO_CONFIG_PREFIX):]


def recipe_cases() -> list[tuple[str, str]]:
    """(manifest id, recipe relative to train/configs or '' for the manifest's own config)."""
    return ([(model_id, "") for model_id in MANIFEST_IDS]
            + [(model_id, recipe) for recipe, model_id in SAME_NETWORK_AS.items()])


def write_paddlevideo_pdparams(path: Path, state: dict[str, np.ndarray]) -> Path:
    """A `.pdparams` as `paddle.save(model.state_dict())` writes it inside PaddleVideo."""
    table = {key: f"param_{index}" for index, key in enumerate(state)}
    path.write_bytes(pickle.dumps({**state, PARAM_NAME_TABLE_KEY: table}, protocol=4))
    return path


# --- recipes --------------------------------------------------------------------------------------

def test_every_official_recipe_is_checked(load_manifest: Callable) -> None:
    """Each recipe under pptsm/ is one a manifest names, or one of SAME_NETWORK_AS."""
    checked = {str(recipe_for(load_manifest(model_id)).relative_to(CONFIG_ROOT))
               for model_id in MANIFEST_IDS} | set(SAME_NETWORK_AS)
    recipes = {str(path.relative_to(CONFIG_ROOT))
               for path in (CONFIG_ROOT / "pptsm").rglob("*.yaml")}
    assert recipes == checked


@pytest.mark.parametrize("model_id,recipe", recipe_cases())
def test_recipe_builds_the_official_checkpoint_layout(model_id: str, recipe: str,
                                                      load_manifest: Callable) -> None:
    manifest = load_manifest(model_id)
    path = CONFIG_ROOT / recipe if recipe else recipe_for(manifest)
    cfg = load_config(path)
    labels = read_label_list(export.label_list_path(cfg))
    model = build_model_from_config(cfg, num_classes=len(labels))
    assert [tuple(entry) for entry in state_layout(model)] == model_side_layout(manifest)
    assert model.export_name == manifest["model_name"]
    spec = cfg.preprocess
    assert spec.num_seg == manifest["num_seg"] == cfg.model.options["num_seg"]
    assert (spec.scale_size, spec.crop_size) == (256, manifest["input_shape"][-1])
    assert len(labels) == manifest["output_shape"][1]


def test_shipped_label_list_is_the_kinetics400_list(reference_dir: Path) -> None:
    shipped = read_label_list(SHIPPED_LABELS)
    assert shipped == read_label_list(reference_dir / "kinetics400_label_list.txt")
    assert len(shipped) == 400 and shipped[0] == "abseiling"


def test_dense_recipes_preprocess_ten_clips_of_three_crops() -> None:
    for name in ("pptsm_k400_frames_dense.yaml", "pptsm_k400_frames_dense_r101.yaml"):
        spec = load_config(CONFIG_ROOT / "pptsm" / name).preprocess
        assert (spec.sampling, spec.dense_clips, spec.dense_crops, spec.dense_span) == \
            ("dense", 10, 3, 64)


# --- official checkpoint export -------------------------------------------------------------------

def export_official(model_id: str, tmp_path: Path, det_weights: ModuleType,
                    load_manifest: Callable, reference_dir: Path) -> tuple[np.ndarray, Path]:
    """Exports a det-weight checkpoint of `model_id` with the CLI; returns (its output on the
    oracle's input, the model directory)."""
    manifest = load_manifest(model_id)
    ckpt = write_paddlevideo_pdparams(tmp_path / "official.pdparams",
                                      det_weights.det_state_dict(manifest))
    name = "official_" + model_id
    code = export.main(["-c", str(recipe_for(manifest)), "-k", str(ckpt), "-n", name,
                        "--out", str(tmp_path / "model_repo")])
    assert code == 0
    model_dir = tmp_path / "model_repo" / name
    meta = load_meta(model_dir)
    assert list(meta.labels) == read_label_list(reference_dir / "kinetics400_label_list.txt")
    assert (meta.preprocess.num_seg, meta.preprocess.scale_size, meta.preprocess.crop_size) == \
        (manifest["num_seg"], 256, 224)
    assert meta.inference.format == "pdmodel"  # oneDNN-safe for every family (EXPORT_FACTS.md)
    predictor = Predictor.from_model_dir(model_dir, PredictorSettings())
    clip = det_weights.det_input(tuple(manifest["input_shape"]))
    return predictor.predict(clip), model_dir


@pytest.mark.parametrize("model_id", ["pptsmv2_lcnet_16f", "pptsmv2_lcnet_16f_lta_dml_student",
                                      "pptsm_r50_uniform_8f"])
def test_official_checkpoint_exports_and_reproduces_reference_logits(
        model_id: str, tmp_path: Path, det_weights: ModuleType, load_manifest: Callable,
        reference_dir: Path) -> None:
    logits, model_dir = export_official(model_id, tmp_path, det_weights, load_manifest,
                                        reference_dir)
    reference = np.load(reference_dir / "logits" / f"{model_id}.npy")
    assert logits.shape == reference.shape == (1, 400)
    assert float(np.abs(logits - reference).max()) < LOGITS_ATOL
    assert (model_dir / "serving_server" / "serving_server_conf.prototxt").is_file()
    assert (model_dir / "label_list.txt").read_text().splitlines()[399] == "399 zumba"


def test_export_parity_bound_grows_with_the_size_of_the_logits() -> None:
    """Small logits are held to 1e-4; a trained model's large ones get float32's relative slack."""
    assert export.parity_bound(np.zeros((2, 8), dtype=np.float32)) == pytest.approx(export.PARITY_ATOL)
    assert export.parity_bound(np.array([[-70.0, 3.0]])) == pytest.approx(
        export.PARITY_ATOL + 70 * export.PARITY_RTOL)


# --- the typed recipe: every key checked once, at load ---------------------------------------------

RECIPES = sorted(path for path in CONFIG_ROOT.rglob("*.yaml") if "data" not in path.parts)
DEMO = CONFIG_ROOT / "demo" / "pptsmv2_lcnet_synthetic_demo.yaml"


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_every_recipe_loads_into_typed_sections(path: Path) -> None:
    """And its model section is recorded as written (what the exporter puts in model_meta.json)."""
    recipe = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert isinstance(recipe, Recipe) and recipe.source == str(path)
    assert recipe.model.as_dict() == raw["model"]
    assert recipe.train.epochs == raw["train"]["epochs"]
    assert recipe.preprocess.num_seg == raw["preprocess"]["num_seg"]


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", "train.epoch: unknown key; did you mean train.epochs?"),
    ("traing.epochs=3", "traing: unknown key; did you mean train?"),
    ("model.num_segs=8", "model.num_segs: unknown key; did you mean model.num_seg?"),
    ("optimizer.warmup_epoch=2", "did you mean optimizer.warmup_epochs?"),
    ("data.formt=video", "data.formt: unknown key; did you mean data.format?"),
    ("distillation.mode=kd", "distillation.teacher: missing"),
])
def test_unknown_keys_from_overrides_are_refused_with_the_closest_known_one(
        override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(DEMO, [override])


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    text = DEMO.read_text()
    cases = [(text.replace("\ntrain:", "\ntrian:", 1), "trian: unknown key; did you mean train?"),
             (text.replace("  epochs: 20", "  epoch: 20", 1),
              "train.epoch: unknown key; did you mean train.epochs?"),
             (text.replace("  flip: false", "  flips: false", 1),
              "augment.flips: unknown key; did you mean augment.flip?")]
    for index, (changed, message) in enumerate(cases):
        path = tmp_path / f"recipe{index}.yaml"
        path.write_text(changed)
        with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
            load_config(path)


@pytest.mark.parametrize("override,message", [
    ("train.epochs=three", "train.epochs: expected a positive integer, got 'three'"),
    ("train.batch_size=true", "train.batch_size: expected a positive integer, got True"),
    ("train.amp.enabled=1", "train.amp.enabled: expected true or false, got 1"),
    ("optimizer.lr=[0.1]", "optimizer.lr: expected a number >= 0, got [0.1]"),
    ("model.num_seg=four", "model.num_seg: expected an integer, got 'four'"),
    ("preprocess.mean=[0.5, 0.5]", "preprocess.mean: expected 3 values"),
    ("optimizer.name=sgd", "optimizer.name: one of momentum, adamw, got 'sgd'"),
    ("data.format=frame", "data.format: one of video, frames, got 'frame' (did you mean frames?)"),
    ("model.name=pptsm_resnet5", "model.name: unknown model 'pptsm_resnet5'; did you mean "
                                 "pptsm_resnet50?"),
    ("preprocess.num_seg=8", "preprocess.num_seg (8) must equal model.num_seg (4)"),
    ("optimizer.schedule=piecewise", "optimizer.boundaries_epochs: required by schedule piecewise"),
])
def test_bad_values_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(DEMO, [override])


def test_defaults_come_from_the_section_dataclasses(tmp_path: Path) -> None:
    """A recipe of the required keys alone gets every other value from the dataclasses."""
    path = tmp_path / "minimal.yaml"
    path.write_text("model: {name: pptsm_mobilenet_v2}\npreprocess: {num_seg: 8}\n"
                    "train: {epochs: 1}\n")
    recipe = load_config(path)
    assert (recipe.data, recipe.optimizer, recipe.export) == (DataConfig(), OptimizerConfig(),
                                                              ExportConfig())
    assert recipe.train == TrainConfig(epochs=1) and recipe.train.amp == AmpSettings()
    assert recipe.augment == TrainAugment() and recipe.preprocess == PreprocessSpec(num_seg=8)
    assert recipe.model == ModelConfig(name="pptsm_mobilenet_v2") and recipe.distillation is None
    assert label_list_path_of(recipe) == Path(".") / DataConfig().label_list


def label_list_path_of(recipe: Recipe) -> Path:
    return export.label_list_path(recipe)


def test_the_trainer_refuses_an_unknown_override_before_any_work(tmp_path: Path, capsys) -> None:
    from train import train as train_cli

    out = tmp_path / "run"
    code = train_cli.main(["-c", str(DEMO), "-o", f"train.output_dir={out}", "-o", "train.epoch=3"])
    assert code == 2 and not out.exists()
    assert "train.epoch: unknown key; did you mean train.epochs?" in capsys.readouterr().err


# --- your own classes: counts from the label list, fine-tuning recipes ------------------------------

FINETUNE = {"finetune/pptsmv2_lcnet_16f_finetune.yaml": ("pptsmv2_lcnet_16f_lta_dml_student",
                                                         "backbone.fc"),
            "finetune/pptsm_r50_8f_finetune.yaml": ("pptsm_r50_uniform_8f", "head.fc")}


def test_a_recipe_class_count_that_disagrees_with_the_labels_is_refused() -> None:
    from train.config import class_count

    labels = ["a", "b", "c"]
    assert class_count(load_config(DEMO), labels, "data/mine/label_list.txt") == 3
    assert class_count(load_config(DEMO, ["model.num_classes=3"]), labels, "x") == 3
    with pytest.raises(ConfigError, match=re.escape(
            "model.num_classes (8) disagrees with the 3 classes of data/mine/label_list.txt")):
        class_count(load_config(DEMO, ["model.num_classes=8"]), labels,
                    "data/mine/label_list.txt")


@pytest.mark.parametrize("overrides,message", [
    (["train.finetune_from=output/pptsmv2_demo/best.pdparams"],
     "train.output_dir: output/pptsmv2_demo holds the checkpoint to fine-tune from"),
    (["train.finetune_from=a.pdparams", "train.pretrained=b.pdparams"],
     "train.pretrained: b.pdparams and finetune_from: a.pdparams both start the backbone"),
    (["train.freeze_backbone_epochs=20"],
     "train.freeze_backbone_epochs (20) must be fewer than epochs (20)"),
])
def test_fine_tuning_settings_are_checked_at_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(DEMO, overrides)


@pytest.mark.parametrize("recipe", sorted(FINETUNE))
def test_fine_tuning_recipes_start_from_the_official_checkpoint(
        recipe: str, tmp_path: Path, det_weights: ModuleType, load_manifest: Callable) -> None:
    """Each fine-tuning recipe's network, built for 5 classes of a `make dataset` folder, takes
    every tensor of the released checkpoint it names (PaddleVideo's layout) but the
    classifier."""
    from train.models.checkpoint import load_for_finetuning

    model_id, head = FINETUNE[recipe]
    cfg = load_config(CONFIG_ROOT / recipe)
    assert (cfg.data.format, cfg.data.label_list, cfg.export.labels) == ("video",
                                                                         "label_list.txt", None)
    assert cfg.train.pretrained is None and cfg.train.freeze_backbone_epochs > 0
    model = build_model_from_config(cfg, num_classes=5)
    ckpt = write_paddlevideo_pdparams(tmp_path / "official.pdparams",
                                      det_weights.det_state_dict(load_manifest(model_id)))
    report = load_for_finetuning(model, ckpt)
    assert report.reinitialised == [f"{head}.weight", f"{head}.bias"]
    assert set(report.skipped) == {f"{head}.weight", f"{head}.bias"}


def test_the_trainer_names_a_missing_dataset_in_one_line(tmp_path: Path, capsys) -> None:
    """`make train DATA=data/mine` before `make dataset`: an error line, not a traceback."""
    from train import train as train_cli

    code = train_cli.main(["-c", str(DEMO), "-o", f"data.root={tmp_path / 'mine'}",
                           "-o", f"train.output_dir={tmp_path / 'run'}", "--nproc", "1"])
    assert code == 2
    assert f"error: data: {tmp_path / 'mine' / 'label_list.txt'}: no such label list" in \
        capsys.readouterr().err
