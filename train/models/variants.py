"""Released PP-TSM / PP-TSMv2 variants, each with the facts that go with its checkpoint.

In the way of timm's pretrained configs and torchvision's weights enums: a published checkpoint
only works with one network configuration, one preprocessing and one label list, and its accuracy
is only comparable under the test protocol it was measured with. Those facts used to live in YAML
comments and a test's list; here each released variant carries them, so a name is enough:

    from train.models.variants import build_variant, get_variant
    model = build_variant("pptsmv2_lcnet_k400_16f_dml")      # the 16-frame DML student
    get_variant("pptsmv2_lcnet_k400_16f_dml").preprocess      # what the exporter must record

Importing this module also registers every variant name as a builder (`build_model(name)`,
`list_models(released=True)`). Facts come from PaddleVideo's model-zoo pages (checkpoint file
names and top-1 on the Kinetics-400 validation set, in %) and its recipes; the recipes named here
are this project's copies under `train/configs/`. `python -m train.models.variants --markdown`
prints the README's model table.
"""
from __future__ import annotations

import argparse
import functools
import inspect
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import paddle.nn as nn

from serving.core.metadata import PreprocessSpec
from train.models.registry import (
    UnknownModelError,
    build_model,
    get_builder,
    register_released,
    unknown_name_message,
)

KINETICS400_LABELS = "train/labels/kinetics400_label_list.txt"  # relative to the repository root
UNIFORM_8 = PreprocessSpec(num_seg=8)
UNIFORM_16 = PreprocessSpec(num_seg=16)
# 10 clips x 3 crops over 64-frame windows, averaged: PaddleVideo's dense test protocol.
DENSE_8 = PreprocessSpec(num_seg=8, sampling="dense", dense_clips=10, dense_crops=3,
                         dense_span=64)

RESNET50_IMAGENET = "ResNet50_vd_ssld_v2_pretrained.pdparams"
LCNETV2_IMAGENET = "PPLCNetV2_base_ssld_pretrained.pdparams"


@dataclass(frozen=True)
class Variant:
    """One released checkpoint and everything needed to use it or to train it again.

    `recipes`: recipes under train/configs/ that train exactly this network with this
    preprocessing; the first is PaddleVideo's recipe for the release, empty where PaddleVideo
    published the checkpoint without one. `manifest`: the reference manifest
    (../shared/reference/manifests/<id>.json) of the checkpoint layout this network loads.
    `top1`: published top-1 (%) per test protocol (`uniform`: 1 clip, centre crop; `dense`:
    10 clips x 3 crops). `imagenet_pretrained`: the backbone initialisation its recipes start from.
    """

    name: str
    title: str
    builder: str
    kwargs: Mapping[str, Any]
    preprocess: PreprocessSpec
    checkpoint: str
    top1: Mapping[str, float]
    recipes: tuple[str, ...]
    manifest: str
    imagenet_pretrained: str
    distillation: str = ""  # "", "KD" (from a frozen teacher) or "DML" (mutual learning)
    labels: str = KINETICS400_LABELS
    num_classes: int = 400

    @property
    def num_seg(self) -> int:
        return self.preprocess.num_seg

    @property
    def recipe(self) -> str | None:
        """The recipe of the release, or None where PaddleVideo published none."""
        return self.recipes[0] if self.recipes else None

    def build(self, **overrides: Any) -> nn.Layer:
        """The network, with the variant's arguments and its class count unless overridden."""
        return build_model(self.builder, **{"num_classes": self.num_classes, **self.kwargs,
                                            **overrides})


def _variant(**fields: Any) -> Variant:
    """A Variant whose mappings are read-only, so no caller can change a published fact."""
    fields["kwargs"] = MappingProxyType(dict(fields["kwargs"]))
    fields["top1"] = MappingProxyType(dict(fields["top1"]))
    return Variant(**fields)


_VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    _variant(name="pptsm_r50_k400_8f", title="PP-TSM ResNet50-vd", builder="pptsm_resnet50",
             kwargs={"num_seg": 8, "dropout": 0.5}, preprocess=UNIFORM_8,
             checkpoint="ppTSM_k400_uniform.pdparams", top1={"uniform": 74.54},
             recipes=("pptsm/pptsm_k400_frames_uniform.yaml",
                      "pptsm/pptsm_k400_videos_uniform.yaml"),
             manifest="pptsm_r50_uniform_8f", imagenet_pretrained=RESNET50_IMAGENET),
    _variant(name="pptsm_r50_k400_8f_dense", title="PP-TSM ResNet50-vd",
             builder="pptsm_resnet50", kwargs={"num_seg": 8, "dropout": 0.5}, preprocess=DENSE_8,
             checkpoint="ppTSM_k400_dense.pdparams", top1={"dense": 75.69},
             recipes=("pptsm/pptsm_k400_frames_dense.yaml",),
             manifest="pptsm_r50_uniform_8f", imagenet_pretrained=RESNET50_IMAGENET),
    _variant(name="pptsm_r50_k400_8f_kd", title="PP-TSM ResNet50-vd", builder="pptsm_resnet50",
             kwargs={"num_seg": 8, "dropout": 0.5}, preprocess=UNIFORM_8,
             checkpoint="ppTSM_k400_uniform_distill.pdparams", top1={"uniform": 75.11},
             recipes=("pptsm/pptsm_k400_frames_uniform_kd.yaml",), distillation="KD",
             manifest="pptsm_r50_uniform_8f", imagenet_pretrained=RESNET50_IMAGENET),
    _variant(name="pptsm_r50_k400_8f_dense_kd", title="PP-TSM ResNet50-vd",
             builder="pptsm_resnet50", kwargs={"num_seg": 8, "dropout": 0.5}, preprocess=DENSE_8,
             checkpoint="ppTSM_k400_dense_distill.pdparams", top1={"dense": 76.16}, recipes=(),
             distillation="KD", manifest="pptsm_r50_uniform_8f",
             imagenet_pretrained=RESNET50_IMAGENET),
    _variant(name="pptsm_r101_k400_8f_dense", title="PP-TSM ResNet101-vd",
             builder="pptsm_resnet101", kwargs={"num_seg": 8, "dropout": 0.5},
             preprocess=DENSE_8, checkpoint="ppTSM_k400_dense_r101.pdparams",
             top1={"dense": 77.15}, recipes=("pptsm/pptsm_k400_frames_dense_r101.yaml",),
             manifest="pptsm_r101_dense_8f",
             imagenet_pretrained="ResNet101_vd_ssld_pretrained.pdparams"),
    _variant(name="pptsm_r101_k400_8f_kd", title="PP-TSM ResNet101-vd",
             builder="pptsm_resnet101", kwargs={"num_seg": 8, "dropout": 0.5},
             preprocess=UNIFORM_8, checkpoint="ppTSM_k400_uniform_distill_r101.pdparams",
             top1={"uniform": 76.35}, recipes=(), distillation="KD",
             manifest="pptsm_r101_dense_8f",
             imagenet_pretrained="ResNet101_vd_ssld_pretrained.pdparams"),
    _variant(name="pptsm_mv2_k400_8f", title="PP-TSM MobileNetV2",
             builder="pptsm_mobilenet_v2", kwargs={"num_seg": 8}, preprocess=UNIFORM_8,
             checkpoint="ppTSM_mv2_k400.pdparams", top1={"uniform": 68.09},
             recipes=("pptsm/pptsm_mv2_k400_videos_uniform.yaml",), manifest="pptsm_mv2_8f",
             imagenet_pretrained="MobileNetV2_ssld_pretrained.pdparams"),
    _variant(name="pptsm_mv3_k400_8f", title="PP-TSM MobileNetV3-large",
             builder="pptsm_mobilenet_v3_large", kwargs={"num_seg": 8, "dropout": 0.2},
             preprocess=UNIFORM_8, checkpoint="ppTSM_mv3_k400.pdparams", top1={"uniform": 69.84},
             recipes=("pptsm/pptsm_mv3_k400_frames_uniform.yaml",), manifest="pptsm_mv3_8f",
             imagenet_pretrained="MobileNetV3_large_x1_0_ssld_pretrained.pdparams"),
    _variant(name="pptsmv2_lcnet_k400_8f", title="PP-TSMv2 PP-LCNetV2", builder="pptsm_v2_lcnet",
             kwargs={"num_seg": 8, "use_temporal_att": False, "width_mult": 1.0, "dropout": 0.2},
             preprocess=UNIFORM_8, checkpoint="PPTSMv2_k400_8f.pdparams", top1={"uniform": 71.81},
             recipes=("pptsm/v2/pptsm_lcnet_k400_8frames_uniform.yaml",),
             manifest="pptsmv2_lcnet_8f", imagenet_pretrained=LCNETV2_IMAGENET),
    _variant(name="pptsmv2_lcnet_k400_8f_dml", title="PP-TSMv2 PP-LCNetV2",
             builder="pptsm_v2_lcnet",
             kwargs={"num_seg": 8, "use_temporal_att": False, "width_mult": 1.0, "dropout": 0.2},
             preprocess=UNIFORM_8, checkpoint="PPTSMv2_k400_8f_dml_student.pdparams",
             top1={"uniform": 72.45}, distillation="DML",
             recipes=("pptsm/v2/pptsm_lcnet_k400_8frames_uniform_dml_distillation.yaml",),
             manifest="pptsmv2_lcnet_8f", imagenet_pretrained=LCNETV2_IMAGENET),
    _variant(name="pptsmv2_lcnet_k400_16f", title="PP-TSMv2 PP-LCNetV2",
             builder="pptsm_v2_lcnet",
             kwargs={"num_seg": 16, "use_temporal_att": False, "width_mult": 1.0, "dropout": 0.2},
             preprocess=UNIFORM_16, checkpoint="PPTSMv2_k400_16f.pdparams", top1={"uniform": 73.1},
             recipes=("pptsm/v2/pptsm_lcnet_k400_16frames_uniform.yaml",),
             manifest="pptsmv2_lcnet_16f", imagenet_pretrained=LCNETV2_IMAGENET),
    # The released 16-frame student has the temporal attention module; the plain 16f does not.
    _variant(name="pptsmv2_lcnet_k400_16f_dml", title="PP-TSMv2 PP-LCNetV2 + temporal attention",
             builder="pptsm_v2_lcnet",
             kwargs={"num_seg": 16, "use_temporal_att": True, "width_mult": 1.0, "dropout": 0.2},
             preprocess=UNIFORM_16, checkpoint="PPTSMv2_k400_16f_dml_student.pdparams",
             top1={"uniform": 75.16}, distillation="DML",
             recipes=("pptsm/v2/pptsm_lcnet_k400_16frames_uniform_dml_distillation.yaml",),
             manifest="pptsmv2_lcnet_16f_lta_dml_student", imagenet_pretrained=LCNETV2_IMAGENET),
)}


