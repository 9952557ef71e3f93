"""ImageNet backbone initialisation from PaddleClas-style checkpoints (train/models/pretrained.py).

The checkpoints are written here as PaddleClas would save its classifiers: the backbone's tensors
under PaddleClas names (both the names PaddleVideo's downloads use and PaddleClas' later
"legendary" names), a 1000-class ImageNet classifier, and the `StructuredToParameterName@@` entry.
Every network of the registry's released variants is initialised from the file its variant names.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import paddle
import pytest

from train.models import build_model
from train.models.checkpoint import PARAM_NAME_TABLE_KEY
from train.models.pretrained import PretrainedError, load_pretrained_backbone
from train.models.variants import Variant, get_variant, list_variants

IMAGENET_CLASSES = 1000
SMALL_LCNET = {"num_classes": 4, "num_seg": 8, "width_mult": 0.25}
# Backbone layers an ImageNet classifier file has no counterpart for: the video classifier that
# MobileNet/PP-TSMv2 backbones hold (`fc`, `out`) and PP-TSMv2's temporal attention.
VIDEO_ONLY_LAYERS = ("fc.", "out.", "global_attention.")


def distinct_backbones() -> list[Variant]:
    """One released variant per distinct backbone (frame count aside: it adds no parameter)."""
    seen: dict[tuple, Variant] = {}
    for name in list_variants():
        variant = get_variant(name)
        options = tuple(sorted((k, v) for k, v in variant.kwargs.items() if k != "num_seg"))
        seen.setdefault((variant.builder, variant.imagenet_pretrained, options), variant)
    return list(seen.values())


def random_backbone_state(model: paddle.nn.Layer, seed: int) -> dict[str, np.ndarray]:
    """Backbone tensors (names without `backbone.`) with values that differ from the model's."""
    rng = np.random.RandomState(seed)
    return {key[len("backbone."):]: rng.uniform(0.5, 1.5, tensor.shape).astype("float32")
            for key, tensor in model.state_dict().items() if key.startswith("backbone.")}


def save_paddleclas(path: Path, state: dict[str, np.ndarray], classifier: str,
                    feature_dim: int) -> Path:
    """Pickle in `.pdparams` layout with a 1000-class classifier `classifier.{weight,bias}`."""
    rng = np.random.RandomState(99)
    full = {**state,
            f"{classifier}.weight":
                rng.standard_normal((feature_dim, IMAGENET_CLASSES)).astype("float32"),
            f"{classifier}.bias": np.zeros(IMAGENET_CLASSES, dtype="float32")}
    full[PARAM_NAME_TABLE_KEY] = {key: f"param_{i}" for i, key in enumerate(full)}
    path.write_bytes(pickle.dumps(full, protocol=4))
    return path


