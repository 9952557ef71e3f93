"""The released variants (train/models/variants.py): names, the facts each carries, and that those
facts agree with the recipes, the reference manifests, the label list and the README's table.

The checkpoint layouts themselves are checked per variant in test_models_zoo.py.
"""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from serving.core.list_file import read_label_list
from train.config import load_config
from train.models import build_model, list_models
from train.models.registry import UnknownModelError, get_builder
from train.models.variants import Variant, build_variant, get_variant, list_variants, markdown_table

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = REPO_ROOT / "train" / "configs"
README_TABLE = re.compile(r"<!-- variants table.*?-->\n(.*?)\n<!-- end of variants table -->",
                          re.DOTALL)
TEST_PROTOCOLS = {"uniform", "dense"}


def recipe_pairs() -> list[tuple[str, str]]:
    return [(name, recipe) for name in list_variants() for recipe in get_variant(name).recipes]


def effective_kwargs(builder: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's defaults overlaid with `kwargs`: what the network is really built with."""
    defaults = {key: parameter.default
                for key, parameter in inspect.signature(get_builder(builder)).parameters.items()}
    return {**defaults, **kwargs}


# --- names ----------------------------------------------------------------------------------------

def test_released_names_are_registered_builders() -> None:
    names = list_variants()
    assert len(names) == len(set(names)) == 12
    assert list_models(released=True) == sorted(names)
    assert set(names) < set(list_models())  # next to the architectures, as in timm


@pytest.mark.parametrize("lookup", [get_variant, build_variant, build_model])
def test_unknown_name_is_refused_naming_the_closest_ones(lookup: Callable) -> None:
    with pytest.raises(UnknownModelError) as caught:
        lookup("pptsmv2_lcnet_k400_16_dml")
    message = str(caught.value)
    assert message.startswith("unknown ") and "'pptsmv2_lcnet_k400_16_dml'" in message
    assert "did you mean 'pptsmv2_lcnet_k400_16f_dml'" in message
    assert isinstance(caught.value, KeyError)  # what export and import already catch


def test_a_name_alone_builds_the_released_16f_student_and_overrides_apply() -> None:
    small = build_variant("pptsmv2_lcnet_k400_16f_dml", num_classes=7, width_mult=0.25)
    attention = small.backbone.global_attention.fc.weight
    assert attention.shape == [16, 16]  # temporal attention over the variant's 16 frames
    assert small.backbone.fc.bias.shape == [7]
    plain = build_model("pptsmv2_lcnet_k400_16f", width_mult=0.25)
    assert plain.backbone.global_attention is None
    assert plain.backbone.fc.bias.shape == [400]


def test_published_facts_cannot_be_changed() -> None:
    variant = get_variant("pptsm_r50_k400_8f")
    with pytest.raises(TypeError):
        variant.kwargs["num_seg"] = 16  # type: ignore[index]
    with pytest.raises(TypeError):
        variant.top1["uniform"] = 99.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        variant.checkpoint = "other.pdparams"  # type: ignore[misc]


# --- the facts each variant carries ---------------------------------------------------------------

@pytest.mark.parametrize("name", list_variants())
def test_variant_facts_are_consistent(name: str) -> None:
    variant = get_variant(name)
    assert variant.kwargs["num_seg"] == variant.num_seg
    variant.preprocess.validate()
    assert set(variant.top1) == {variant.preprocess.sampling} <= TEST_PROTOCOLS
    assert all(50.0 < top1 < 90.0 for top1 in variant.top1.values())
    assert variant.checkpoint.endswith(".pdparams") and variant.imagenet_pretrained.endswith(
        ".pdparams")
    assert variant.distillation in ("", "KD", "DML")
    assert ("_dml" in name) == (variant.distillation == "DML")
    assert ("_kd" in name) == (variant.distillation == "KD")
    assert ("_dense" in name) == (variant.preprocess.sampling == "dense")
    labels = read_label_list(REPO_ROOT / variant.labels)
    assert len(labels) == variant.num_classes == 400


@pytest.mark.parametrize("name", list_variants())
def test_checkpoint_file_name_matches_the_manifest(name: str, load_manifest: Callable) -> None:
    """PaddleVideo names its files after the exported model (ppTSM_*, PPTSMv2_*) and marks the
    student-only file of a DML run `_student`, whose keys are the manifest's `0.*` layout."""
    variant = get_variant(name)
    manifest = load_manifest(variant.manifest)
    assert variant.checkpoint.lower().startswith(manifest["model_name"].lower() + "_")
    assert manifest["num_seg"] == variant.num_seg
    assert manifest["input_shape"][-1] == variant.preprocess.crop_size
    assert manifest["output_shape"][1] == variant.num_classes
    student_keys = manifest["state_dict"][0][0].startswith("0.")
    assert student_keys == manifest["id"].endswith("_student")
    if student_keys:
        assert variant.checkpoint.endswith("_student.pdparams")


# --- recipes --------------------------------------------------------------------------------------

def test_every_official_recipe_belongs_to_a_variant() -> None:
    recipes = {str(path.relative_to(CONFIG_ROOT))
               for path in (CONFIG_ROOT / "pptsm").rglob("*.yaml")}
    assert recipes == {recipe for _, recipe in recipe_pairs()}


@pytest.mark.parametrize("name,recipe", recipe_pairs())
def test_recipe_agrees_with_its_variant(name: str, recipe: str) -> None:
    variant: Variant = get_variant(name)
    loaded = load_config(CONFIG_ROOT / recipe)
    assert loaded.model.name == variant.builder and loaded.model.temporal_shift
    assert effective_kwargs(variant.builder, loaded.model.options) == effective_kwargs(
        variant.builder, variant.kwargs)
    assert loaded.preprocess == variant.preprocess
    assert Path(loaded.train.pretrained).name == variant.imagenet_pretrained
    assert loaded.export.labels == variant.labels
    training_labels = REPO_ROOT / loaded.data.root / loaded.data.label_list
    assert training_labels.resolve() == (REPO_ROOT / variant.labels).resolve()


# --- README ---------------------------------------------------------------------------------------

def test_readme_model_table_is_the_generated_one() -> None:
    """The README's table is `python -m train.models.variants --markdown`, pasted unchanged."""
    found = README_TABLE.search((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert found, "README.md has no '<!-- variants table ... -->' block"
    printed = subprocess.run([sys.executable, "-m", "train.models.variants", "--markdown"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                             timeout=120).stdout
    assert printed.strip() == markdown_table()
    assert found.group(1).strip() == markdown_table(), (
        "README's model table is stale: paste `python -m train.models.variants --markdown`")