def list_variants() -> list[str]:
    """The released variant names, in the order of the README's table."""
    return list(_VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called `name`; an unknown name is refused naming the closest ones."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise UnknownModelError(unknown_name_message("variant", name, _VARIANTS)) from None


def build_variant(name: str, **overrides: Any) -> nn.Layer:
    """Builds the network of variant `name`; `overrides` replace its builder arguments."""
    return get_variant(name).build(**overrides)


def _released_builder(variant: Variant) -> Callable[..., nn.Layer]:
    """A builder named after the variant with its architecture's signature, the variant's
    values as defaults: `inspect.signature` and type hints describe it like any builder, so a
    recipe's `model.name` may name a variant and still have its options checked."""
    architecture = get_builder(variant.builder)

    @functools.wraps(architecture)
    def build(**overrides: Any) -> nn.Layer:
        return variant.build(**overrides)

    defaults = {"num_classes": variant.num_classes, **variant.kwargs}
    signature = inspect.signature(architecture)
    build.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        parameter.replace(default=defaults.get(name, parameter.default))
        for name, parameter in signature.parameters.items()])
    build.__name__ = build.__qualname__ = variant.name
    build.__doc__ = f"{variant.title}, released as {variant.checkpoint} (train/models/variants.py)."
    return build


def _register_all() -> None:
    for variant in _VARIANTS.values():
        register_released(variant.name, _released_builder(variant))


# --- the README's model table --------------------------------------------------------------------

def _non_default_kwargs(variant: Variant) -> dict[str, Any]:
    """The builder arguments that differ from the builder's defaults (num_seg has a column)."""
    defaults = {key: parameter.default for key, parameter in
                inspect.signature(get_builder(variant.builder)).parameters.items()}
    return {key: value for key, value in variant.kwargs.items()
            if key != "num_seg" and defaults.get(key, inspect.Parameter.empty) != value}


def _network(variant: Variant) -> str:
    args = ", ".join(f"{key}={value!r}" for key, value in _non_default_kwargs(variant).items())
    return f"`{variant.builder}({args})`"


def _top1(variant: Variant) -> str:
    """The figure alone when it is for the variant's own test protocol (the `test` column)."""
    if set(variant.top1) == {variant.preprocess.sampling}:
        return f"{variant.top1[variant.preprocess.sampling]:.2f}"
    return ", ".join(f"{value:.2f} ({protocol})" for protocol, value in variant.top1.items())


def _test_protocol(spec: PreprocessSpec) -> str:
    if spec.sampling == "dense":
        return f"dense, {spec.dense_clips} clips x {spec.dense_crops} crops"
    return "uniform, 1 clip, centre crop"


def markdown_table() -> str:
    """The README's table of released variants (a test checks the README holds exactly this)."""
    rows = ["| variant | network | frames | test | top-1 K400 % | distilled | checkpoint | "
            "recipe |",
            "|---|---|---|---|---|---|---|---|"]
    for variant in _VARIANTS.values():
        recipes = "<br>".join(f"`{recipe}`" for recipe in variant.recipes) or "none published"
        rows.append(f"| `{variant.name}` | {variant.title}: {_network(variant)} | "
                    f"{variant.num_seg} | {_test_protocol(variant.preprocess)} | {_top1(variant)} "
                    f"| {variant.distillation or 'no'} | `{variant.checkpoint}` | {recipes} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the README's model table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
    else:
        print("\n".join(list_variants()))
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as `__main__`, a second copy of the module: hand over to the
    # imported module, which registers the variants, so that no name is registered twice.
    from train.models.variants import main as module_main
    raise SystemExit(module_main())

_register_all()