def backbone_arrays(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {key[len("backbone."):]: tensor.numpy() for key, tensor in model.state_dict().items()
            if key.startswith("backbone.")}


def to_legendary_resnet(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our ResNet-vd names -> PaddleClas' legendary names (stem.<i>, flat blocks.<i>, conv/bn)."""
    blocks = sorted({key.split(".")[0] for key in state if key.startswith("bb_")},
                    key=lambda name: tuple(int(n) for n in name[3:].split("_")))
    renamed = {}
    for key, value in state.items():
        layer, rest = key.split(".", 1)
        rest = rest.replace("_conv.", "conv.").replace("_batch_norm.", "bn.")
        if layer.startswith("conv1_"):
            renamed[f"stem.{int(layer[-1]) - 1}.{rest}"] = value
        else:
            renamed[f"blocks.{blocks.index(layer)}.{rest}"] = value
    return renamed


@pytest.mark.parametrize("variant", distinct_backbones(), ids=lambda variant: variant.name)
def test_released_variant_backbone_initialises_from_its_imagenet_file(variant: Variant,
                                                                     tmp_path: Path) -> None:
    """The file the variant's recipes start from, in the backbone's own PaddleClas names, fills
    every backbone tensor but the video-only layers; the ImageNet classifier is skipped."""
    paddle.seed(0)
    model = variant.build()
    source = random_backbone_state(model, 5)
    imagenet = {key: value for key, value in source.items()
                if not key.startswith(VIDEO_ONLY_LAYERS)}
    feature_dim = 2048 if "resnet" in variant.builder else 1280  # input of the ImageNet classifier
    path = save_paddleclas(tmp_path / variant.imagenet_pretrained, imagenet, "out", feature_dim)

    report = load_pretrained_backbone(model, path)

    assert not report.unplaced
    assert sorted(report.classifier_skipped) == ["out.bias", "out.weight"]
    assert sorted(report.not_initialised) == sorted(
        "backbone." + key for key in source if key not in imagenet)
    assert len(report.loaded) == len(imagenet)
    loaded = backbone_arrays(model)
    assert all(np.array_equal(loaded[key], value) for key, value in imagenet.items())


def test_pplcnetv2_legendary_names_load_and_classifier_is_skipped(tmp_path: Path) -> None:
    paddle.seed(0)
    model = build_model("pptsm_v2_lcnet", use_temporal_att=True, **SMALL_LCNET)
    source = random_backbone_state(model, 1)
    imagenet = {re.sub(r"^stages\.(\d)", lambda m: f"stage{int(m.group(1)) + 1}", key): value
                for key, value in source.items()
                if not key.startswith(("fc.", "global_attention."))}
    imagenet["head.extra"] = np.zeros(3, dtype="float32")  # not ours: must be reported
    path = save_paddleclas(tmp_path / "PPLCNetV2_base_pretrained.pdparams", imagenet, "fc",
                           source["fc.weight"].shape[0])

    report = load_pretrained_backbone(model, path)

    loaded = backbone_arrays(model)
    for key, value in imagenet.items():
        if key != "head.extra":
            target = re.sub(r"^stage(\d)", lambda m: f"stages.{int(m.group(1)) - 1}", key)
            np.testing.assert_array_equal(loaded[target], value)
    assert report.unplaced == ["head.extra"]
    assert sorted(report.classifier_skipped) == ["fc.bias", "fc.weight"]
    assert sorted(report.not_initialised) == [
        "backbone.fc.bias", "backbone.fc.weight", "backbone.global_attention.fc.bias",
        "backbone.global_attention.fc.weight"]
    assert len(report.loaded) == len(imagenet) - 1
    assert "could not place 1: head.extra" in report.describe()


def test_resnet50_vd_loads_from_both_paddleclas_namings(tmp_path: Path) -> None:
    paddle.seed(0)
    model = build_model("pptsm_resnet50", num_classes=4)
    source = random_backbone_state(model, 2)
    for naming, rename, classifier in (("dygraph", dict, "out"),
                                       ("legendary", to_legendary_resnet, "fc")):
        path = save_paddleclas(tmp_path / f"ResNet50_vd_{naming}.pdparams", rename(source),
                               classifier, 2048)
        head_before = model.head.fc.weight.numpy().copy()
        report = load_pretrained_backbone(model, path)
        assert not report.unplaced and not report.not_initialised, naming
        assert sorted(report.loaded) == sorted("backbone." + key for key in source)
        for key, value in backbone_arrays(model).items():
            np.testing.assert_array_equal(value, source[key])
        np.testing.assert_array_equal(model.head.fc.weight.numpy(), head_before)  # untouched
        source = {key: value + 1.0 for key, value in source.items()}  # next file: new values


def test_mobilenet_v2_backbone_prefixed_names_load(tmp_path: Path) -> None:
    """PaddleVideo's loader also accepts `backbone.`-prefixed files; so do we."""
    paddle.seed(0)
    model = build_model("pptsm_mobilenet_v2", num_classes=4)
    source = {key: value for key, value in random_backbone_state(model, 3).items()
              if not key.startswith("out.")}
    prefixed = {"backbone." + key: value for key, value in source.items()}
    path = save_paddleclas(tmp_path / "MobileNetV2_ssld_pretrained.pdparams", prefixed,
                           "backbone.out", 1280)
    report = load_pretrained_backbone(model, path)
    assert sorted(report.not_initialised) == ["backbone.out.bias", "backbone.out.weight"]
    assert sorted(report.classifier_skipped) == ["backbone.out.bias", "backbone.out.weight"]
    np.testing.assert_array_equal(
        model.backbone.conv9._batch_norm._variance.numpy(), source["conv9._batch_norm._variance"])


def test_shape_mismatch_is_refused_naming_the_parameter_and_model_is_untouched(
        tmp_path: Path) -> None:
    paddle.seed(0)
    narrow = build_model("pptsm_v2_lcnet", **SMALL_LCNET)
    wide = build_model("pptsm_v2_lcnet", **{**SMALL_LCNET, "width_mult": 0.5})
    path = save_paddleclas(tmp_path / "narrow.pdparams", random_backbone_state(narrow, 4), "fc",
                           1280)
    before = backbone_arrays(wide)
    with pytest.raises(PretrainedError, match=r"stem\.0\.conv\.weight has shape \[8, 3, 3, 3\] "
                                              r"but the backbone's stem\.0\.conv\.weight has "
                                              r"shape \[16, 3, 3, 3\]"):
        load_pretrained_backbone(wide, path)
    after = backbone_arrays(wide)
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_checkpoint_of_another_network_is_refused(tmp_path: Path) -> None:
    paddle.seed(0)
    model = build_model("pptsm_v2_lcnet", **SMALL_LCNET)
    path = save_paddleclas(tmp_path / "other.pdparams",
                           {"encoder.layer1.weight": np.zeros((2, 2), "float32")}, "fc", 1280)
    with pytest.raises(PretrainedError, match="none of its 3 tensors matches"):
        load_pretrained_backbone(model, path)
